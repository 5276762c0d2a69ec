//! The build job a deployment service sends (versioned JSON), read and checked. Pure data and
//! parsing; the events and failed entries the worker sends back are in `event`.

pub use super::event::{now_rfc3339, operation_status, rfc3339, FailedJob, FailureInfo, JobEvent, JobStatus};
use crate::core::catalog::RuntimeCatalog;
use crate::core::config::ConfigSource;
use crate::core::image_ref::ImageRef;
use crate::core::request::{BuildRequest, ConfigInput, Revision, SourceLocation};
pub use crate::core::result::RunConfiguration;
use crate::core::shown::cut;
use crate::error::{BuildError, Classified, ErrorClass};
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

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl BuildJob {
    /// Reads a job, or says in one line why it is not one.
    pub fn parse(bytes: &[u8]) -> Result<BuildJob, JobError> {
        if bytes.len() > MAX_JOB_BYTES {
            return Err(JobError(format!(
                "the message is {} bytes; a build job may have at most {MAX_JOB_BYTES}",
                bytes.len()
            )));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            format!("the message is not JSON ({e}); a build job is a JSON object with version {JOB_VERSION}")
        })?;
        let obj = value.as_object().ok_or("the message is JSON but not an object; a build job is a JSON object")?;
        match obj.get("version") {
            None => return Err(JobError(format!("the job has no `version`; this worker reads version {JOB_VERSION}"))),
            Some(Value::Number(n)) if n.as_u64() == Some(JOB_VERSION) => {}
            Some(other) => {
                return Err(JobError(format!(
                    "job version {other} is not supported; this worker reads version {JOB_VERSION}"
                )))
            }
        }
        let job: BuildJob = serde_json::from_value(value).map_err(|e| format!("the job is malformed: {e}"))?;
        if !valid_id(&job.job_id) {
            return Err(JobError(format!(
                "job_id `{}` must be 1-128 letters, digits, '-', '_' or '.'",
                cut(&job.job_id)
            )));
        }
        if !valid_id(&job.operation_id) {
            return Err(JobError(format!(
                "operation_id `{}` must be 1-128 letters, digits, '-', '_' or '.' (App Runner uses 32 hex digits)",
                cut(&job.operation_id)
            )));
        }
        if job.repository.branch.is_some() && job.repository.commit.is_some() {
            return Err("the job names both repository.branch and repository.commit; give one".into());
        }
        if job.configuration.source == ConfigSource::Api && job.configuration.values.is_none() {
            return Err("configuration.source is API but configuration.values is missing".into());
        }
        if let Some(d) = &job.deadline {
            time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339)
                .map_err(|_| format!("deadline `{d}` is not an RFC 3339 time such as 2026-11-25T12:00:00Z"))?;
        }
        job.target().map_err(|e| format!("image: {e}"))?;
        if let Some(r) = &job.rollout {
            let ours =
                ImageRef::parse(&r.from_image).is_ok_and(|f| f.digest.is_some() && f.name() == job.image.repository);
            if !ours {
                return Err(JobError(format!(
                    "rollout.from_image `{}` must be an image of the job's repository by digest, {}@sha256:…",
                    cut(&r.from_image),
                    cut(&job.image.repository)
                )));
            }
            if r.to_version.is_empty() || r.to_version.len() > 64 || r.runtime.is_empty() || r.runtime.len() > 64 {
                return Err("rollout.runtime and rollout.to_version must be 1-64 characters".into());
            }
        }
        Ok(job)
    }

    /// Where the job's image goes: `image.repository`, tagged `image.tag` or the operation id.
    pub fn target(&self) -> Result<ImageRef, crate::core::image_ref::ImageRefError> {
        let tag = self.image.tag.clone().unwrap_or_else(|| self.operation_id.to_ascii_lowercase());
        ImageRef::parse(&format!("{}:{tag}", self.image.repository))
    }

    /// The revision the job names: a commit, a branch, or the default branch.
    pub fn revision(&self) -> Revision {
        match (&self.repository.commit, &self.repository.branch) {
            (Some(c), _) => Revision::Commit(c.clone()),
            (None, Some(b)) => Revision::Branch(b.clone()),
            (None, None) => Revision::DefaultBranch,
        }
    }

    pub fn deadline(&self) -> Option<time::OffsetDateTime> {
        self.deadline
            .as_ref()
            .and_then(|d| time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok())
    }

    pub fn request(&self) -> Result<BuildRequest, BuildError> {
        let config = match (&self.configuration.source, &self.configuration.values) {
            (ConfigSource::Api, Some(values)) => ConfigInput::Api(values.clone()),
            (ConfigSource::Api, None) => {
                return Err(BuildError::user(
                    "configuration source API needs the API values (CodeConfigurationValues); none were given",
                ))
            }
            (ConfigSource::Repository, _) => ConfigInput::Repository,
        };
        Ok(BuildRequest {
            location: SourceLocation::Git(self.repository.url.clone()),
            revision: self.revision(),
            source_dir: self.repository.source_directory.clone(),
            config,
            target: self.target()?,
            operation_id: self.operation_id.clone(),
            trigger: self.trigger.clone().unwrap_or_else(|| "SERVICE_DEPLOY".into()),
            current_image: None,
            prior: None,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> serde_json::Value {
        serde_json::json!({
            "version": 1, "job_id": "j1", "operation_id": "c2c8eeedea164f459cf78f12a8953390",
            "service": {"name": "web", "id": "ac7ec8b51ff34746bcb6654e0bcb23da"},
            "repository": {"url": "https://github.com/github-user/python-hello", "branch": "main"},
            "configuration": {"source": "REPOSITORY"},
            "image": {"repository": "127.0.0.1:5000/apps/web"},
            "producer_note": "unknown fields are fine"
        })
    }

    #[test]
    fn jobs_parse_and_tolerate_unknown_fields() {
        let j = BuildJob::parse(job().to_string().as_bytes()).unwrap();
        assert_eq!(j.repository.source_directory, "/");
        assert_eq!(j.target().unwrap().to_string(), "127.0.0.1:5000/apps/web:c2c8eeedea164f459cf78f12a8953390");
        assert_eq!(j.revision(), Revision::Branch("main".into()));
    }

    #[test]
    fn bad_jobs_say_why() {
        assert!(BuildJob::parse(b"hello").unwrap_err().0.starts_with("the message is not JSON"));
        let mut v = job();
        v["version"] = 2.into();
        assert_eq!(
            BuildJob::parse(v.to_string().as_bytes()).unwrap_err().0,
            "job version 2 is not supported; this worker reads version 1"
        );
        let mut v = job();
        v.as_object_mut().unwrap().remove("repository");
        assert!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err().0.contains("missing field `repository`"));
        let mut v = job();
        v["configuration"] = serde_json::json!({"source": "API"});
        assert!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err().0.contains("configuration.values is missing"));
        let huge = vec![b' '; MAX_JOB_BYTES + 1];
        assert!(BuildJob::parse(&huge).unwrap_err().0.contains("a build job may have at most 524288"));
        let mut v = job();
        v["job_id"] = "\u{1b}[2J".repeat(1000).into();
        let e = BuildJob::parse(v.to_string().as_bytes()).unwrap_err().0;
        assert!(e.len() < 1000 && !e.contains('\u{1b}'), "{e}");
        let mut v = job();
        v["deadline"] = "tomorrow".into();
        assert!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err().0.contains("RFC 3339"));
    }
}
