//! The build job a deployment service sends (versioned JSON), read and checked. Pure data and
//! parsing; the events and failed entries the worker sends back are in `event`.

pub use super::event::{now_rfc3339, operation_status, rfc3339, FailedJob, FailureInfo, JobEvent, JobStatus};
use crate::core::catalog::RuntimeCatalog;
use crate::core::config::ConfigSource;
use crate::core::image_ref::ImageRef;
use crate::core::request::{ConfigInput, Revision};
pub use crate::core::result::RunConfiguration;

use crate::core::error::{Classified, ErrorClass};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The job format this worker reads. A job of another version is refused, not guessed at.
pub const JOB_VERSION: u64 = 1;
/// The largest job message read; API values inside it are bounded again on their own.
pub const MAX_JOB_BYTES: usize = 512 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default = "root", rename = "source_directory")]
    pub source_directory: String,
}

fn root() -> String {
    "/".into()
}

impl Repository {
    /// A repository at a revision: a commit or a branch go in their own fields.
    pub fn at(url: String, revision: &Revision, source_directory: String) -> Self {
        let (branch, commit) = match revision {
            Revision::Branch(b) => (Some(b.clone()), None),
            Revision::Commit(c) => (None, Some(c.clone())),
            Revision::DefaultBranch | Revision::WorkingTree => (None, None),
        };
        Self { url, branch, commit, source_directory }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Configuration {
    pub source: ConfigSource,
    /// `CodeConfigurationValues` when the source is API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageTarget {
    /// `registry/repository` (no tag)
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// A runtime roll-out's part of a job (`roll-out`): move the service to `runtime` `to_version`
/// by rebasing its current image `from_image` when that image allows it, by building otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub runtime: String,
    pub to_version: String,
    /// `registry/repository@sha256:…`, in the job's image repository.
    pub from_image: String,
}

/// A build job (JSON). Unknown fields are ignored, so producers can add their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildJob {
    pub version: u64,
    pub job_id: String,
    pub operation_id: String,
    pub service: Service,
    pub repository: Repository,
    pub configuration: Configuration,
    pub image: ImageTarget,
    /// RFC 3339; a job still waiting past it fails without building.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// `SERVICE_CREATE`, `SERVICE_UPDATE` or `SERVICE_DEPLOY` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// RFC 3339: when it was submitted (stamped by `submit`, or by whoever publishes it). Of a
    /// service's deployments, the last submitted has the last word on its record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
}

/// A message that is not a job this worker can run, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JobError(pub String);

impl From<String> for JobError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        Self(s.to_string())
    }
}

impl Classified for JobError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

impl BuildJob {
    /// Where the job's image goes: `image.repository`, tagged `image.tag` or the operation id.
    pub(super) fn target(&self) -> Result<ImageRef, crate::core::image_ref::ImageRefError> {
        let tag = self.image.tag.clone().unwrap_or_else(|| self.operation_id.to_ascii_lowercase());
        ImageRef::parse(&format!("{}:{tag}", self.image.repository))
    }

    /// A job for a new deployment of `service`: new job and operation ids.
    pub fn deploy(
        service: &str,
        repository: Repository,
        config: &ConfigInput,
        image: ImageTarget,
        deadline: Option<String>,
    ) -> Self {
        let operation_id = crate::core::request::new_operation_id();
        let (source, values) = match config {
            ConfigInput::Repository => (ConfigSource::Repository, None),
            ConfigInput::Api(v) => (ConfigSource::Api, Some(v.clone())),
        };
        BuildJob {
            version: JOB_VERSION,
            job_id: format!("{service}-{}", &operation_id[..12]),
            operation_id,
            service: Service { name: service.to_string(), id: None },
            repository,
            configuration: Configuration { source, values },
            image,
            deadline,
            trigger: Some("SERVICE_DEPLOY".into()),
            rollout: None,
            submitted_at: None,
        }
    }

    /// The same job as a new deployment (new job and operation ids): a rebuild. An image tag
    /// that was the old operation id follows the new one.
    #[must_use]
    pub fn rebuild(&self) -> Self {
        let mut new_job = self.clone();
        let suffix = crate::core::request::new_operation_id();
        new_job.operation_id.clone_from(&suffix);
        new_job.job_id =
            format!("{}.rebuild-{}", self.job_id.split(".rebuild-").next().unwrap_or(&self.job_id), &suffix[..8]);
        if self.image.tag.as_deref() == Some(self.operation_id.as_str()) {
            new_job.image.tag = None;
        }
        new_job.submitted_at = None;
        new_job
    }

    /// The job stamped with the time it is submitted, unless its publisher stamped it.
    #[must_use]
    pub fn stamped(&self) -> Self {
        let mut job = self.clone();
        job.submitted_at.get_or_insert_with(now_rfc3339);
        job
    }

    /// When it was submitted, if it says.
    pub fn submitted(&self) -> Option<time::OffsetDateTime> {
        let at = self.submitted_at.as_deref()?;
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
    }

    /// The job as it may be shown and kept: its repository URL without user information.
    #[must_use]
    pub fn without_credentials(&self) -> Self {
        let mut job = self.clone();
        job.repository.url = crate::core::shown::redact_userinfo(&job.repository.url);
        job
    }

    /// The runtime the job asks for, when it can be told without fetching the source (API values).
    pub fn runtime(&self) -> Option<String> {
        let values = self.configuration.values.as_ref()?;
        let obj = values.get("CodeConfigurationValues").unwrap_or(values).as_object()?;
        let rt = obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("Runtime"))?.1.as_str()?;
        RuntimeCatalog::builtin().lookup(rt).ok().map(|r| r.name.clone())
    }
}
