//! What a roll-out does with one service (pure): read off its image's labels, rebase, rebuild
//! at the same commit, or leave it with a reason; and the job that does it, whose operation id
//! derives from the service, the target version and the image being replaced.

use crate::core::catalog::{compare_versions, RuntimeCatalog};
use crate::core::digest::sha256_digest;
use crate::core::labels;
use crate::core::rebase::{self, Refusal};
use crate::queue::ledger::ServiceRecord;
use crate::queue::wire::job::{BuildJob, Rollout};
use std::collections::BTreeMap;

/// What a roll-out does with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The service is on another runtime (or its image says none).
    OtherRuntime(String),
    UpToDate {
        version: String,
    },
    /// Its configuration's `runtime-version` does not accept the target version.
    Pinned {
        version: String,
        lock: String,
    },
    Rebase {
        version: String,
    },
    Rebuild {
        version: String,
        why: String,
    },
    /// A rebuild would resolve to another version than the target (the newest release the
    /// configuration accepts), so the roll-out leaves it.
    RebuildElsewhere {
        version: String,
        resolves: String,
        why: String,
    },
}

impl Decision {
    /// Whether a job is submitted for it.
    pub fn moves(&self) -> bool {
        matches!(self, Decision::Rebase { .. } | Decision::Rebuild { .. })
    }
}

fn why_rebuild(refusal: &Refusal) -> String {
    match refusal {
        Refusal::OriginalBuild { .. } => "the original build ran commands on the run image".into(),
        Refusal::PreRun { .. } => "pre-run ran on the run image".into(),
        Refusal::Unmarked { .. } => "built before images said whether they can be rebased".into(),
        other => other.to_string(),
    }
}

/// What moving the service whose image `image` has `image_labels` to `runtime` `to` takes.
pub fn decide(
    image: &str,
    image_labels: &BTreeMap<String, String>,
    catalog: &RuntimeCatalog,
    runtime: &str,
    to: &str,
) -> Decision {
    let label = |k: &str| image_labels.get(k).cloned().unwrap_or_default();
    if label(labels::RUNTIME) != runtime {
        return Decision::OtherRuntime(label(labels::RUNTIME));
    }
    let version = label(labels::RUNTIME_VERSION);
    if compare_versions(&version, to) != std::cmp::Ordering::Less {
        return Decision::UpToDate { version };
    }
    let refusal = match rebase::check(image, image_labels, catalog, to) {
        Ok(_) => return Decision::Rebase { version },
        Err(Refusal::Pinned { lock, .. }) => return Decision::Pinned { version, lock },
        Err(refusal) => refusal,
    };
    let why = why_rebuild(&refusal);
    let lock = image_labels.get(labels::RUNTIME_VERSION_LOCK).map(String::as_str);
    let resolves = catalog.lookup(runtime).and_then(|rt| catalog.resolve(rt, lock)).map(|r| r.version);
    match resolves {
        Ok(v) if v == to => Decision::Rebuild { version, why },
        Ok(resolves) => Decision::RebuildElsewhere { version, resolves, why },
        Err(e) => Decision::RebuildElsewhere { version, resolves: e.to_string(), why },
    }
}

/// The roll-out job for a service: its recorded job at the commit its image was built from,
/// with ids that name this move (the same on every run of the same roll-out).
pub fn rollout_job(
    record: &ServiceRecord,
    image_labels: &BTreeMap<String, String>,
    runtime: &str,
    to: &str,
) -> BuildJob {
    let mut job = record.job.clone();
    let key = format!("{}\n{runtime}\n{to}\n{}", record.service, record.image);
    let id = format!("rollout-{}", &sha256_digest(key.as_bytes())[7..39]);
    if job.image.tag.as_deref() == Some(job.operation_id.as_str()) {
        job.image.tag = None;
    }
    job.job_id.clone_from(&id);
    job.operation_id = id;
    if let Some(commit) = image_labels.get(labels::OCI_REVISION) {
        job.repository.commit = Some(commit.clone());
        job.repository.branch = None;
    }
    job.deadline = None;
    job.trigger = None;
    job.rollout = Some(Rollout { runtime: runtime.into(), to_version: to.into(), from_image: record.image.clone() });
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        rebase::movable_labels(pairs)
    }

    #[test]
    fn each_service_is_rebased_rebuilt_or_left_with_a_reason() {
        let c = RuntimeCatalog::builtin();
        let d = |l: BTreeMap<String, String>, to: &str| decide("img", &l, c, "python311", to);
        assert_eq!(d(image(&[]), "3.11.14"), Decision::Rebase { version: "3.11.10".into() });
        assert!(matches!(d(image(&[(labels::PRE_RUN_COMMANDS, "1")]), "3.11.14"), Decision::Rebuild { .. }));
        assert_eq!(d(image(&[]), "3.11.10"), Decision::UpToDate { version: "3.11.10".into() });
        assert_eq!(d(image(&[]), "3.11.9"), Decision::UpToDate { version: "3.11.10".into() });
        assert!(matches!(d(image(&[(labels::RUNTIME, "nodejs18")]), "3.11.14"), Decision::OtherRuntime(_)));
        assert!(matches!(d(image(&[(labels::RUNTIME_VERSION_LOCK, "3.11.10")]), "3.11.14"), Decision::Pinned { .. }));
        // A rebuild lands on the newest release: rolling a pre-run service to an older one is left.
        match d(image(&[(labels::RUNTIME_VERSION, "3.11.7"), (labels::PRE_RUN_COMMANDS, "1")]), "3.11.9") {
            Decision::RebuildElsewhere { resolves, .. } => assert_eq!(resolves, "3.11.14"),
            other => panic!("{other:?}"),
        }
    }
}
