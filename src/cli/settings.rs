//! The settings every build-running command takes (`build`, `plan`, `rebase`, `worker`,
//! `runtimes`), as flags or `APPRUNNER_*` variables, and the build settings they become.

use crate::core::plan::StepNetwork;
use crate::edge::buildkit::BuildkitAddr;
use crate::edge::registry::{Credentials, RegistryAuth};
use crate::edge::signing::Signer;
use crate::edge::source::PackLimits;
use crate::edge::stand_in::StandInBuilder;
use crate::error::BuildError;
use crate::pipeline::Settings;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
// Each bool is a command-line switch of its own.
#[allow(clippy::struct_excessive_bools)]
pub(super) struct SettingsArgs {
    /// <docker-unix:///var/run/docker.sock>, <unix:///run/buildkit/buildkitd.sock> or tcp://host:port
    #[arg(long, env = "APPRUNNER_BUILDKIT", default_value = "docker-unix:///var/run/docker.sock")]
    buildkit: String,
    /// Registry of the runtime images, source images and (by default) the built images.
    #[arg(long, env = "APPRUNNER_REGISTRY", default_value = "127.0.0.1:5000")]
    registry: String,
    /// PEM bundle every build step trusts (mounted read-only, never in the image).
    #[arg(long, env = "APPRUNNER_CA_BUNDLE", default_value = "/etc/ssl/certs/ca-certificates.crt")]
    ca_bundle: PathBuf,
    /// Registry hosts to reach over plain HTTP (loopback ones always are), comma-separated.
    #[arg(long, env = "APPRUNNER_INSECURE_REGISTRIES", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Mount no CA bundle.
    #[arg(long)]
    no_ca_bundle: bool,
    /// Run build steps on the host's network (the `network.host` entitlement) instead of `BuildKit`'s sandbox.
    #[arg(long, env = "APPRUNNER_HOST_NETWORK")]
    host_network: bool,
    /// Time limit of one build, in seconds.
    #[arg(long, env = "APPRUNNER_BUILD_TIMEOUT", default_value_t = 1800)]
    timeout: u64,
    /// A git-credential-store file (`https://user:token@host` lines) for private git hosts.
    #[arg(long, env = "APPRUNNER_GIT_CREDENTIALS")]
    git_credentials: Option<PathBuf>,
    /// Repository prefixes (REGISTRY/PATH) built images may go to, comma-separated (default: any
    /// but the build service's own repositories).
    #[arg(long, env = "APPRUNNER_ALLOWED_TARGETS", value_delimiter = ',')]
    allowed_targets: Vec<String>,
    /// Bytes of the largest file of a source directory that is packed.
    #[arg(long, env = "APPRUNNER_MAX_FILE_SIZE", default_value_t = PackLimits::default().file)]
    max_file_size: u64,
    /// Bytes of the largest source directory that is packed.
    #[arg(long, env = "APPRUNNER_MAX_SOURCE_SIZE", default_value_t = PackLimits::default().total)]
    max_source_size: u64,
    /// Where the fleet's registry cache lives (REGISTRY/PATH; each service's under it); default
    /// REGISTRY/apprunner-build/cache on the worker's registry.
    #[arg(long, env = "APPRUNNER_FLEET_CACHE")]
    fleet_cache: Option<String>,
    /// Sign every image pushed, built or rebased, in cosign's format with this ECDSA P-256
    /// private key (PEM PKCS#8); `cosign verify --key` checks it with the public key.
    #[arg(long, env = "APPRUNNER_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// The builder the signed provenance names (`runDetails.builder.id`): a URI an admission
    /// policy can require. Default: `https://apprunner-build.dev/worker@v<version>`.
    #[arg(long, env = "APPRUNNER_BUILDER_ID")]
    builder_id: Option<String>,
    /// Attach no SBOM to the images pushed (by default each gets an SPDX document beside its
    /// provenance).
    #[arg(long, env = "APPRUNNER_NO_SBOM")]
    no_sbom: bool,
    /// Import and export no registry cache: each worker keeps only its own BuildKit's.
    #[arg(long, env = "APPRUNNER_NO_FLEET_CACHE", conflicts_with = "fleet_cache")]
    no_fleet_cache: bool,
    /// Run no dependency warm-up before a stage's first command (an install run first on the
    /// dependency manifests alone, so a code change does not reinstall every package).
    #[arg(long, env = "APPRUNNER_NO_WARM_STEPS")]
    no_warm_steps: bool,
    /// Solve every build, even one whose inputs are exactly those of the image already at its
    /// target tag (by default that image is reused under a new index, without a solve).
    #[arg(long, env = "APPRUNNER_NO_IMAGE_REUSE")]
    no_image_reuse: bool,
    /// Hold a runtime back, RUNTIME=VERSION (repeat, or comma-separated): builds without
    /// runtime-version get the newest release not newer than VERSION.
    #[arg(long = "hold-runtime", env = "APPRUNNER_HOLD_RUNTIMES", value_delimiter = ',')]
    hold_runtimes: Vec<String>,
    /// Make a stand-in runtime image a build lacks from its recipe first (docker/runtime-images,
    /// with this machine's Docker Engine): auto (on for a registry on this machine's loopback),
    /// on, or off (the build fails naming the image and the command that makes it).
    #[arg(long, env = "APPRUNNER_BUILD_RUNTIME_IMAGES", default_value = "auto", value_parser = ["auto", "on", "off"])]
    build_runtime_images: String,
    /// The docker/runtime-images script that makes them (default: the one of the checkout this
    /// binary was built from).
    #[arg(long, env = "APPRUNNER_RUNTIME_IMAGES_SCRIPT")]
    runtime_images_script: Option<PathBuf>,
}

impl SettingsArgs {
    /// The builder of missing runtime images, as --build-runtime-images asks.
    fn stand_ins(&self) -> Result<Option<StandInBuilder>, BuildError> {
        let found = match &self.runtime_images_script {
            Some(p) => Some(StandInBuilder::at(p.clone()).ok_or_else(|| {
                BuildError::user(format!(
                    "--runtime-images-script {}: no such file; give the path of docker/runtime-images",
                    p.display()
                ))
            })?),
            None => StandInBuilder::from_checkout(),
        };
        match self.build_runtime_images.as_str() {
            "off" => Ok(None),
            "on" => found.map(Some).ok_or_else(|| {
                BuildError::user(format!(
                    "--build-runtime-images on: docker/runtime-images is not at {} (this binary's checkout); give --runtime-images-script PATH",
                    env!("CARGO_MANIFEST_DIR")
                ))
            }),
            // Its images are built with this machine's Docker Engine, which pushes to its own
            // loopback registry without further setup.
            _ => Ok(found.filter(|_| crate::edge::registry::is_plain_http(&self.registry, &[]))),
        }
    }

    pub(super) fn settings(&self) -> Result<Settings, BuildError> {
        let buildkit: BuildkitAddr = self.buildkit.parse()?;
        let ca_bundle = (!self.no_ca_bundle).then(|| self.ca_bundle.clone());
        if let Some(p) = &ca_bundle {
            if !p.is_file() {
                return Err(BuildError::user(format!(
                    "CA bundle {} does not exist; give --ca-bundle PATH or --no-ca-bundle",
                    p.display()
                )));
            }
        }
        let mut registry_auth = RegistryAuth::default();
        if let Ok(path) = std::env::var("APPRUNNER_REGISTRY_AUTH") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| BuildError::user(format!("APPRUNNER_REGISTRY_AUTH {path}: {e}")))?;
            registry_auth.read_docker_config(&text).map_err(|e| {
                BuildError::user(format!("APPRUNNER_REGISTRY_AUTH {path}: {e}; expected {{\"auths\": {{\"HOST\": {{\"auth\": \"base64(user:password)\"}}}}}}"))
            })?;
        }
        let credentials = std::env::var("APPRUNNER_REGISTRY_USERNAME").ok().map(|username| Credentials {
            username,
            password: std::env::var("APPRUNNER_REGISTRY_PASSWORD").unwrap_or_default(),
        });
        // The username and password are the worker's registry's (--registry), and go nowhere else.
        if let Some(c) = credentials {
            registry_auth.insert(&self.registry, c);
        }
        let catalog = crate::core::catalog::RuntimeCatalog::builtin();
        let mut runtime_holds = std::collections::BTreeMap::new();
        for hold in &self.hold_runtimes {
            let bad =
                |why: String| BuildError::user(format!("--hold-runtime `{}`: {why}", crate::core::shown::cut(hold)));
            let (name, version) =
                hold.split_once('=').ok_or_else(|| bad("expected RUNTIME=VERSION, e.g. python311=3.11.10".into()))?;
            let rt = catalog.lookup(name).map_err(|e| bad(e.to_string()))?;
            rt.check_version(version.trim()).map_err(|e| bad(e.0))?;
            runtime_holds.insert(rt.name.clone(), version.trim().to_string());
        }
        Ok(Settings {
            stand_ins: self.stand_ins()?,
            runtime_holds,
            buildkit,
            registry: self.registry.clone(),
            ca_bundle,
            network: if self.host_network { StepNetwork::Host } else { StepNetwork::Sandbox },
            timeout: Duration::from_secs(self.timeout),
            registry_auth,
            insecure_registries: self.insecure_registries.clone(),
            git_credentials: self.git_credentials.clone(),
            allowed_targets: self.allowed_targets.clone(),
            pack_limits: PackLimits { file: self.max_file_size, total: self.max_source_size },
            warm_steps: !self.no_warm_steps,
            image_reuse: !self.no_image_reuse,
            no_cache: false,
            runtime_pins: std::collections::BTreeMap::new(),
            sbom: !self.no_sbom,
            signer: match &self.signing_key {
                Some(path) => Some(Signer::from_file(path).map_err(|e| BuildError::user(e.to_string()))?),
                None => None,
            },
            builder_id: match &self.builder_id {
                Some(id) => crate::core::provenance::check_builder_id(id).map_err(BuildError::user)?,
                None => crate::core::provenance::default_builder_id(env!("CARGO_PKG_VERSION")),
            },
            fleet_cache: (!self.no_fleet_cache)
                .then(|| self.fleet_cache.clone().unwrap_or_else(|| Settings::default_fleet_cache(&self.registry))),
            handles: crate::pipeline::Handles::default(),
        })
    }
}
