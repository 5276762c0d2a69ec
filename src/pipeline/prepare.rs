//! Before BuildKit: the source fetched and confined, the configuration read, the runtime and its
//! images resolved (made first when they are missing and may be), the plan and its LLB.

use super::narration::Narration;
use super::settings::{Settings, CA_REPOSITORY, SOURCE_REPOSITORY};
use crate::core::catalog::{ResolvedRuntime, RuntimeCatalog};
use crate::core::config::{self, AppConfig, ConfigSource, CONFIG_FILE};
use crate::core::digest::Digest;
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::plan::{self, BuildPlan, ImageFacts, PlanInput};
use crate::core::platform;
use crate::core::request::{BuildRequest, ConfigInput, SourceLocation};
use crate::core::shown::redact_userinfo;
use crate::edge::image;
use crate::edge::registry::Registry;
use crate::edge::source::{self, Checkout, Layer};
use crate::edge::stand_in;
use crate::error::BuildError;
use crate::llb::{self, Solves};
use crate::log::DeploymentLog;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

/// A fetched, configured and planned build, before `BuildKit`.
pub struct Prepared {
    pub checkout: Checkout,
    pub config: AppConfig,
    /// The digest of the configuration's bytes (apprunner.yaml's, or the API settings' JSON).
    pub config_digest: Digest,
    pub plan: BuildPlan,
    pub solves: Solves,
    pub(super) source_layer: Layer,
    pub(super) ca_layer: Option<Layer>,
    /// Seconds the source took to arrive.
    pub(super) fetch_seconds: f64,
    /// What the image's layers and config come from: the digest of its definition as a build
    /// with no package caches would give it. Builds of other services (whose caches are their
    /// own) with this key make the same image (`turns`).
    pub(super) content_key: String,
    /// The runtime images as named (`registry/repo:tag`) and the digest each named, for the
    /// service's record (`unchanged`).
    pub(super) runtime_images: BTreeMap<String, String>,
}

/// Reads the configuration the request names (A21: a REPOSITORY build needs apprunner.yaml in
/// `dir`, the source directory `source_dir` on disk), with the digest of its bytes (the file's,
/// or the API settings' JSON), which the provenance records.
pub fn read_config(
    input: &ConfigInput,
    source_dir: &str,
    dir: &Path,
    catalog: &RuntimeCatalog,
) -> Result<(AppConfig, Digest), BuildError> {
    match input {
        ConfigInput::Api(values) => {
            let cfg = config::from_api(values, catalog)
                .map_err(|e| BuildError::user(format!("invalid API configuration: {e}")))?;
            Ok((cfg, Digest::of(values.to_string().as_bytes())))
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
            let digest = Digest::of(&bytes);
            let text = String::from_utf8(bytes).map_err(|_| BuildError::user(format!("{shown} is not UTF-8 text")))?;
            Ok((config::from_yaml(&text, &shown, catalog)?, digest))
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
pub(super) async fn runtime_images(
    settings: &Settings,
    images: ImageLookup<'_>,
    rt: &ResolvedRuntime,
    log: &DeploymentLog,
) -> Result<(ImageFacts, ImageFacts, Vec<String>), BuildError> {
    let host = settings.registry.as_str();
    let pinned = |image: &str| runtime_ref(settings, &format!("{host}/{image}"));
    let (build_ref, run_ref) = (pinned(&rt.build_image)?, pinned(&rt.run_image)?);
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

/// A runtime image (`registry/repo:tag`) as a build asks for it: by the digest the settings pin
/// it to, if they do (`verify`), else by its tag.
pub(super) fn runtime_ref(settings: &Settings, reference: &str) -> Result<ImageRef, BuildError> {
    let mut r = ImageRef::parse(reference)?;
    let pin = settings.runtime_pins.get(&r.to_string());
    r.digest = pin.map(|d| Digest::parse(d)).transpose().map_err(|e| BuildError::user(e.to_string()))?;
    Ok(r)
}

pub(super) fn unpinned(r: &ImageRef) -> ImageFacts {
    ImageFacts::unpinned(&r.to_string())
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
    let say = Narration(log);
    say.artifact(repo_type, &repo_shown, &version, &source_dir);
    let fetching = Instant::now();
    let checkout = source::fetch(&req.location, &req.revision, settings.git_credentials.as_deref()).await?;
    let fetch_seconds = fetching.elapsed().as_secs_f64();
    say.pulled(checkout.commit.as_deref(), checkout.branch.as_deref(), checkout.dirty);
    let dir = source::confine(&checkout.root, &source_dir)?;
    if req.config == ConfigInput::Repository {
        say.reading_config_file(CONFIG_FILE);
    }
    let (cfg, config_digest) = read_config(&req.config, &source_dir, &dir, catalog)?;
    say.configured(cfg.source == ConfigSource::Repository);
    let runtime = catalog.lookup(&cfg.runtime)?;
    let hold = settings.runtime_holds.get(&runtime.name).map(String::as_str);
    let resolved = catalog.resolve_held(runtime, cfg.runtime_version.as_deref(), hold)?;
    if let Some(hold) = hold.filter(|_| cfg.runtime_version.is_none()) {
        say.held(&runtime.name, hold, &resolved.version);
    }
    platform::check(&cfg, &resolved, &source::platform_facts(&dir, &cfg)?, &source_dir)?;

    let host = settings.registry.as_str();
    let (build_image, run_image, missing) = runtime_images(settings, images, &resolved, log).await?;
    let resolved_images =
        [&build_image, &run_image].into_iter().filter_map(|f| Some((f.reference.clone(), f.digest.clone()?))).collect();
    let source_layer = pack(settings, &dir).await?;
    let ca_layer = ca_bundle_layer(settings)?;
    let input = PlanInput {
        runtime: resolved,
        build_image,
        run_image,
        source_image: image::content_reference(&Repo::new(host, SOURCE_REPOSITORY), &source_layer),
        source_dir,
        repository: published_repository(&req.location),
        revision: checkout.commit.clone(),
        source_date_epoch: checkout.committed_at.filter(|_| !checkout.dirty),
        operation_id: req.operation_id.clone(),
        ca_bundle_image: ca_layer.as_ref().map(|l| image::content_reference(&Repo::new(host, CA_REPOSITORY), l)),
        network: settings.network,
        cache_scope: cache_scope(settings, req),
        warm_manifests: settings.warm_steps.then(|| warm_manifests(&cfg, &dir)),
    };
    let mut plan = plan::plan(&cfg, &input);
    plan.warnings.extend(missing);
    let solves = llb::from_plan(&plan);
    let content_key = content_key(&cfg, input);
    Ok(Prepared {
        checkout,
        config: cfg,
        config_digest,
        plan,
        solves,
        source_layer,
        ca_layer,
        fetch_seconds,
        content_key,
        runtime_images: resolved_images,
    })
}

/// The source directory packed as a layer, off the async threads.
async fn pack(settings: &Settings, dir: &Path) -> Result<Layer, BuildError> {
    let (dir, limits) = (dir.to_path_buf(), settings.pack_limits);
    let packing = tokio::task::spawn_blocking(move || source::pack_dir(&dir, limits));
    Ok(packing.await.map_err(|e| BuildError::internal(format!("packing task: {e}")))??)
}

/// The repository an image names as its source. A path on the build machine (a directory, or a
/// `file://` URL) means nothing to whoever reads the image, and would make two namings of one
/// commit differ.
fn published_repository(location: &SourceLocation) -> Option<String> {
    match location {
        SourceLocation::Git(u) if !u.starts_with("file://") => Some(redact_userinfo(u)),
        SourceLocation::Git(_) | SourceLocation::Local(_) => None,
    }
}

/// Whose package caches a build mounts: its repository's. A build from nothing gets caches of
/// its own, empty.
fn cache_scope(settings: &Settings, req: &BuildRequest) -> String {
    if settings.no_cache {
        format!("{}/no-cache/{}", req.target.repository, req.operation_id)
    } else {
        req.target.repository.clone()
    }
}

/// The dependency manifests in the source that a stage's first install reads (its warm-up's).
fn warm_manifests(cfg: &AppConfig, dir: &Path) -> BTreeSet<String> {
    // The first command of each stage comes first in one of these lists.
    let firsts = [&cfg.pre_build, &cfg.build, &cfg.pre_run].into_iter().filter_map(|c| c.first());
    source::manifest_files(dir, firsts.flat_map(|c| crate::core::warm::candidates(c)))
}

/// What builds of the same content share (`turns`): the image solve's digest with the package
/// caches unscoped, since caches are mounted, never part of a layer.
fn content_key(cfg: &AppConfig, input: PlanInput) -> String {
    let unscoped = plan::plan(cfg, &PlanInput { cache_scope: String::new(), ..input });
    crate::core::digest::sha256_digest(&llb::from_plan(&unscoped).image.bytes)
}

/// The CA bundle the settings name, packed as the layer every step mounts; None without one.
pub(super) fn ca_bundle_layer(settings: &Settings) -> Result<Option<Layer>, BuildError> {
    let Some(path) = &settings.ca_bundle else { return Ok(None) };
    let pem = std::fs::read(path).map_err(|e| BuildError::internal(format!("CA bundle {}: {e}", path.display())))?;
    Ok(Some(ca_layer(pem)?))
}

/// The CA bundle `pem` packed as a layer. The bundle is the same for every build of a process,
/// and packing it is gzip over a few hundred KiB: the last one is kept, keyed by its bytes.
pub(super) fn ca_layer(pem: Vec<u8>) -> Result<Layer, BuildError> {
    static LAST: std::sync::Mutex<Option<(Vec<u8>, Layer)>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, layer)) = last.as_ref().filter(|(bytes, _)| *bytes == pem) {
        return Ok(layer.clone());
    }
    let layer = source::pack_file(llb::CA_FILE.trim_start_matches('/'), &pem, 0o644)?;
    *last = Some((pem, layer.clone()));
    Ok(layer)
}
