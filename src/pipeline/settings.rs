//! How a worker or the CLI reaches its services: the same for every build it runs.

use super::recent::RecentImages;
use super::turns::SolveTurns;
use crate::core::plan::StepNetwork;
use crate::edge::buildkit::{BuildkitAddr, BuildkitLink};
use crate::edge::registry::{Registry, RegistryAuth, RegistryLink};
use crate::edge::signing::Signer;
use crate::edge::source::PackLimits;
use crate::edge::stand_in::StandInBuilder;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// How this worker reaches its services; the same for every build it runs.
// Each bool is a switch of its own, as the command line gives it.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone)]
pub struct Settings {
    pub buildkit: BuildkitAddr,
    /// Registry host (`127.0.0.1:5000`) of the runtime images and the source images.
    pub registry: String,
    /// PEM bundle mounted read-only into every build step; None: no bundle.
    pub ca_bundle: Option<PathBuf>,
    pub network: StepNetwork,
    pub timeout: Duration,
    /// Registry credentials, each for its own host only.
    pub registry_auth: RegistryAuth,
    /// Registry hosts reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// A git-credential-store file for private git hosts (credentials never go in job URLs' output).
    pub git_credentials: Option<PathBuf>,
    /// Repository prefixes (`registry/path`) built images may go to; empty: any but the worker's own.
    pub allowed_targets: Vec<String>,
    /// The largest file and source directory packed.
    pub pack_limits: PackLimits,
    /// Where the fleet's registry cache lives (`registry/path`; each service's under it), or None
    /// for no registry cache.
    pub fleet_cache: Option<String>,
    /// Whether a stage's first command, when it is a dependency install, is warmed up on the
    /// dependency manifests alone first (`core::warm`).
    pub warm_steps: bool,
    /// Whether a build whose inputs are exactly those of the image at its target tag reuses that
    /// image (`core::reuse`) instead of solving.
    pub image_reuse: bool,
    /// Whether every build runs every step anew (`build --no-cache`, `verify`): no step from
    /// `BuildKit`'s cache or the fleet cache, empty package caches, no image reuse.
    pub no_cache: bool,
    /// Runtime images pinned to a digest (`registry/repo:tag` -> `sha256:…`) instead of what
    /// their tags name now: how `verify` rebuilds on the images an image was built on.
    pub runtime_pins: BTreeMap<String, String>,
    /// Whether every image pushed gets its SBOM beside its provenance (`edge::sbom`).
    pub sbom: bool,
    /// Signs every image pushed, built or rebased (cosign's format); None: nothing is signed.
    pub signer: Option<Signer>,
    /// Who the signed provenance says built an image (SLSA's `builder.id`): a URI naming this
    /// fleet's builder.
    pub builder_id: String,
    /// Runtimes the operator holds back: a build without `runtime-version` gets the newest
    /// release not newer than the held version (until a roll-out moves the fleet on).
    pub runtime_holds: BTreeMap<String, String>,
    /// Makes a stand-in runtime image a build lacks from its recipe before the build goes on;
    /// None: the build fails naming the image and the command that makes it.
    pub stand_ins: Option<StandInBuilder>,
    /// What the builds of these settings (and of their clones: a worker's) share.
    pub handles: Handles,
}

/// The connections and memories that the builds of one worker (or one command) share, apart
/// from the settings' plain values: a clone shares them, a new one starts afresh.
#[derive(Debug, Clone, Default)]
pub struct Handles {
    /// The connection to `BuildKit` and the session on it.
    pub buildkit: BuildkitLink,
    /// The registry client.
    pub registry: RegistryLink,
    /// The turns on `BuildKit` of builds of the same content.
    pub solve_turns: SolveTurns,
    /// The images pushed lately, by build key: a build of the same key into the same
    /// repository takes one of them instead of solving.
    pub recent_images: RecentImages,
}

/// The local stack's settings, as `docker/stack` sets it up and the CLI's defaults give: Docker
/// Engine's BuildKit, the registry on `127.0.0.1:5000` with the fleet cache in it, the system's
/// CA bundle, BuildKit's sandboxed network, a 30-minute limit, and missing runtime images made
/// from the recipes of this binary's checkout.
impl Default for Settings {
    fn default() -> Self {
        let registry = "127.0.0.1:5000".to_string();
        Self {
            buildkit: BuildkitAddr::Docker("/var/run/docker.sock".into()),
            fleet_cache: Some(Self::default_fleet_cache(&registry)),
            registry,
            ca_bundle: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            network: StepNetwork::Sandbox,
            timeout: Duration::from_secs(1800),
            registry_auth: RegistryAuth::default(),
            insecure_registries: Vec::new(),
            git_credentials: None,
            allowed_targets: Vec::new(),
            pack_limits: PackLimits::default(),
            warm_steps: true,
            image_reuse: true,
            no_cache: false,
            signer: None,
            builder_id: crate::core::provenance::default_builder_id(env!("CARGO_PKG_VERSION")),
            sbom: true,
            runtime_pins: BTreeMap::new(),
            runtime_holds: BTreeMap::new(),
            stand_ins: StandInBuilder::from_checkout(),
            handles: Handles::default(),
        }
    }
}

impl Settings {
    /// The shared registry client (see [`RegistryLink`]).
    pub fn registry_client(&self) -> Registry {
        self.handles.registry.get(&self.registry_auth, &self.insecure_registries)
    }

    /// `<registry>/apprunner-build/cache`: the fleet cache's default home.
    pub fn default_fleet_cache(registry: &str) -> String {
        format!("{registry}/{CACHE_REPOSITORY}")
    }

    pub(super) fn entitlements(&self) -> Vec<String> {
        match self.network {
            StepNetwork::Host => vec!["network.host".to_string()],
            StepNetwork::Sandbox => Vec::new(),
        }
    }
}

pub const SOURCE_REPOSITORY: &str = "apprunner-build/sources";
pub const CA_REPOSITORY: &str = "apprunner-build/ca-bundles";
pub const CACHE_REPOSITORY: &str = "apprunner-build/cache";
