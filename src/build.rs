//! One build, end to end: source -> configuration -> runtime -> plan -> LLB -> BuildKit ->
//! image. The pure steps are in their own modules; this is where they meet the services.

use crate::buildkit::{Buildkit, BuildkitAddr, SolveEvent, SolveFailure};
use crate::catalog::{BuildProcess, RuntimeCatalog};
use crate::config::{self, AppConfig, ConfigSource, SecretRef, CONFIG_FILE};
use crate::error::BuildError;
use crate::image::{self, ContentImage};
use crate::llb::{self, Solves};
use crate::log::DeploymentLog;
use crate::plan::{self, BuildPlan, ImageFacts, PlanInput, StageRole, StepNetwork};
use crate::registry::{ImageRef, Registry};
use crate::source::{self, Checkout, SourceLocation};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    pub registry_credentials: Option<crate::registry::Credentials>,
    /// Registry hosts reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
}

impl Settings {
    pub fn registry_client(&self) -> Registry {
        Registry::new(self.registry_credentials.clone(), self.insecure_registries.clone())
    }
}

pub const SOURCE_REPOSITORY: &str = "apprunner-build/sources";
pub const CA_REPOSITORY: &str = "apprunner-build/ca-bundles";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub location: SourceLocation,
    pub reference: Option<String>,
    pub source_dir: String,
    pub config_source: ConfigSource,
    pub api_values: Option<serde_json::Value>,
    /// Where the image goes; None: `<registry>/apprunner-apps/<service>:<operation-id>`.
    pub image: Option<String>,
    pub service_name: Option<String>,
    pub operation_id: String,
    /// SERVICE_CREATE, SERVICE_UPDATE or SERVICE_DEPLOY, for the first log line.
    pub trigger: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
    pub cached: bool,
}

/// What a successful build hands to whoever deploys it.
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    /// `registry/repo@sha256:…`
    pub image: String,
    pub runtime: String,
    pub runtime_version: String,
    pub build_process: BuildProcess,
    pub commit: Option<String>,
    pub stages: Vec<StageTiming>,
    pub start_command: String,
    pub port: u16,
    pub run_env: Vec<config::EnvVar>,
    pub secrets: Vec<SecretRef>,
    pub warnings: Vec<String>,
    pub source_uploaded: bool,
}

/// A fetched, configured and planned build, before BuildKit.
pub struct Prepared {
    pub checkout: Checkout,
    pub config: AppConfig,
    pub plan: BuildPlan,
    pub solves: Solves,
    source_layer: source::Layer,
    ca_layer: Option<source::Layer>,
}

/// Reads the configuration the request names (A21: a REPOSITORY build needs apprunner.yaml in
/// `dir`, the source directory `source_dir` on disk).
pub fn read_config(req: &BuildRequest, source_dir: &str, dir: &std::path::Path, catalog: &RuntimeCatalog) -> Result<AppConfig, BuildError> {
    match req.config_source {
        ConfigSource::Api => {
            let values = req
                .api_values
                .as_ref()
                .ok_or_else(|| BuildError::user("configuration source API needs the API values (CodeConfigurationValues); none were given"))?;
            config::from_api(values, catalog).map_err(|e| BuildError::user(format!("invalid API configuration: {e}")))
        }
        ConfigSource::Repository => {
            let path = dir.join(CONFIG_FILE);
            let shown = format!("{}/{CONFIG_FILE}", source_dir.trim_end_matches('/'));
            let text = match std::fs::read(&path) {
                Ok(bytes) => String::from_utf8(bytes).map_err(|_| BuildError::user(format!("{shown} is not UTF-8 text")))?,
                Err(_) => {
                    let near = ["apprunner.yml", "apprunner.YAML", "AppRunner.yaml", "apprunner.json"].iter().find(|n| dir.join(n).exists());
                    let hint = near
                        .map(|n| format!("; found {n}, but App Runner reads only apprunner.yaml: rename it"))
                        .unwrap_or_else(|| "; add it there, or use configuration source API with the build settings".to_string());
                    return Err(BuildError::user(format!(
                        "App Runner configuration file apprunner.yaml not found: looked for {shown} in source directory {source_dir}{hint}"
                    )));
                }
            };
            config::from_yaml(&text, &shown, catalog).map_err(|e| BuildError::user(e.to_string()))
        }
    }
}

/// Fetches the source and plans the build. With `registry` None nothing is asked of the
/// registry (base images stay unpinned), which is what `plan --offline` shows.
pub async fn prepare(settings: &Settings, req: &BuildRequest, registry: Option<&Registry>, log: &DeploymentLog) -> Result<Prepared, BuildError> {
    let catalog = RuntimeCatalog::builtin();
    let source_dir = source::normalize_source_dir(&req.source_dir)?;
    let (repo_type, repo_shown) = match &req.location {
        SourceLocation::Local(p) => ("LOCAL", p.display().to_string()),
        SourceLocation::Git(u) => ("GIT", u.clone()),
    };
    let version = match req.reference.as_deref() {
        Some(r) if source::is_commit(r) => format!("[Commit: {r}]"),
        Some(r) => format!("[Branch: {r}]"),
        None => "[Branch: (default)]".to_string(),
    };
    log.apprunner(format!("Deployment Artifact: [Repo Type: {repo_type}], [Repository: {repo_shown}], {version}, [SourceDirectory: {source_dir}]"));
    log.apprunner(format!("Pulling source code from {repo_type} Repository ( {repo_shown} )."));
    let checkout = source::fetch(&req.location, req.reference.as_deref()).await?;
    log.apprunner("Successfully pulled your application source code.");
    log.apprunner(format!(
        "Source at commit {}{}{}.",
        checkout.commit.as_deref().unwrap_or("(not a git repository)"),
        checkout.branch.as_deref().map(|b| format!(" (branch {b})")).unwrap_or_default(),
        if checkout.dirty { ", with changes not committed (the working tree is built as it is)" } else { "" }
    ));
    let dir = source::confine(&checkout.root, &source_dir)?;
    let cfg = read_config(req, &source_dir, &dir, catalog)?;
    match cfg.source {
        ConfigSource::Repository => log.apprunner("Successfully validate configuration file."),
        ConfigSource::Api => log.apprunner("Using the build settings from the API values; any apprunner.yaml is ignored."),
    }
    let rt = catalog.lookup(&cfg.runtime).map_err(BuildError::user)?;
    let resolved = catalog.resolve(rt, cfg.runtime_version.as_deref()).map_err(BuildError::user)?;
    crate::platform::check(&cfg, &resolved, &dir, &source_dir)?;

    let host = settings.registry.as_str();
    let build_ref = format!("{host}/{}", resolved.build_image);
    let run_ref = format!("{host}/{}", resolved.run_image);
    let (build_image, run_image) = match registry {
        Some(r) => (image::image_facts(r, &build_ref, "build image").await?, image::image_facts(r, &run_ref, "run image").await?),
        None => (unpinned(&build_ref), unpinned(&run_ref)),
    };
    let source_layer = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || source::pack_dir(&dir)
    })
    .await
    .map_err(|e| BuildError::internal(format!("packing task: {e}")))??;
    let ca_layer = match &settings.ca_bundle {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| BuildError::internal(format!("CA bundle {}: {e}", path.display())))?;
            Some(source::pack_file(llb::CA_FILE.trim_start_matches('/'), &pem, 0o644)?)
        }
        None => None,
    };
    let input = PlanInput {
        runtime: resolved,
        build_image,
        run_image,
        source_image: image::content_reference(host, SOURCE_REPOSITORY, &source_layer),
        source_dir,
        repository: match &req.location {
            SourceLocation::Git(u) => Some(u.clone()),
            SourceLocation::Local(_) => None,
        },
        revision: checkout.commit.clone(),
        operation_id: req.operation_id.clone(),
        ca_bundle_image: ca_layer.as_ref().map(|l| image::content_reference(host, CA_REPOSITORY, l)),
        network: settings.network,
    };
    let plan = plan::plan(&cfg, &input);
    let solves = llb::from_plan(&plan);
    Ok(Prepared { checkout, config: cfg, plan, solves, source_layer, ca_layer })
}

fn unpinned(reference: &str) -> ImageFacts {
    ImageFacts { reference: reference.to_string(), digest: None, env: Vec::new(), labels: BTreeMap::new() }
}

pub fn default_image(settings: &Settings, req: &BuildRequest) -> String {
    let service = req.service_name.clone().unwrap_or_else(|| {
        let base = req.location.name();
        let dir = req.source_dir.trim_matches('/').replace('/', "-");
        [base.unwrap_or_else(|| "app".into()), dir].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-")
    });
    format!("{}/apprunner-apps/{}:{}", settings.registry, crate::registry::repository_component(&service), req.operation_id)
}

/// Runs a whole build, streaming the deployment log; the image reference with its digest on success.
pub async fn run(settings: &Settings, req: &BuildRequest, log: &DeploymentLog) -> Result<BuildOutcome, BuildError> {
    log.apprunner(format!("Deployment with ID : {} started. Triggering event : {}", req.operation_id, req.trigger));
    let result = run_inner(settings, req, log).await;
    match &result {
        Ok(o) => {
            log.apprunner(format!("Image: {}", o.image));
            log.apprunner("Deployment completed successfully.");
        }
        Err(e) => {
            log.apprunner(format!("Failed to build your application source code. Reason: {}", e.message));
            log.apprunner(format!("Deployment failed ({} error). For details, see the lines above.", e.class));
        }
    }
    result
}

async fn run_inner(settings: &Settings, req: &BuildRequest, log: &DeploymentLog) -> Result<BuildOutcome, BuildError> {
    let registry = settings.registry_client();
    let target_text = req.image.clone().unwrap_or_else(|| default_image(settings, req));
    let target = ImageRef::parse(&target_text).map_err(BuildError::user)?;
    if target.digest.is_some() {
        return Err(BuildError::user(format!("target image {target_text} names a digest; give a repository and tag, e.g. {}:latest", target.repository)));
    }
    let prepared = prepare(settings, req, Some(&registry), log).await?;
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
        log.apprunner(format!("Runtime secrets {} stay references: they are not resolved at build time and not written into the image.", names.join(", ")));
    }

    let host = settings.registry.as_str();
    let src: ContentImage = image::push_content(&registry, host, SOURCE_REPOSITORY, &prepared.source_layer).await?;
    if src.uploaded {
        log.apprunner(format!(
            "Source directory {} packed: {} files, {} bytes uploaded as {}.",
            plan.source_dir, prepared.source_layer.files, src.bytes, src.pinned
        ));
    } else {
        log.apprunner(format!("Source directory {} unchanged since an earlier build ({}); nothing uploaded.", plan.source_dir, src.pinned));
    }
    if let Some(ca) = &prepared.ca_layer {
        image::push_content(&registry, host, CA_REPOSITORY, ca).await?;
    }

    let buildkit = Buildkit::connect(&settings.buildkit).await?;
    let entitlements = match settings.network {
        StepNetwork::Host => vec!["network.host".to_string()],
        StepNetwork::Sandbox => Vec::new(),
    };
    let (exporter, attrs) = match settings.buildkit {
        BuildkitAddr::Docker(_) => ("moby", BTreeMap::from([("name".to_string(), target_text.clone())])),
        _ => {
            let mut a = BTreeMap::from([("name".to_string(), target_text.clone()), ("push".to_string(), "true".to_string())]);
            if crate::registry::is_plain_http(&target.registry, &settings.insecure_registries) {
                a.insert("registry.insecure".into(), "true".into());
            }
            ("image", a)
        }
    };

    log.apprunner("Starting source code build.");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reporter = tokio::spawn(report(rx, log.clone(), plan.clone()));
    let image_solve = buildkit.solve(&prepared.solves.image, Some((exporter, attrs)), &entitlements, tx.clone());
    let post_solve = async {
        match &prepared.solves.post_build {
            Some(llb) => buildkit.solve(llb, None, &entitlements, tx.clone()).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let solved = tokio::time::timeout(settings.timeout, async { tokio::join!(image_solve, post_solve) }).await;
    drop(tx);
    let timings = reporter.await.unwrap_or_default();
    let (image_result, post_result) = match solved {
        Ok(r) => r,
        Err(_) => {
            return Err(BuildError::user(format!("the build did not finish within its time limit of {} seconds and was cancelled", settings.timeout.as_secs())))
        }
    };
    let failure = |f: SolveFailure| {
        let e = f.clone().into_build_error();
        match f {
            SolveFailure::Step { vertex, .. } => {
                let phase = plan.stage(&vertex.stage).and_then(|s| vertex.step.map(|i| s.steps[i].phase.key())).unwrap_or("build");
                BuildError::user(format!("Failed to execute '{phase}' command: {}", e.message))
            }
            _ => e,
        }
    };
    image_result.map_err(failure)?;
    post_result.map_err(failure)?;
    log.apprunner("Successfully built your application source code.");

    if let BuildkitAddr::Docker(socket) = &settings.buildkit {
        log.apprunner(format!("Pushing image {target_text}."));
        crate::docker::push(socket, &format!("{}/{}", target.registry, target.repository), &target.reference(), settings.registry_credentials.as_ref()).await?;
    }
    let digest = image::write_final_config(&registry, &target, &plan.image).await?;
    Ok(BuildOutcome {
        image: target.with_digest(&digest),
        runtime: plan.runtime.clone(),
        runtime_version: plan.runtime_version.clone(),
        build_process: plan.build_process,
        commit: prepared.checkout.commit.clone(),
        stages: timings,
        start_command: prepared.config.command.clone(),
        port: prepared.config.port,
        run_env: prepared.config.run_env.clone(),
        secrets: prepared.config.secrets.clone(),
        warnings: plan.warnings.clone(),
        source_uploaded: src.uploaded,
    })
}

/// Turns solve events into deployment-log lines, and measures each stage.
async fn report(mut rx: tokio::sync::mpsc::UnboundedReceiver<SolveEvent>, log: DeploymentLog, plan: BuildPlan) -> Vec<StageTiming> {
    let mut started: HashMap<String, Instant> = HashMap::new();
    let mut ran: HashMap<String, bool> = HashMap::new();
    let mut timings = Vec::new();
    let last_vertex_of = |stage: &str| plan.stage(stage).map(|s| if s.steps.is_empty() { None } else { Some(s.steps.len() - 1) });
    while let Some(ev) = rx.recv().await {
        let info = match &ev {
            SolveEvent::Started(v)
            | SolveEvent::Cached(v)
            | SolveEvent::Completed { vertex: v, .. }
            | SolveEvent::Failed { vertex: v, .. }
            | SolveEvent::Line { vertex: v, .. } => v.clone(),
            SolveEvent::Other { .. } => continue,
        };
        if !started.contains_key(&info.stage) {
            started.insert(info.stage.clone(), Instant::now());
            let role = plan.stage(&info.stage).map(|s| s.role);
            let what = match role {
                Some(StageRole::Image) => " (becomes the image)",
                Some(StageRole::Check) => " (must succeed; not part of the image)",
                _ => "",
            };
            log.apprunner(format!("Stage {} started{what}.", info.stage));
        }
        let done = matches!(ev, SolveEvent::Cached(_) | SolveEvent::Completed { .. });
        match ev {
            SolveEvent::Started(v) => log.apprunner(format!("{} started.", v.name)),
            SolveEvent::Cached(v) => log.apprunner(format!("{} cached.", v.name)),
            SolveEvent::Completed { vertex, seconds } => {
                *ran.entry(vertex.stage.clone()).or_default() = true;
                if vertex.step.is_some() {
                    log.apprunner(format!("{} finished in {seconds:.1}s.", vertex.name));
                }
            }
            SolveEvent::Failed { vertex, error } => {
                log.apprunner(format!("{} failed: {}", vertex.name, crate::error::one_line(error)));
            }
            SolveEvent::Line { text, .. } => log.build(text),
            SolveEvent::Other { .. } => {}
        }
        let finished_stage = last_vertex_of(&info.stage) == Some(info.step);
        let is_end = done && finished_stage;
        if is_end && !timings.iter().any(|t: &StageTiming| t.stage == info.stage) {
            let secs = started[&info.stage].elapsed().as_secs_f64();
            let cached = !ran.get(&info.stage).copied().unwrap_or(false);
            log.apprunner(format!("Stage {} finished in {secs:.1}s{}.", info.stage, if cached { " (all cached)" } else { "" }));
            timings.push(StageTiming { stage: info.stage.clone(), seconds: secs, cached });
        }
    }
    timings
}
