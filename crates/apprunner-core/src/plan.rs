//! The build plan: App Runner's original or revised pipeline as plain data (docs/configuration.md,
//! "The two build processes").
//! Pure: a validated configuration, a resolved runtime and facts about the images in, plan out.

mod image;

pub use image::{deployment_annotations, merge_env, FinalImage};
use image::{final_image, pairs};

use crate::caches::{package_caches, PackageCache};
use crate::catalog::{BuildProcess, ResolvedRuntime};
use crate::config::{AppConfig, SecretRef};
use crate::warm::{warm_step, WarmStep};
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::BTreeSet;

/// Where every stage works, and what it holds: the source directory's contents (docs/configuration.md A1).
pub const APP_DIR: &str = "/app";
/// Where the CA bundle is mounted, read-only, in every build step.
pub const CA_MOUNT: &str = "/run/apprunner-build/ca-certificates.crt";
/// The variables that make common tools trust the mounted CA bundle.
pub const CA_VARIABLES: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "NPM_CONFIG_CAFILE",
    "YARN_CAFILE",
    "GIT_SSL_CAINFO",
    "BUNDLE_SSL_CA_CERT",
    "COMPOSER_CAFILE",
    "AWS_CA_BUNDLE",
];

/// What the planner needs to know about a base image: its pinned reference and config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageFacts {
    /// `registry/repo:tag` as the catalog names it.
    pub reference: String,
    /// Its manifest's digest (`Digest`'s text), when resolved against the registry. Text: the
    /// plan only writes it into a reference, and the snapshots' made-up images have digests
    /// no registry would.
    pub digest: Option<String>,
    /// The image config's `Env` (`NAME=value`), which LLB execs do not inherit by themselves.
    pub env: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Its layers' `diff_ids`, bottom first (empty when not resolved).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff_ids: Vec<String>,
    /// Its config's history (empty when not resolved).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<crate::oci::History>,
}

impl ImageFacts {
    /// `reference`, not looked up: no digest, no config.
    pub fn unpinned(reference: &str) -> Self {
        Self {
            reference: reference.to_string(),
            digest: None,
            env: Vec::new(),
            labels: BTreeMap::new(),
            diff_ids: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The reference an LLB source op pulls: pinned by digest when known.
    pub fn pinned(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.reference.split('@').next().unwrap_or(&self.reference)),
            None => self.reference.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepNetwork {
    /// `BuildKit`'s sandboxed network: the internet, not the host's loopback services.
    Sandbox,
    /// The host's network; needs the `network.host` entitlement.
    Host,
}

/// Everything about one build that is not in the configuration.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub runtime: ResolvedRuntime,
    pub build_image: ImageFacts,
    pub run_image: ImageFacts,
    /// The source directory packed as an image (`ref@sha256:…`).
    pub source_image: String,
    pub source_dir: String,
    pub repository: Option<String>,
    pub revision: Option<String>,
    /// The commit's time (seconds since 1970), when the image counts as made: `SOURCE_DATE_EPOCH`
    /// of every step and of the exporter, so every build of one commit says the same; None (a
    /// working tree with changes) leaves it to `BuildKit`'s clock.
    pub source_date_epoch: Option<i64>,
    pub operation_id: String,
    /// The CA bundle packed as an image, and the file in it.
    pub ca_bundle_image: Option<String>,
    pub network: StepNetwork,
    /// Whose package caches the steps share: the service's target repository.
    pub cache_scope: String,
    /// Which of the dependency manifests the stages' first commands would read are regular files
    /// in the source directory; None: no dependency warm-up.
    pub warm_manifests: Option<BTreeSet<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    PreBuild,
    Build,
    PostBuild,
    PreRun,
}

impl Phase {
    pub fn key(self) -> &'static str {
        match self {
            Phase::PreBuild => "pre-build",
            Phase::Build => "build",
            Phase::PostBuild => "post-build",
            Phase::PreRun => "pre-run",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub phase: Phase,
    /// 1-based position within its phase, and the phase's length.
    pub index: usize,
    pub of: usize,
    pub command: String,
}

impl Step {
    pub fn describe(&self) -> String {
        format!("{} command {}/{}", self.phase.key(), self.index, self.of)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "type", content = "ref")]
pub enum StageBase {
    Image(String),
    Stage(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppCopy {
    /// The packed source directory, into /app.
    Source,
    /// /app of an earlier stage, into /app: first each of `own_layers` (directories of /app a
    /// code change leaves as they were, such as `node_modules`) as a layer of its own, then the
    /// rest. The files are those of one copy; a code change then re-exports the rest alone.
    FromStage {
        stage: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        own_layers: Vec<String>,
    },
}

/// The directories of /app that dependency installs of `runtime`'s family fill, and that the
/// copy of /app into the image therefore lays down as layers of their own.
fn dependency_dirs(runtime: &str) -> Vec<String> {
    if runtime.starts_with("nodejs") {
        vec!["node_modules".to_string()]
    } else {
        Vec::new()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageRole {
    /// Feeds later stages.
    Intermediate,
    /// Becomes the image.
    Image,
    /// Must succeed; its output is thrown away (post-build).
    Check,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    pub name: String,
    pub role: StageRole,
    pub from: StageBase,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy_app: Option<AppCopy>,
    /// The full environment of every step in this stage, in order.
    pub env: Vec<String>,
    /// Before the stage's /app arrives: its first command on the dependency manifests alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmStep>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    pub runtime: String,
    pub runtime_version: String,
    pub build_process: BuildProcess,
    pub source_dir: String,
    pub source_image: String,
    pub build_image: String,
    pub run_image: String,
    pub network: StepNetwork,
    /// `SOURCE_DATE_EPOCH` of the steps (the commit's time), when the image is reproducible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_bundle_image: Option<String>,
    /// Mounted into every step; never in the image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<PackageCache>,
    pub stages: Vec<Stage>,
    pub image: FinalImage,
    /// Runtime secrets, as references only; never resolved at build time.
    pub secrets: Vec<SecretRef>,
    pub warnings: Vec<String>,
}

impl BuildPlan {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
    pub fn image_stage(&self) -> &Stage {
        self.stages.iter().find(|s| s.role == StageRole::Image).expect("every plan has an image stage")
    }
}

fn steps(phase: Phase, commands: &[String]) -> Vec<Step> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| Step { phase, index: i + 1, of: commands.len(), command: c.clone() })
        .collect()
}

/// Composes the pipeline for `cfg` (docs/configuration.md A9, A10).
pub fn plan(cfg: &AppConfig, input: &PlanInput) -> BuildPlan {
    let step_env = |image: &ImageFacts| step_env(cfg, input, image);
    let build_steps = [steps(Phase::PreBuild, &cfg.pre_build), steps(Phase::Build, &cfg.build)].concat();
    let warm = |steps: &[Step]| {
        let present = input.warm_manifests.as_ref()?;
        warm_step(&steps.first()?.command, present)
    };
    let build_stage = Stage {
        name: "build".into(),
        role: StageRole::Intermediate,
        from: StageBase::Image(input.build_image.pinned()),
        copy_app: Some(AppCopy::Source),
        env: step_env(&input.build_image),
        warm: warm(&build_steps),
        steps: build_steps,
    };
    let (final_name, final_steps) = match input.runtime.build_process {
        // Step 5 of the original build: the build commands again, in the run image (A10).
        BuildProcess::Original => ("run", steps(Phase::Build, &cfg.build)),
        BuildProcess::Revised => ("packaging", steps(Phase::PreRun, &cfg.pre_run)),
    };
    let final_stage = Stage {
        name: final_name.into(),
        role: StageRole::Image,
        from: StageBase::Image(input.run_image.pinned()),
        copy_app: Some(AppCopy::FromStage { stage: "build".into(), own_layers: dependency_dirs(&input.runtime.name) }),
        env: step_env(&input.run_image),
        warm: warm(&final_steps),
        steps: final_steps,
    };
    let mut stages = vec![build_stage.clone(), final_stage];
    if !cfg.post_build.is_empty() {
        stages.push(Stage {
            name: "post-build".into(),
            role: StageRole::Check,
            from: StageBase::Stage("build".into()),
            copy_app: None,
            env: build_stage.env.clone(),
            warm: None,
            steps: steps(Phase::PostBuild, &cfg.post_build),
        });
    }

    let image = final_image(cfg, input);
    let warnings = plan_warnings(cfg, &input.runtime);
    BuildPlan {
        caches: package_caches(&input.runtime.name, &input.cache_scope),
        runtime: input.runtime.name.clone(),
        runtime_version: input.runtime.version.clone(),
        build_process: input.runtime.build_process,
        source_dir: input.source_dir.clone(),
        source_image: input.source_image.clone(),
        build_image: input.build_image.pinned(),
        run_image: input.run_image.pinned(),
        network: input.network,
        source_date_epoch: input.source_date_epoch,
        ca_bundle_image: input.ca_bundle_image.clone(),
        stages,
        image,
        secrets: cfg.secrets.clone(),
        warnings,
    }
}

/// The environment a stage's steps see: the image's, then the CA variables, then build.env (the
/// user wins).
fn step_env(cfg: &AppConfig, input: &PlanInput, image: &ImageFacts) -> Vec<String> {
    let mut base = image.env.clone();
    if !base.iter().any(|kv| kv.starts_with("PATH=")) {
        base.insert(0, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let mut over: Vec<(String, String)> = Vec::new();
    // HOME only if the image leaves it unset.
    if !base.iter().any(|kv| kv.starts_with("HOME=")) {
        over.push(("HOME".into(), "/root".into()));
    }
    if input.ca_bundle_image.is_some() {
        over.extend(CA_VARIABLES.iter().map(|v| (v.to_string(), CA_MOUNT.to_string())));
    }
    merge_env(&merge_env(&base, over), pairs(&cfg.build_env))
}

/// The configuration's warnings, and the plan's own: a bare `cd` at a phase's end, an extension
/// runtime, a revised build whose install outside /app would be lost.
fn plan_warnings(cfg: &AppConfig, runtime: &ResolvedRuntime) -> Vec<String> {
    let mut warnings = cfg.warnings.clone();
    warnings.extend(bare_cd_warnings(cfg));
    if runtime.extension {
        warnings.push(format!(
            "{} is an extension runtime: App Runner has no such managed runtime; it is built here with the {} build like App Runner's newest runtimes",
            runtime.name, runtime.build_process
        ));
    }
    if runtime.build_process == BuildProcess::Revised && cfg.pre_run.is_empty() {
        if let Some(cmd) = cfg.build.iter().chain(&cfg.pre_build).find(|c| installs_outside_app(c)) {
            warnings.push(format!(
                "{} uses the revised build: only /app is copied into the run image, so what `{cmd}` installs outside /app will be missing from the image; repeat that command under run.pre-run (Python: pip3 install …) or install into /app",
                runtime.name
            ));
        }
    }
    warnings
}

/// B2: a phase's commands share one shell, but each phase starts anew in /app; a phase that
/// ends in a bare `cd` is warned about.
fn bare_cd_warnings(cfg: &AppConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    for (phase, commands) in [
        (Phase::PreBuild, &cfg.pre_build),
        (Phase::Build, &cfg.build),
        (Phase::PostBuild, &cfg.post_build),
        (Phase::PreRun, &cfg.pre_run),
    ] {
        if let Some(last) = commands.last().filter(|c| ends_in_bare_cd(c)) {
            warnings.push(format!(
                "the {} phase ends in `{}`: a `cd` carries to the next command of its phase only; the next phase starts in /app",
                phase.key(),
                crate::shown::cut(last.trim())
            ));
        }
    }
    warnings
}

/// `cd dir` alone, with nothing after it in the same command.
fn ends_in_bare_cd(command: &str) -> bool {
    let c = command.trim();
    (c == "cd" || c.starts_with("cd ")) && !c.contains(['&', ';', '|', '\n'])
}

/// Commands that put packages outside /app unless told otherwise (pip into site-packages,
/// global npm installs, system package managers).
fn installs_outside_app(cmd: &str) -> bool {
    let c = cmd.trim();
    let pip = ["pip install", "pip3 install", "python -m pip install", "python3 -m pip install", "pipenv install"];
    let local_target = c.contains("--target")
        || c.contains(" -t ")
        || c.contains("--prefix")
        || c.contains("--user")
        || c.contains("venv");
    (pip.iter().any(|p| c.contains(p)) && !local_target)
        || c.contains("npm install -g")
        || c.contains("npm i -g")
        || c.contains("yarn global add")
        || c.contains("apt-get install")
        || c.contains("yum install")
}
