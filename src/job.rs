//! The queue's messages: the versioned build job a deployment service sends, the status events
//! and result the worker publishes, and the failed-jobs entry. Pure data and parsing.

use crate::build::{BuildOutcome, BuildRequest, StageTiming};
use crate::catalog::BuildProcess;
use crate::config::{ConfigSource, EnvVar, SecretRef};
use crate::error::{BuildError, ErrorClass};
use crate::source::SourceLocation;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The job format this worker reads. A job of another version is refused, not guessed at.
pub const JOB_VERSION: u64 = 1;

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
    /// SERVICE_CREATE, SERVICE_UPDATE or SERVICE_DEPLOY (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl BuildJob {
    /// Reads a job, or says in one line why it is not one.
    pub fn parse(bytes: &[u8]) -> Result<BuildJob, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the message is not JSON ({e}); a build job is a JSON object with version {JOB_VERSION}"))?;
        let obj = value.as_object().ok_or("the message is JSON but not an object; a build job is a JSON object")?;
        match obj.get("version") {
            None => return Err(format!("the job has no `version`; this worker reads version {JOB_VERSION}")),
            Some(Value::Number(n)) if n.as_u64() == Some(JOB_VERSION) => {}
            Some(other) => return Err(format!("job version {other} is not supported; this worker reads version {JOB_VERSION}")),
        }
        let job: BuildJob = serde_json::from_value(value).map_err(|e| format!("the job is malformed: {e}"))?;
        if !valid_id(&job.job_id) {
            return Err(format!("job_id `{}` must be 1-128 letters, digits, '-', '_' or '.'", job.job_id));
        }
        if !valid_id(&job.operation_id) {
            return Err(format!("operation_id `{}` must be 1-128 letters, digits, '-', '_' or '.' (App Runner uses 32 hex digits)", job.operation_id));
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
        crate::registry::ImageRef::parse(&job.target_image()).map_err(|e| format!("image: {e}"))?;
        Ok(job)
    }

    pub fn target_image(&self) -> String {
        format!("{}:{}", self.image.repository, self.image.tag.clone().unwrap_or_else(|| self.operation_id.to_ascii_lowercase()))
    }

    pub fn deadline(&self) -> Option<time::OffsetDateTime> {
        self.deadline.as_ref().and_then(|d| time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc3339).ok())
    }

    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            location: SourceLocation::Git(self.repository.url.clone()),
            reference: self.repository.commit.clone().or_else(|| self.repository.branch.clone()),
            source_dir: self.repository.source_directory.clone(),
            config_source: self.configuration.source,
            api_values: self.configuration.values.clone(),
            image: Some(self.target_image()),
            service_name: Some(self.service.name.clone()),
            operation_id: self.operation_id.clone(),
            trigger: self.trigger.clone().unwrap_or_else(|| "SERVICE_DEPLOY".into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
}

impl JobStatus {
    pub fn key(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureInfo {
    pub class: ErrorClass,
    pub message: String,
}

impl From<&BuildError> for FailureInfo {
    fn from(e: &BuildError) -> Self {
        Self { class: e.class, message: e.message.clone() }
    }
}

/// What the running service needs, secrets as references only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfiguration {
    pub start_command: String,
    pub port: u16,
    pub env: Vec<EnvVar>,
    pub secrets: Vec<SecretRef>,
}

/// A status change of a job, published on the events exchange; the terminal ones carry the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub version: u64,
    pub job_id: String,
    pub operation_id: String,
    pub service: Service,
    pub status: JobStatus,
    /// App Runner's own name for this change (`DeploymentStarted`, `CreateServiceFailed`, …) and
    /// its message, as its EventBridge events carry them; none for QUEUED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// RFC 3339
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_process: Option<BuildProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_configuration: Option<RunConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FailureInfo>,
}

/// App Runner's operation status and message for a job's status (the guide's EventBridge
/// table, SPEC.md §5.4): a first deployment is a CreateService operation, a configuration
/// update an UpdateService one, anything else a Deployment.
pub fn operation_status(trigger: Option<&str>, status: JobStatus) -> Option<(String, String)> {
    let (op, what) = match trigger {
        Some("SERVICE_CREATE") => ("CreateService", "Service creation"),
        Some("SERVICE_UPDATE") => ("UpdateService", "Service update"),
        _ => ("Deployment", "Deployment"),
    };
    let (suffix, message) = match status {
        JobStatus::Queued => return None,
        JobStatus::InProgress => ("Started", format!("{what} started.")),
        JobStatus::Succeeded => ("CompletedSuccessfully", format!("{what} completed successfully.")),
        JobStatus::Failed => ("Failed", format!("{what} failed. For details, see service logs.")),
    };
    Some((format!("{op}{suffix}"), message))
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("formattable")
}

impl JobEvent {
    pub fn new(job: &BuildJob, status: JobStatus) -> Self {
        let (operation_status, message) = match operation_status(job.trigger.as_deref(), status) {
            Some((s, m)) => (Some(s), Some(m)),
            None => (None, None),
        };
        Self {
            version: JOB_VERSION,
            job_id: job.job_id.clone(),
            operation_id: job.operation_id.clone(),
            service: job.service.clone(),
            status,
            operation_status,
            message,
            at: now_rfc3339(),
            worker: None,
            attempt: None,
            image: None,
            runtime: None,
            runtime_version: None,
            build_process: None,
            commit: None,
            stages: Vec::new(),
            run_configuration: None,
            warnings: Vec::new(),
            error: None,
        }
    }

    pub fn succeeded(job: &BuildJob, o: &BuildOutcome) -> Self {
        let mut e = Self::new(job, JobStatus::Succeeded);
        e.image = Some(o.image.clone());
        e.runtime = Some(o.runtime.clone());
        e.runtime_version = Some(o.runtime_version.clone());
        e.build_process = Some(o.build_process);
        e.commit = o.commit.clone();
        e.stages = o.stages.clone();
        e.run_configuration =
            Some(RunConfiguration { start_command: o.start_command.clone(), port: o.port, env: o.run_env.clone(), secrets: o.secrets.clone() });
        e.warnings = o.warnings.clone();
        e
    }

    pub fn failed(job: &BuildJob, error: &BuildError) -> Self {
        let mut e = Self::new(job, JobStatus::Failed);
        e.error = Some(error.into());
        e
    }
}

/// An entry of the failed-jobs queue: the job (or the raw message) and why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedJob {
    pub reason: String,
    pub class: ErrorClass,
    /// RFC 3339
    pub failed_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<BuildJob>,
    /// The message as received, when it was not a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
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
        assert_eq!(j.target_image(), "127.0.0.1:5000/apps/web:c2c8eeedea164f459cf78f12a8953390");
    }

    #[test]
    fn events_carry_app_runners_operation_statuses() {
        let s = |t: Option<&str>, st| operation_status(t, st).unwrap();
        assert_eq!(s(None, JobStatus::InProgress), ("DeploymentStarted".into(), "Deployment started.".into()));
        assert_eq!(s(Some("SERVICE_DEPLOY"), JobStatus::Succeeded), ("DeploymentCompletedSuccessfully".into(), "Deployment completed successfully.".into()));
        assert_eq!(
            s(Some("SERVICE_CREATE"), JobStatus::Failed),
            ("CreateServiceFailed".into(), "Service creation failed. For details, see service logs.".into())
        );
        assert_eq!(s(Some("SERVICE_UPDATE"), JobStatus::Succeeded).0, "UpdateServiceCompletedSuccessfully");
        assert_eq!(operation_status(None, JobStatus::Queued), None);
    }

    #[test]
    fn bad_jobs_say_why() {
        assert!(BuildJob::parse(b"hello").unwrap_err().starts_with("the message is not JSON"));
        let mut v = job();
        v["version"] = 2.into();
        assert_eq!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err(), "job version 2 is not supported; this worker reads version 1");
        let mut v = job();
        v.as_object_mut().unwrap().remove("repository");
        assert!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err().contains("missing field `repository`"));
        let mut v = job();
        v["configuration"] = serde_json::json!({"source": "API"});
        assert!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err().contains("configuration.values is missing"));
        let mut v = job();
        v["deadline"] = "tomorrow".into();
        assert!(BuildJob::parse(v.to_string().as_bytes()).unwrap_err().contains("RFC 3339"));
    }
}
