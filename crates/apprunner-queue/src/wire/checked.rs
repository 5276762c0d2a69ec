//! A build job read and checked once: its wire form (`BuildJob`) beside what it says, parsed
//! (the target, the revision, the configuration, its times, a roll-out's image). The worker
//! works from this; nothing reads the job's strings again.

use super::job::{BuildJob, JobError, JOB_VERSION, MAX_JOB_BYTES};
use crate::core::config::ConfigSource;
use crate::core::image_ref::ImageRef;
use crate::core::request::{BuildRequest, ConfigInput, Revision, SourceLocation, TRIGGERS};
use crate::core::shown::cut;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A job every check passed: the wire form (its fields, through `Deref`) and what it says.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedJob {
    wire: BuildJob,
    /// Where the image goes: `image.repository`, tagged `image.tag` or the operation id.
    pub target: ImageRef,
    /// The commit, the branch, or the repository's default branch.
    pub revision: Revision,
    /// The configuration: the repository's `apprunner.yaml`, or the API values given.
    pub config: ConfigInput,
    /// A job still waiting past it fails without building.
    pub deadline: Option<OffsetDateTime>,
    /// When it was submitted: of a service's deployments, the last submitted has the last word.
    pub submitted: Option<OffsetDateTime>,
    /// A roll-out's current image, by digest, in the job's repository.
    pub rollout_from: Option<ImageRef>,
}

impl std::ops::Deref for CheckedJob {
    type Target = BuildJob;
    fn deref(&self) -> &BuildJob {
        &self.wire
    }
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// An RFC 3339 time, or None when there is none; `what` names the field in the error.
fn time_of(value: Option<&str>, what: &str) -> Result<Option<OffsetDateTime>, JobError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339).map_err(|_| {
                JobError(format!("{what} `{}` is not an RFC 3339 time such as 2026-11-25T12:00:00Z", cut(v)))
            })
        })
        .transpose()
}

impl CheckedJob {
    /// Reads a job message, or says in one line why it is not one.
    pub fn parse(bytes: &[u8]) -> Result<Self, JobError> {
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
        Self::check(job)
    }

    /// Checks a job made in this process (a submission, a rebuild), as a worker would.
    pub fn check(wire: BuildJob) -> Result<Self, JobError> {
        if !valid_id(&wire.job_id) {
            return Err(JobError(format!(
                "job_id `{}` must be 1-128 letters, digits, '-', '_' or '.'",
                cut(&wire.job_id)
            )));
        }
        if !valid_id(&wire.operation_id) {
            return Err(JobError(format!(
                "operation_id `{}` must be 1-128 letters, digits, '-', '_' or '.' (App Runner uses 32 hex digits)",
                cut(&wire.operation_id)
            )));
        }
        let revision = match (&wire.repository.commit, &wire.repository.branch) {
            (Some(_), Some(_)) => {
                return Err("the job names both repository.branch and repository.commit; give one".into())
            }
            (Some(c), None) => Revision::Commit(c.clone()),
            (None, Some(b)) => Revision::Branch(b.clone()),
            (None, None) => Revision::DefaultBranch,
        };
        let config = match (&wire.configuration.source, &wire.configuration.values) {
            (ConfigSource::Api, Some(values)) => ConfigInput::Api(values.clone()),
            (ConfigSource::Api, None) => {
                return Err("configuration.source is API but configuration.values is missing".into())
            }
            (ConfigSource::Repository, _) => ConfigInput::Repository,
        };
        if let Some(t) = wire.trigger.as_deref().filter(|t| !TRIGGERS.contains(t)) {
            return Err(JobError(format!("trigger `{}` is not one of {}", cut(t), TRIGGERS.join(", "))));
        }
        let deadline = time_of(wire.deadline.as_deref(), "deadline")?;
        let submitted = time_of(wire.submitted_at.as_deref(), "submitted_at")?;
        let target = wire.target().map_err(|e| format!("image: {e}"))?;
        let rollout_from = match &wire.rollout {
            None => None,
            Some(r) => {
                let from = ImageRef::parse(&r.from_image)
                    .ok()
                    .filter(|f| f.digest.is_some() && f.name() == wire.image.repository)
                    .ok_or_else(|| {
                        format!(
                            "rollout.from_image `{}` must be an image of the job's repository by digest, {}@sha256:…",
                            cut(&r.from_image),
                            cut(&wire.image.repository)
                        )
                    })?;
                if r.to_version.is_empty() || r.to_version.len() > 64 || r.runtime.is_empty() || r.runtime.len() > 64 {
                    return Err("rollout.runtime and rollout.to_version must be 1-64 characters".into());
                }
                Some(from)
            }
        };
        Ok(Self { wire, target, revision, config, deadline, submitted, rollout_from })
    }

    /// The wire form, as it is published and kept.
    pub fn wire(&self) -> &BuildJob {
        &self.wire
    }

    /// The build this job asks for.
    pub fn request(&self) -> BuildRequest {
        BuildRequest {
            location: SourceLocation::Git(self.repository.url.clone()),
            revision: self.revision.clone(),
            source_dir: self.repository.source_directory.clone(),
            config: self.config.clone(),
            target: self.target.clone(),
            operation_id: self.operation_id.clone(),
            trigger: self.trigger.clone().unwrap_or_else(|| "SERVICE_DEPLOY".into()),
            current_image: None,
            prior: None,
        }
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
        let j = CheckedJob::parse(job().to_string().as_bytes()).unwrap();
        assert_eq!(j.repository.source_directory, "/");
        assert_eq!(j.target.to_string(), "127.0.0.1:5000/apps/web:c2c8eeedea164f459cf78f12a8953390");
        assert_eq!(j.revision, Revision::Branch("main".into()));
    }

    #[test]
    fn bad_jobs_say_why() {
        assert!(CheckedJob::parse(b"hello").unwrap_err().0.starts_with("the message is not JSON"));
        let mut v = job();
        v["version"] = 2.into();
        assert_eq!(
            CheckedJob::parse(v.to_string().as_bytes()).unwrap_err().0,
            "job version 2 is not supported; this worker reads version 1"
        );
        let mut v = job();
        v.as_object_mut().unwrap().remove("repository");
        assert!(CheckedJob::parse(v.to_string().as_bytes()).unwrap_err().0.contains("missing field `repository`"));
        let mut v = job();
        v["configuration"] = serde_json::json!({"source": "API"});
        assert!(CheckedJob::parse(v.to_string().as_bytes()).unwrap_err().0.contains("configuration.values is missing"));
        let huge = vec![b' '; MAX_JOB_BYTES + 1];
        assert!(CheckedJob::parse(&huge).unwrap_err().0.contains("a build job may have at most 524288"));
        let mut v = job();
        v["job_id"] = "\u{1b}[2J".repeat(1000).into();
        let e = CheckedJob::parse(v.to_string().as_bytes()).unwrap_err().0;
        assert!(e.len() < 1000 && !e.contains('\u{1b}'), "{e}");
        let mut v = job();
        v["deadline"] = "tomorrow".into();
        assert!(CheckedJob::parse(v.to_string().as_bytes()).unwrap_err().0.contains("RFC 3339"));
    }

    #[test]
    fn a_checked_job_holds_what_it_names_parsed() {
        let mut v = job();
        v["repository"] = serde_json::json!({"url": "https://example.com/a.git", "commit": "abc123"});
        v["deadline"] = "2026-11-25T12:00:00Z".into();
        v["image"]["tag"] = "v1".into();
        let j = CheckedJob::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(j.revision, Revision::Commit("abc123".into()));
        assert_eq!(j.target.to_string(), "127.0.0.1:5000/apps/web:v1");
        assert_eq!(j.deadline.map(time::OffsetDateTime::unix_timestamp), Some(1_795_608_000));
        assert_eq!(j.submitted, None);
        assert_eq!(j.request().target, j.target);
        let mut v = job();
        v["submitted_at"] = "yesterday".into();
        let e = CheckedJob::parse(v.to_string().as_bytes()).unwrap_err().0;
        assert_eq!(e, "submitted_at `yesterday` is not an RFC 3339 time such as 2026-11-25T12:00:00Z");
        let mut v = job();
        v["rollout"] = serde_json::json!({"runtime": "python3", "to_version": "3.11.10",
            "from_image": "127.0.0.1:5000/apps/other@sha256:0000000000000000000000000000000000000000000000000000000000000000"});
        assert!(CheckedJob::parse(v.to_string().as_bytes())
            .unwrap_err()
            .0
            .contains("must be an image of the job's repository"));
    }
}
