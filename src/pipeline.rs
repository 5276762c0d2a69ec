//! One build, end to end: source -> configuration -> runtime -> plan -> LLB -> `BuildKit` ->
//! image. The pure steps are in `core` and `llb`; this is where they meet the edges.

use crate::core::catalog::{ResolvedRuntime, RuntimeCatalog};
use crate::core::config::{self, AppConfig, ConfigSource, CONFIG_FILE};
use crate::core::image_ref::ImageRef;
use crate::core::plan::{self, BuildPlan, ImageFacts, PlanInput, StageRole, StepNetwork};
use crate::core::platform;
use crate::core::progress::{first_line, Progress, SolveEvent};
use crate::core::rebase::OCI_INDEX;
use crate::core::request::{self, BuildRequest, BuildResult, ConfigInput, PhaseTimings, SourceLocation, StageTiming};
use crate::core::reuse;
use crate::core::shown::redact_userinfo;
use crate::edge::buildkit::session::Session;
use crate::edge::buildkit::{
    attestations, image_exporter, Buildkit, BuildkitAddr, FleetCache, SolveFailure, SolveOptions,
};
use crate::edge::image;
use crate::edge::rebase::RebaseOutcome;
use crate::edge::registry::{is_plain_http, Registry, RegistryAuth};
use crate::edge::source::{self, Checkout, Layer, PackLimits};
use crate::edge::stand_in::{self, StandInBuilder};
use crate::error::BuildError;
use crate::llb::{self, Solves};
use crate::log::DeploymentLog;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How this worker reaches its services; the same for every build it runs.
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
    /// Runtimes the operator holds back: a build without `runtime-version` gets the newest
    /// release not newer than the held version (until a roll-out moves the fleet on).
    pub runtime_holds: BTreeMap<String, String>,
    /// Makes a stand-in runtime image a build lacks from its recipe before the build goes on;
    /// None: the build fails naming the image and the command that makes it.
    pub stand_ins: Option<StandInBuilder>,
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
            runtime_holds: BTreeMap::new(),
            stand_ins: StandInBuilder::from_checkout(),
        }
    }
}

impl Settings {
    pub fn registry_client(&self) -> Registry {
        Registry::new(self.registry_auth.clone(), self.insecure_registries.clone())
    }

    /// `<registry>/apprunner-build/cache`: the fleet cache's default home.
    pub fn default_fleet_cache(registry: &str) -> String {
        format!("{registry}/{CACHE_REPOSITORY}")
    }

    fn entitlements(&self) -> Vec<String> {
        match self.network {
            StepNetwork::Host => vec!["network.host".to_string()],
            StepNetwork::Sandbox => Vec::new(),
        }
    }
}

pub const SOURCE_REPOSITORY: &str = "apprunner-build/sources";
pub const CA_REPOSITORY: &str = "apprunner-build/ca-bundles";
pub const CACHE_REPOSITORY: &str = "apprunner-build/cache";

/// A fetched, configured and planned build, before `BuildKit`.
pub struct Prepared {
    pub checkout: Checkout,
    pub config: AppConfig,
    pub plan: BuildPlan,
    pub solves: Solves,
    source_layer: Layer,
    ca_layer: Option<Layer>,
    /// Seconds the source took to arrive.
    fetch_seconds: f64,
}

/// Reads the configuration the request names (A21: a REPOSITORY build needs apprunner.yaml in
/// `dir`, the source directory `source_dir` on disk).
pub fn read_config(
    input: &ConfigInput,
    source_dir: &str,
    dir: &Path,
    catalog: &RuntimeCatalog,
) -> Result<AppConfig, BuildError> {
    match input {
        ConfigInput::Api(values) => {
            config::from_api(values, catalog).map_err(|e| BuildError::user(format!("invalid API configuration: {e}")))
        }
        ConfigInput::Repository => {
            let shown = format!("{}/{CONFIG_FILE}", source_dir.trim_end_matches('/'));
            let Some(bytes) = source::read_confined(dir, CONFIG_FILE, config::MAX_CONFIG_BYTES)? else {
                let near = ["apprunner.yml", "apprunner.YAML", "AppRunner.yaml", "apprunner.json"]
                    .iter()
                    .find(|n| dir.join(n).exists());
                let hint = near.map_or_else(
                    || "; add it there, or use configuration source API with the build settings".to_string(),
                    |n| format!("; found {n}, but App Runner reads only apprunner.yaml: rename it"),
                );
                return Err(BuildError::user(format!(
                    "App Runner configuration file apprunner.yaml not found: looked for {shown} in source directory {source_dir}{hint}"
                )));
            };
            let text = String::from_utf8(bytes).map_err(|_| BuildError::user(format!("{shown} is not UTF-8 text")))?;
            Ok(config::from_yaml(&text, &shown, catalog)?)
        }
    }
}

/// How `prepare` treats the runtime images.
#[derive(Clone, Copy)]
pub enum ImageLookup<'r> {
    /// Pinned by digest; a missing image fails the build.
    Required(&'r Registry),
    /// Pinned where the registry has them; a missing one is a warning in the plan (docs/configuration.md
    /// B7: the environment lacks it, the configuration is not wrong).
    IfPresent(&'r Registry),
    /// Not asked for; left unpinned (`plan --offline`).
    Offline,
}

/// The build and run images of `rt`, as `images` asks for them, with a warning for each one
/// missing when that may be. A build that lacks them has them made first when the settings
/// allow (`Settings::stand_ins`); otherwise it fails naming the image and how to make it.
async fn runtime_images(
    settings: &Settings,
    images: ImageLookup<'_>,
    rt: &ResolvedRuntime,
    log: &DeploymentLog,
) -> Result<(ImageFacts, ImageFacts, Vec<String>), BuildError> {
    let host = settings.registry.as_str();
    let build_ref = ImageRef::parse(&format!("{host}/{}", rt.build_image))?;
    let run_ref = ImageRef::parse(&format!("{host}/{}", rt.run_image))?;
    let registry = match images {
        ImageLookup::Offline => return Ok((unpinned(&build_ref), unpinned(&run_ref), Vec::new())),
        ImageLookup::Required(registry) | ImageLookup::IfPresent(registry) => registry,
    };
    let runtime = RuntimeCatalog::builtin().lookup(&rt.name)?;
    let builder = settings.stand_ins.as_ref().filter(|_| runtime.stand_in.is_some());
    let missing = |what: &str, r: &ImageRef| image::ImageError::MissingRuntimeImage {
        what: what.to_string(),
        reference: r.to_string(),
        registry: host.to_string(),
        remedy: stand_in::remedy(runtime, &rt.version, host, settings.stand_ins.as_ref()),
    };
    let mut found = (image::image_facts(registry, &build_ref).await?, image::image_facts(registry, &run_ref).await?);
    if matches!(images, ImageLookup::IfPresent(_)) {
        let mut warnings = Vec::new();
        let mut or_warn = |facts: Option<ImageFacts>, what: &str, r: &ImageRef| {
            facts.unwrap_or_else(|| {
                let after =
                    if builder.is_some() { "a build makes it first" } else { "a build fails until it is there" };
                warnings.push(format!("{}; {after}", missing(what, r)));
                unpinned(r)
            })
        };
        let build = or_warn(found.0, "build image", &build_ref);
        let run = or_warn(found.1, "run image", &run_ref);
        return Ok((build, run, warnings));
    }
    if let (Some(builder), true) = (builder, found.0.is_none() || found.1.is_none()) {
        let which = if found.0.is_none() { &build_ref } else { &run_ref };
        builder.build(&which.to_string(), host, &rt.name, &rt.version, log).await?;
        found = (image::image_facts(registry, &build_ref).await?, image::image_facts(registry, &run_ref).await?);
    }
    match found {
        (Some(build), Some(run)) => Ok((build, run, Vec::new())),
        (None, _) => Err(missing("build image", &build_ref).into()),
        (_, None) => Err(missing("run image", &run_ref).into()),
    }
}

fn unpinned(r: &ImageRef) -> ImageFacts {
    ImageFacts { reference: r.to_string(), digest: None, env: Vec::new(), labels: BTreeMap::new() }
}

/// Fetches the source and plans the build.
pub async fn prepare(
    settings: &Settings,
    req: &BuildRequest,
    images: ImageLookup<'_>,
    log: &DeploymentLog,
) -> Result<Prepared, BuildError> {
    let catalog = RuntimeCatalog::builtin();
    let source_dir = source::normalize_source_dir(&req.source_dir)?;
    let (repo_type, repo_shown) = match &req.location {
        SourceLocation::Local(p) => ("LOCAL", p.display().to_string()),
        SourceLocation::Git(u) => ("GIT", redact_userinfo(u)),
    };
    let version = req.revision.describe();
    log.apprunner(format!("Deployment Artifact: [Repo Type: {repo_type}], [Repository: {repo_shown}], {version}, [SourceDirectory: {source_dir}]"));
    log.apprunner(format!("Pulling source code from {repo_type} Repository ( {repo_shown} )."));
    let fetching = Instant::now();
    let checkout = source::fetch(&req.location, &req.revision, settings.git_credentials.as_deref()).await?;
    let fetch_seconds = fetching.elapsed().as_secs_f64();
    log.apprunner("Successfully pulled your application source code.");
    log.apprunner(format!(
        "Source at commit {}{}{}.",
        checkout.commit.as_deref().unwrap_or("(not a git repository)"),
        checkout.branch.as_deref().map(|b| format!(" (branch {b})")).unwrap_or_default(),
        if checkout.dirty { ", with changes not committed (the working tree is built as it is)" } else { "" }
    ));
    let dir = source::confine(&checkout.root, &source_dir)?;
    if req.config == ConfigInput::Repository {
        log.apprunner(format!("Reading {CONFIG_FILE} config file."));
    }
    let cfg = read_config(&req.config, &source_dir, &dir, catalog)?;
    match cfg.source {
        ConfigSource::Repository => log.apprunner("Successfully validate configuration file."),
        ConfigSource::Api => {
            log.apprunner("Using the build settings from the API values; any apprunner.yaml is ignored.");
        }
    }
    let runtime = catalog.lookup(&cfg.runtime)?;
    let hold = settings.runtime_holds.get(&runtime.name).map(String::as_str);
    let resolved = catalog.resolve_held(runtime, cfg.runtime_version.as_deref(), hold)?;
    if let Some(hold) = hold.filter(|_| cfg.runtime_version.is_none()) {
        log.apprunner(format!("{} is held at {hold} on this fleet: building on {}.", runtime.name, resolved.version));
    }
    platform::check(&cfg, &resolved, &source::platform_facts(&dir, &cfg)?, &source_dir)?;

    let host = settings.registry.as_str();
    let (build_image, run_image, missing) = runtime_images(settings, images, &resolved, log).await?;
    let source_layer = tokio::task::spawn_blocking({
        let dir = dir.clone();
        let limits = settings.pack_limits;
        move || source::pack_dir(&dir, limits)
    })
    .await
    .map_err(|e| BuildError::internal(format!("packing task: {e}")))??;
    let ca_layer = match &settings.ca_bundle {
        Some(path) => {
            let pem =
                std::fs::read(path).map_err(|e| BuildError::internal(format!("CA bundle {}: {e}", path.display())))?;
            Some(ca_layer(pem)?)
        }
        None => None,
    };
    let input = PlanInput {
        runtime: resolved,
        build_image,
        run_image,
        source_image: image::content_reference(host, SOURCE_REPOSITORY, &source_layer),
        source_dir,
        // A path on the build machine (a directory, or a `file://` URL) means nothing to
        // whoever reads the image, and would make two namings of one commit differ.
        repository: match &req.location {
            SourceLocation::Git(u) if !u.starts_with("file://") => Some(redact_userinfo(u)),
            SourceLocation::Git(_) | SourceLocation::Local(_) => None,
        },
        revision: checkout.commit.clone(),
        created: checkout
            .committed_at
            .filter(|_| !checkout.dirty)
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(crate::core::log::rfc3339),
        operation_id: req.operation_id.clone(),
        ca_bundle_image: ca_layer.as_ref().map(|l| image::content_reference(host, CA_REPOSITORY, l)),
        network: settings.network,
        cache_scope: req.target.repository.clone(),
        warm_manifests: settings.warm_steps.then(|| {
            // The first command of each stage comes first in one of these lists.
            let firsts = [&cfg.pre_build, &cfg.build, &cfg.pre_run].into_iter().filter_map(|c| c.first());
            source::manifest_files(&dir, firsts.flat_map(|c| crate::core::warm::candidates(c)))
        }),
    };
    let mut plan = plan::plan(&cfg, &input);
    plan.warnings.extend(missing);
    let solves = llb::from_plan(&plan);
    Ok(Prepared { checkout, config: cfg, plan, solves, source_layer, ca_layer, fetch_seconds })
}

/// The CA bundle `pem` packed as a layer. The bundle is the same for every build of a process,
/// and packing it is gzip over a few hundred KiB: the last one is kept, keyed by its bytes.
fn ca_layer(pem: Vec<u8>) -> Result<Layer, BuildError> {
    static LAST: std::sync::Mutex<Option<(Vec<u8>, Layer)>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, layer)) = last.as_ref().filter(|(bytes, _)| *bytes == pem) {
        return Ok(layer.clone());
    }
    let layer = source::pack_file(llb::CA_FILE.trim_start_matches('/'), &pem, 0o644)?;
    *last = Some((pem, layer.clone()));
    Ok(layer)
}

/// Runs a whole build, streaming the deployment log; the result on success.
pub async fn run(settings: &Settings, req: &BuildRequest, log: &DeploymentLog) -> Result<BuildResult, BuildError> {
    log.apprunner(format!("Deployment with ID : {} started. Triggering event : {}", req.operation_id, req.trigger));
    // The time limit bounds the whole build: fetch, plan, solve, push. Whatever is running when
    // it expires is dropped: git processes are killed, BuildKit's solves cancelled.
    let result = match tokio::time::timeout(settings.timeout, run_inner(settings, req, log)).await {
        Ok(result) => result,
        Err(_) => Err(BuildError::user(format!(
            "the build did not finish within its time limit of {} seconds and was cancelled",
            settings.timeout.as_secs()
        ))),
    };
    match &result {
        Ok(o) => {
            log.apprunner(format!("Image: {}", o.image));
            log.apprunner(format!("Deployment with ID : {} completed successfully.", req.operation_id));
        }
        Err(e) => {
            log.apprunner(format!("Failed to build your application source code. Reason: {}", e.message));
            log.apprunner(format!(
                "Deployment with ID : {} failed. Failure reason : {} ({} error; see the lines above).",
                req.operation_id, e.message, e.class
            ));
        }
    }
    result
}

/// Moves the image `from` onto the run image of `to_version`, writing `target` with the
/// deployment `operation_id`; says in the log what it did, or why it could not (the inner error).
pub async fn rebase(
    settings: &Settings,
    from: &ImageRef,
    to_version: &str,
    target: &ImageRef,
    operation_id: &str,
    log: &DeploymentLog,
) -> Result<RebaseOutcome, BuildError> {
    request::check_target(target, &settings.allowed_targets)?;
    let registry = settings.registry_client();
    log.apprunner(format!(
        "Rebasing {from} onto the run image of runtime version {to_version}: registry operations only, nothing is built."
    ));
    let deployment = BTreeMap::from([(crate::core::labels::OPERATION_ID.to_string(), operation_id.to_string())]);
    let catalog = RuntimeCatalog::builtin();
    let images = stand_in::RuntimeImages { host: &settings.registry, builder: settings.stand_ins.as_ref(), log };
    let rebasing = crate::edge::rebase::rebase(&registry, images, catalog, from, to_version, target, &deployment);
    let out = tokio::time::timeout(settings.timeout, rebasing).await.map_err(|_| {
        BuildError::transient(format!("the rebase did not finish within {} seconds", settings.timeout.as_secs()))
    })??;
    match &out {
        RebaseOutcome::Moved(r) if r.unchanged => {
            log.apprunner(format!("The image is on {} {} already: {}", r.runtime, r.to_version, r.image));
        }
        RebaseOutcome::Moved(r) => log.apprunner(format!(
            "Rebased from {} {} onto {} {} ({}) in {:.1}s, {} bytes copied: {}",
            r.runtime, r.from_version, r.runtime, r.to_version, r.run_image, r.seconds, r.copied_bytes, r.image
        )),
        RebaseOutcome::Refused(refusal) => log.apprunner(format!("Cannot rebase: {refusal}.")),
    }
    Ok(out)
}

async fn run_inner(settings: &Settings, req: &BuildRequest, log: &DeploymentLog) -> Result<BuildResult, BuildError> {
    let registry = settings.registry_client();
    let target = &req.target;
    request::check_target(target, &settings.allowed_targets)?;
    if target.digest.is_some() {
        return Err(BuildError::user(format!(
            "target image {target} names a digest; give a repository and tag, e.g. {}:latest",
            target.name()
        )));
    }
    let preparing = Instant::now();
    let prepared = prepare(settings, req, ImageLookup::Required(&registry), log).await?;
    let plan = &prepared.plan;
    for w in &plan.warnings {
        log.apprunner(format!("Warning: {w}"));
    }
    log.apprunner(format!(
        "Runtime {} {} ({} build). Build image {}, run image {}.",
        plan.runtime, plan.runtime_version, plan.build_process, plan.build_image, plan.run_image
    ));
    if !plan.secrets.is_empty() {
        let names: Vec<&str> = plan.secrets.iter().map(|s| s.name.as_str()).collect();
        log.apprunner(format!(
            "Runtime secrets {} stay references: they are not resolved at build time and not written into the image.",
            names.join(", ")
        ));
    }

    let exporter = keyed_exporter(settings, target, &prepared);
    if settings.image_reuse {
        let looking = Instant::now();
        if let Some(digest) = reuse_image(&registry, target, &exporter.1, &plan.image.deployment, log).await? {
            let seconds = looking.elapsed().as_secs_f64();
            let phases = PhaseTimings {
                fetch: prepared.fetch_seconds,
                plan: (preparing.elapsed().as_secs_f64() - prepared.fetch_seconds - seconds).max(0.0),
                solve: 0.0,
                export: seconds,
            };
            return Ok(result(&prepared, target.with_digest(&digest), Vec::new(), false, phases));
        }
    }

    let host = settings.registry.as_str();
    let src = image::push_content(&registry, host, SOURCE_REPOSITORY, &prepared.source_layer).await?;
    if src.uploaded {
        log.apprunner(format!(
            "Source directory {} packed: {} files, {} bytes uploaded as {}.",
            plan.source_dir, prepared.source_layer.files, src.bytes, src.pinned
        ));
    } else {
        log.apprunner(format!(
            "Source directory {} unchanged since an earlier build ({}); nothing uploaded.",
            plan.source_dir, src.pinned
        ));
    }
    if prepared.source_layer.special_bits_dropped > 0 {
        log.apprunner(format!(
            "setuid and setgid bits dropped from {} files of the source; every file in /app is owned by root.",
            prepared.source_layer.special_bits_dropped
        ));
    }
    if let Some(ca) = &prepared.ca_layer {
        image::push_content(&registry, host, CA_REPOSITORY, ca).await?;
    }
    let plan_seconds = preparing.elapsed().as_secs_f64() - prepared.fetch_seconds;

    let buildkit = Buildkit::connect(&settings.buildkit).await?;
    // BuildKit asks the session for registry credentials: to push, and to reach the fleet cache.
    let session = Session::attach(&settings.buildkit, settings.registry_client()).await?;
    let fleet_cache = settings.fleet_cache.as_deref().map(|prefix| {
        let cache_host = prefix.split('/').next().unwrap_or_default();
        FleetCache::for_target(prefix, target, is_plain_http(cache_host, &settings.insecure_registries))
    });
    log.apprunner("Starting source code build.");
    let solving = Instant::now();
    let solved = solve(&buildkit, &session, fleet_cache.as_ref(), settings, exporter, &prepared, log).await?;
    log.apprunner("Successfully built your application source code.");
    let digest = solved
        .exporter_response
        .get("containerimage.digest")
        .cloned()
        .ok_or_else(|| BuildError::internal(format!("BuildKit pushed {target} but did not say its digest")))?;
    let solve_seconds = solving.elapsed().as_secs_f64();
    let phases = PhaseTimings {
        fetch: prepared.fetch_seconds,
        plan: plan_seconds,
        solve: (solve_seconds - solved.export_seconds).max(0.0),
        export: solved.export_seconds,
    };
    Ok(result(&prepared, target.with_digest(&digest), solved.timings, src.uploaded, phases))
}

/// What a build that gave `image` tells its caller.
fn result(
    prepared: &Prepared,
    image: String,
    stages: Vec<StageTiming>,
    source_uploaded: bool,
    phases: PhaseTimings,
) -> BuildResult {
    let (plan, cfg) = (&prepared.plan, &prepared.config);
    BuildResult {
        image,
        runtime: plan.runtime.clone(),
        runtime_version: plan.runtime_version.clone(),
        build_process: plan.build_process,
        commit: prepared.checkout.commit.clone(),
        stages,
        start_command: cfg.command.clone(),
        port: cfg.port,
        run_env: cfg.run_env.clone(),
        secrets: cfg.secrets.clone(),
        warnings: plan.warnings.clone(),
        source_uploaded,
        phases,
    }
}

/// The image exporter and its attributes for `prepared`, with the build key (`core::reuse`) as an
/// annotation of the index.
fn keyed_exporter(settings: &Settings, target: &ImageRef, prepared: &Prepared) -> (String, BTreeMap<String, String>) {
    let plain_http = is_plain_http(&target.registry, &settings.insecure_registries);
    let (exporter, mut attrs) = image_exporter(target, &prepared.plan.image, plain_http);
    let solves = &prepared.solves;
    let key = reuse::build_key(
        &target.repository,
        std::iter::once(&solves.image).chain(&solves.post_build).map(|l| l.bytes.as_slice()),
        &attrs,
        &attestations(),
        &prepared.plan.image.deployment,
    );
    attrs.insert(build_key_attribute(), key);
    (exporter.to_string(), attrs)
}

fn build_key_attribute() -> String {
    format!("annotation-index.{}", crate::core::labels::BUILD_KEY)
}

/// When the image at `target` was built with the key in the exporter's `attrs`: writes an index
/// for this deployment over the same manifests and returns its digest. A tag that is new, holds
/// other inputs' image, or cannot be read is a miss (None): the build goes on, and its push says
/// whatever was wrong.
async fn reuse_image(
    registry: &Registry,
    target: &ImageRef,
    attrs: &BTreeMap<String, String>,
    deployment: &BTreeMap<String, String>,
    log: &DeploymentLog,
) -> Result<Option<String>, BuildError> {
    let Some(key) = attrs.get(&build_key_attribute()) else { return Ok(None) };
    let Ok(Some(existing)) = registry.manifest(&target.registry, &target.repository, &target.reference()).await else {
        return Ok(None);
    };
    let Ok(reused) = reuse::reuse(&existing.bytes, key, deployment) else {
        return Ok(None);
    };
    log.apprunner("Starting source code build.");
    let digest = registry
        .put_manifest(&target.registry, &target.repository, &target.reference(), &reused.index, OCI_INDEX)
        .await?;
    log.apprunner(format!(
        "{} holds the image of these exact inputs (build key {}, built by deployment {}): reused under a new index; nothing was solved.",
        target,
        &key[..12],
        reused.built_by.as_deref().unwrap_or("unknown")
    ));
    log.apprunner("Successfully built your application source code.");
    Ok(Some(digest))
}

/// What the solves of a build gave: the image exporter's response, each stage's timing, and the
/// seconds `BuildKit` spent exporting.
struct Solved {
    exporter_response: BTreeMap<String, String>,
    timings: Vec<StageTiming>,
    export_seconds: f64,
}

/// Solves the image and (concurrently) the post-build check within the time limit, reporting
/// progress as it comes.
async fn solve(
    buildkit: &Buildkit,
    session: &Session,
    fleet_cache: Option<&FleetCache>,
    settings: &Settings,
    exporter: (String, BTreeMap<String, String>),
    prepared: &Prepared,
    log: &DeploymentLog,
) -> Result<Solved, BuildError> {
    let plan = &prepared.plan;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(report(rx, log.clone(), plan.clone()));
    let options = |exporter, export_cache| SolveOptions {
        exporter,
        cache: fleet_cache.map(|c| c.options(export_cache)),
        session: Some(session.id.clone()),
        entitlements: settings.entitlements(),
        frontend_attrs: BTreeMap::new(),
    };
    let rebuilt = warm_up(buildkit, prepared, &options(None, false), &tx, log).await?;
    let solves = rebuilt.as_ref().unwrap_or(&prepared.solves);
    let image_options = SolveOptions { frontend_attrs: attestations(), ..options(Some(exporter), false) };
    // The warm-ups were reported as they ran, with the fleet cache's import; the image solve
    // finds them cached and imports it again: each said once.
    let warmed = !prepared.solves.warm.is_empty();
    let warm_steps: std::collections::HashSet<String> =
        solves.warm.iter().flat_map(|(_, llb)| llb.vertices.values().map(|v| v.name.clone())).collect();
    let (image_tx, forward_image) = filtered(&tx, move |ev| match ev {
        SolveEvent::Cached(v) => !warm_steps.contains(&v.name),
        SolveEvent::Other { name, .. } => !(warmed && name.starts_with("importing cache manifest from ")),
        _ => true,
    });
    // With a post-build check, the image is pushed only once the check has passed (a failed
    // check must leave the target tag as it was, or a rebuild would find the image there and
    // reuse it): its steps are solved beside the check, then exported by a second solve that
    // finds every step cached.
    let checked = solves.post_build.is_some();
    let first = if checked { options(None, false) } else { image_options.clone() };
    let image_solve = buildkit.solve(&solves.image, first, image_tx);
    // The post-build solve shares the build stage with the image's; only its own stage is
    // reported from it, so each step shows once.
    let check_stage = plan.stages.iter().find(|s| s.role == StageRole::Check).map(|s| s.name.clone());
    let (post_tx, forward) = filtered(&tx, move |ev| ev.stage() == check_stage.as_deref());
    let post_solve = async {
        match &solves.post_build {
            Some(llb) => buildkit.solve(llb, options(None, false), post_tx).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let (mut image_result, post_result) = tokio::join!(image_solve, post_solve);
    let _ = forward.await;
    let _ = forward_image.await;
    if checked && image_result.is_ok() && post_result.is_ok() {
        // Only the export is news: every step was reported by the first solve.
        let (export_tx, forward_export) = filtered(&tx, |ev| match ev {
            SolveEvent::Other { name, .. } => !name.starts_with("importing cache manifest from "),
            _ => false,
        });
        image_result = buildkit.solve(&solves.image, image_options, export_tx).await;
        let _ = forward_export.await;
    }
    drop(tx);
    let report = reporter.await.unwrap_or_default();
    let failed_step = report.failed_step;
    let failure = |f: SolveFailure| match &f {
        SolveFailure::Step { vertex, exit_code, .. } => {
            // The command that failed, as its shell's markers said; else the phase's vertex.
            let failed = failed_step.as_ref().filter(|(stage, _)| *stage == vertex.stage);
            let step = failed.map(|(_, i)| *i).or(vertex.step);
            let found = plan.stage(&vertex.stage).and_then(|s| step.and_then(|i| s.steps.get(i)));
            let phase = found.map_or("build", |s| s.phase.key());
            let what = match (failed.and(found), exit_code) {
                (Some(s), Some(code)) => {
                    format!(
                        "[{}] {}: {} failed with exit code {code}",
                        vertex.stage,
                        s.describe(),
                        first_line(&s.command)
                    )
                }
                _ => f.to_string(),
            };
            BuildError::user(format!("Failed to execute '{phase}' command: {what}"))
        }
        _ => BuildError::from(f),
    };
    let exporter_response = image_result.map_err(failure)?;
    post_result.map_err(failure)?;
    let (cached, all) = report.cached_steps;
    if cached > 0 {
        let from = match fleet_cache {
            Some(c) => format!("this BuildKit's cache or the fleet cache {}", c.reference),
            None => "this BuildKit's cache".to_string(),
        };
        log.apprunner(format!("{cached} of {all} steps came from {from}."));
    }
    let mut export_seconds = report.export_seconds;
    if let Some(cache) = fleet_cache {
        // A build whose every step came from a cache while the fleet cache was there adds
        // nothing to it: exporting would only rewrite it (a second or more, paid by every no-op
        // rebuild). Otherwise the image's definition is solved again, all of it cached now, to
        // export every step's result.
        if cached < all || report.fleet_imported != Some(true) {
            export_seconds += export_fleet_cache(buildkit, &solves.image, options(None, true), cache, log).await;
        }
    }
    Ok(Solved { exporter_response, timings: report.timings, export_seconds })
}

/// Exports the fleet cache of a solved definition; the seconds it took. A cache that cannot be
/// written is a warning: the image is already pushed.
async fn export_fleet_cache(
    buildkit: &Buildkit,
    llb: &llb::Llb,
    options: SolveOptions,
    cache: &FleetCache,
    log: &DeploymentLog,
) -> f64 {
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let result = buildkit.solve(llb, options, tx).await;
    let _ = drain.await;
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(_) => log.apprunner(format!("Fleet cache {} exported in {seconds:.1}s.", cache.reference)),
        Err(e) => log.apprunner(format!("Warning: the fleet cache {} was not exported: {e}", cache.reference)),
    }
    seconds
}

/// A sender whose events reach `tx` only where `keep` says so; the task ends when the sender
/// is dropped.
fn filtered(
    tx: &tokio::sync::mpsc::UnboundedSender<SolveEvent>,
    keep: impl Fn(&SolveEvent) -> bool + Send + 'static,
) -> (tokio::sync::mpsc::UnboundedSender<SolveEvent>, tokio::task::JoinHandle<()>) {
    let (sender, mut rx) = tokio::sync::mpsc::unbounded_channel::<SolveEvent>();
    let tx = tx.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if keep(&ev) {
                let _ = tx.send(ev);
            }
        }
    });
    (sender, task)
}

/// Solves the stages' dependency warm-ups, reporting them as they run. One that fails is left out
/// and the build goes on without it: the solves without those warm-ups, when there were any.
async fn warm_up(
    buildkit: &Buildkit,
    prepared: &Prepared,
    options: &SolveOptions,
    tx: &tokio::sync::mpsc::UnboundedSender<SolveEvent>,
    log: &DeploymentLog,
) -> Result<Option<Solves>, BuildError> {
    let warmed =
        futures_util::future::join_all(prepared.solves.warm.iter().map(|(stage, llb)| async move {
            (stage.clone(), buildkit.solve(llb, options.clone(), tx.clone()).await)
        }))
        .await;
    let mut cold: Vec<String> = Vec::new();
    for (stage, result) in warmed {
        match result {
            Ok(_) => {}
            Err(e @ SolveFailure::Unavailable(_)) => return Err(e.into()),
            Err(e) => {
                log.apprunner(format!("[{stage}] dependency warm-up left out ({e}); the build goes on without it."));
                cold.push(stage);
            }
        }
    }
    if cold.is_empty() {
        return Ok(None);
    }
    let mut plan = prepared.plan.clone();
    for stage in plan.stages.iter_mut().filter(|s| cold.contains(&s.name)) {
        stage.warm = None;
    }
    Ok(Some(llb::from_plan(&plan)))
}

/// What the report of a build's solves found.
#[derive(Default)]
struct SolveReport {
    timings: Vec<StageTiming>,
    failed_step: Option<(String, usize)>,
    export_seconds: f64,
    cached_steps: (usize, usize),
    /// Whether the fleet cache was found (None: not asked for).
    fleet_imported: Option<bool>,
}

/// Turns solve events into deployment-log lines as they come; what they told in the end.
async fn report(mut rx: UnboundedReceiver<SolveEvent>, log: DeploymentLog, plan: BuildPlan) -> SolveReport {
    let mut progress = Progress::new(&plan);
    while let Some(ev) = rx.recv().await {
        for (source, text) in progress.on_event(&ev, Instant::now()) {
            log.emit(source, &text);
        }
    }
    SolveReport {
        failed_step: progress.failed_step(),
        export_seconds: progress.export_seconds(),
        cached_steps: progress.cached_steps(),
        fleet_imported: progress.fleet_imported(),
        timings: progress.timings(),
    }
}
