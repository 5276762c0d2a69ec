//! What the worker publishes about jobs: status events (the terminal ones carry the result)
//! and failed-jobs entries. Pure data.

use super::job::{BuildJob, JobError, Service, JOB_VERSION};
use crate::core::catalog::BuildProcess;
use crate::core::error::{BuildError, Classified, ErrorClass};
pub use crate::core::log::rfc3339;
use crate::core::rebase::Rebased;
use crate::core::result::{BuildResult, PhaseTimings, RunConfiguration, StageTiming};
use crate::core::shown::redact_userinfo;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    /// Ended by `cancel`: never built, or its build stopped with nothing pushed.
    Cancelled,
}

impl JobStatus {
    /// The terminal statuses, for bindings.
    pub const TERMINAL: [JobStatus; 3] = [JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled];

    pub fn key(self) -> &'static str {
        match self {
            JobStatus::Queued => "QUEUED",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Succeeded => "SUCCEEDED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelled => "CANCELLED",
        }
    }

    /// Whether the deployment ended with it.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled)
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

/// A status change of a job, published on the events exchange; the terminal ones carry the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub version: u64,
    pub job_id: String,
    pub operation_id: String,
    pub service: Service,
    pub status: JobStatus,
    /// App Runner's own name for this change (`DeploymentStarted`, `CreateServiceFailed`, …) and
    /// its message, as its `EventBridge` events carry them; none for QUEUED.
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
    /// The commit built: the job's own when it names one (every event says it then), else the
    /// one its build fetched (on the events after the fetch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What started the deployment (`SERVICE_DEPLOY`, `SOURCE_CODE_CHANGE`, …), as its job says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stages: Vec<StageTiming>,
    /// Where the build's time went (fetch, plan, solve, export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseTimings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_configuration: Option<RunConfiguration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FailureInfo>,
    /// A roll-out that rebased instead of building: the image it moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebased_from: Option<String>,
    /// On a QUEUED event: the job is batch work (`submit --batch`, a roll-out, a rebuild),
    /// which a user's deployment of the service does not wait for.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

/// App Runner's operation status and message for a job's status (the guide's `EventBridge`
/// table, <https://docs.aws.amazon.com/apprunner/latest/dg/monitor-ev.html>): a first
/// deployment is a `CreateService` operation, a configuration update an `UpdateService` one,
/// anything else a Deployment.
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
        JobStatus::Cancelled => ("Cancelled", format!("{what} was cancelled.")),
    };
    Some((format!("{op}{suffix}"), message))
}

pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

impl JobEvent {
    /// An AMQP `message_id` for one publication of this event, by which followers drop a
    /// repeat (a message delivered again after a lost connection, or published again when its
    /// confirm did not come). An operation's terminal event has one id whoever publishes it and
    /// whatever it says, so no follower hears two outcomes of one deployment; any other event's
    /// id is new with each publication (a build started again after its worker died is news).
    pub fn new_message_id(&self) -> String {
        if self.status.is_terminal() {
            format!("{}.outcome", self.operation_id)
        } else {
            format!("{}.{}.{}", self.job_id, self.status.key(), uuid::Uuid::new_v4().simple())
        }
    }

    /// The CANCELLED event of the deployment `last` is an event of, by `worker` (or by the
    /// `cancel` command itself, for a job no worker has taken).
    pub fn cancelled(last: &JobEvent, worker: Option<&str>) -> Self {
        let (operation_status, message) = operation_status(None, JobStatus::Cancelled).unzip();
        Self {
            status: JobStatus::Cancelled,
            operation_status,
            message,
            at: now_rfc3339(),
            worker: worker.map(str::to_string),
            image: None,
            error: None,
            ..last.clone()
        }
    }

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
            commit: job.repository.commit.clone(),
            trigger: job.trigger.clone(),
            stages: Vec::new(),
            phases: None,
            run_configuration: None,
            warnings: Vec::new(),
            error: None,
            rebased_from: None,
            batch: false,
        }
    }

    pub fn succeeded(job: &BuildJob, r: &BuildResult) -> Self {
        let mut e = Self::new(job, JobStatus::Succeeded);
        e.image = Some(r.image.clone());
        e.runtime = Some(r.runtime.clone());
        e.runtime_version = Some(r.runtime_version.clone());
        e.build_process = Some(r.build_process);
        e.commit.clone_from(&r.commit);
        e.stages.clone_from(&r.stages);
        e.phases = Some(r.phases);
        e.run_configuration = Some(r.run_configuration());
        e.warnings.clone_from(&r.warnings);
        e
    }

    /// SUCCEEDED for a roll-out that moved the service's image onto another run image.
    pub fn rebased(job: &BuildJob, r: &Rebased) -> Self {
        let mut e = Self::new(job, JobStatus::Succeeded);
        e.image = Some(r.image.to_string());
        e.runtime = Some(r.runtime.clone());
        e.runtime_version = Some(r.to_version.clone());
        e.build_process = Some(BuildProcess::Revised);
        e.commit.clone_from(&r.commit);
        e.rebased_from = job.rollout.as_ref().map(|r| r.from_image.clone());
        e
    }

    pub fn failed(job: &BuildJob, error: &BuildError) -> Self {
        let mut e = Self::new(job, JobStatus::Failed);
        e.error = Some(error.into());
        e
    }

    /// The same event, saying which worker sent it and on which attempt.
    #[must_use]
    pub fn by(mut self, worker: &str, attempt: Option<u32>) -> Self {
        self.worker = Some(worker.to_string());
        self.attempt = attempt;
        self
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

impl FailedJob {
    /// A job that failed: the reason, its class, the time.
    pub fn of_job(job: &BuildJob, error: &BuildError, attempts: u32, worker: &str) -> Self {
        let reason = if error.class == ErrorClass::Transient {
            format!("{} (gave up after {attempts} attempts)", error.message)
        } else {
            error.message.clone()
        };
        Self {
            reason,
            class: error.class,
            failed_at: now_rfc3339(),
            runtime: job.runtime(),
            job: Some(job.without_credentials()),
            raw_message: None,
            attempts,
            worker: Some(worker.to_string()),
        }
    }

    /// A message that is not a job, kept as it came (up to 64 KiB).
    pub fn rejected(raw: &[u8], error: &JobError, attempts: u32, worker: &str) -> Self {
        Self {
            reason: error.0.clone(),
            class: error.class(),
            failed_at: now_rfc3339(),
            job: None,
            raw_message: Some(redact_userinfo(
                &String::from_utf8_lossy(raw).chars().take(64 * 1024).collect::<String>(),
            )),
            runtime: None,
            attempts,
            worker: Some(worker.to_string()),
        }
    }

    /// A job delivered `delivery_limit` times without finishing: workers died on it each time.
    pub fn dead_lettered(job: &BuildJob, failed_at: String, delivery_limit: u32) -> Self {
        Self {
            reason: format!(
                "delivered {delivery_limit} times without finishing: a worker stopped while building it each time"
            ),
            class: ErrorClass::Internal,
            failed_at,
            runtime: job.runtime(),
            job: Some(job.without_credentials()),
            raw_message: None,
            attempts: delivery_limit,
            worker: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_app_runners_operation_statuses() {
        let s = |t: Option<&str>, st| operation_status(t, st).unwrap();
        assert_eq!(s(None, JobStatus::InProgress), ("DeploymentStarted".into(), "Deployment started.".into()));
        assert_eq!(
            s(Some("SERVICE_DEPLOY"), JobStatus::Succeeded),
            ("DeploymentCompletedSuccessfully".into(), "Deployment completed successfully.".into())
        );
        assert_eq!(
            s(Some("SERVICE_CREATE"), JobStatus::Failed),
            ("CreateServiceFailed".into(), "Service creation failed. For details, see service logs.".into())
        );
        assert_eq!(s(Some("SERVICE_UPDATE"), JobStatus::Succeeded).0, "UpdateServiceCompletedSuccessfully");
        assert_eq!(operation_status(None, JobStatus::Queued), None);
    }
}
