//! What a build gives back: the result a deployment reports (`build --result`, the SUCCEEDED
//! event), where its time went, what a rebase did, and what a service's record keeps of the
//! build that made its image (`redeploy` recognises a deployment of the same inputs by it).
//! Plain data.

use crate::catalog::BuildProcess;
use crate::config::{AppConfig, EnvVar, SecretRef};
use crate::digest::Digest;
use crate::image_ref::ImageRef;
use crate::plan::BuildPlan;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
    pub cached: bool,
}

/// What the running service needs, secrets as references only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfiguration {
    pub start_command: String,
    pub port: u16,
    pub env: Vec<EnvVar>,
    pub secrets: Vec<SecretRef>,
}

/// What a successful build hands to whoever deploys it (`build --result`, the SUCCEEDED event).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildResult {
    /// `registry/repo@sha256:…`
    pub image: String,
    pub runtime: String,
    pub runtime_version: String,
    pub build_process: BuildProcess,
    pub commit: Option<String>,
    pub stages: Vec<StageTiming>,
    pub start_command: String,
    pub port: u16,
    pub run_env: Vec<EnvVar>,
    pub secrets: Vec<SecretRef>,
    pub warnings: Vec<String>,
    pub source_uploaded: bool,
    pub phases: PhaseTimings,
    /// What a service's record keeps of this build, so that a deployment of the same known
    /// inputs is recognised before it fetches anything (`redeploy`); None when that cannot be
    /// said (a local directory, a branch not found, a builder of unknown build id).
    #[serde(skip)]
    pub prior: Option<PriorBuild>,
}

/// Where a build's time went, in seconds: fetching the source; reading the configuration,
/// planning, packing and uploading the source; `BuildKit` running the steps; `BuildKit` exporting
/// and pushing the image and the fleet cache (as it reported them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimings {
    pub fetch: f64,
    pub plan: f64,
    pub solve: f64,
    pub export: f64,
}

impl BuildResult {
    pub fn run_configuration(&self) -> RunConfiguration {
        RunConfiguration {
            start_command: self.start_command.clone(),
            port: self.port,
            env: self.run_env.clone(),
            secrets: self.secrets.clone(),
        }
    }
}

/// What one rebase did (the image moved, or found on the version already).
#[derive(Debug, Clone, PartialEq)]
pub struct Rebased {
    /// The new image: the target, at its index's digest.
    pub image: ImageRef,
    pub runtime: String,
    pub from_version: String,
    pub to_version: String,
    /// The run image it now sits on.
    pub run_image: String,
    /// The run image's digest, once the image moved onto it.
    pub run_image_digest: Option<Digest>,
    /// The digest of the image it moved (its index).
    pub from_digest: Option<Digest>,
    /// The image was on `to_version` already: the target now names it, nothing else changed.
    pub unchanged: bool,
    /// Bytes sent to the registry (0 when every layer was mounted).
    pub copied_bytes: usize,
    pub seconds: f64,
    pub commit: Option<String>,
}

/// What a service's record keeps of the build that made its current image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorBuild {
    /// `fingerprint` of its known inputs.
    pub fingerprint: String,
    /// The build key on its index (`reuse`), checked again before the image is taken.
    pub build_key: String,
    /// Each runtime image as the build named it (`registry/repo:tag`) and the digest it named.
    pub runtime_images: BTreeMap<String, String>,
    /// What it reported, reported again by a redeploy that takes its image.
    pub reported: ReportedBuild,
    /// The bytes of the index the record names, when the worker that wrote it had them: a
    /// redeploy then writes its own index without reading the current one again. Trusted only
    /// when they hash to the record's digest (`index_of`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
}

impl PriorBuild {
    /// This build's record of the image whose index is `index` (JSON, as the registry holds it).
    #[must_use]
    pub fn with_index(self, index: Option<&[u8]>) -> Self {
        let index = index.and_then(|b| String::from_utf8(b.to_vec()).ok());
        Self { index, ..self }
    }

    /// The kept index bytes, if they are those of the image `digest` names.
    pub fn index_of(&self, digest: &crate::digest::Digest) -> Option<&[u8]> {
        self.index.as_deref().map(str::as_bytes).filter(|b| crate::digest::Digest::of(b) == *digest)
    }
}

/// The parts of a build's result that a redeploy of the same inputs reports again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedBuild {
    pub runtime: String,
    pub runtime_version: String,
    pub build_process: BuildProcess,
    pub start_command: String,
    pub port: u16,
    pub run_env: Vec<EnvVar>,
    pub secrets: Vec<SecretRef>,
    pub warnings: Vec<String>,
}

impl ReportedBuild {
    /// What a build of `plan` from `config` reports.
    pub fn of(plan: &BuildPlan, config: &AppConfig) -> Self {
        ReportedBuild {
            runtime: plan.runtime.clone(),
            runtime_version: plan.runtime_version.clone(),
            build_process: plan.build_process,
            start_command: config.command.clone(),
            port: config.port,
            run_env: config.run_env.clone(),
            secrets: config.secrets.clone(),
            warnings: plan.warnings.clone(),
        }
    }

    /// The result of a build that reported this and gave `image` (the one place a
    /// `BuildResult` is put together: a build, an image taken again, a redeploy).
    pub fn result(
        self,
        image: String,
        commit: Option<String>,
        stages: Vec<StageTiming>,
        source_uploaded: bool,
        phases: PhaseTimings,
        prior: Option<PriorBuild>,
    ) -> BuildResult {
        BuildResult {
            image,
            runtime: self.runtime,
            runtime_version: self.runtime_version,
            build_process: self.build_process,
            commit,
            stages,
            start_command: self.start_command,
            port: self.port,
            run_env: self.run_env,
            secrets: self.secrets,
            warnings: self.warnings,
            source_uploaded,
            phases,
            prior,
        }
    }
}
