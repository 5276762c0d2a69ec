//! What became of each deployment, from the events the history holds: pure.

use crate::error::ErrorClass;
use crate::queue::wire::job::{JobEvent, JobStatus};

/// One deployment as its events tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentRecord {
    pub operation_id: String,
    pub job_id: String,
    pub service: String,
    /// When it was first heard of (its QUEUED event, or the first that survived).
    pub since: String,
    /// Its last status, and when.
    pub status: JobStatus,
    pub at: String,
    pub attempt: Option<u32>,
    pub worker: Option<String>,
    /// A success's image.
    pub image: Option<String>,
    /// A failure's (or a retry's) reason.
    pub error: Option<(ErrorClass, String)>,
}

impl DeploymentRecord {
    fn from_event(e: &JobEvent) -> Self {
        Self {
            operation_id: e.operation_id.clone(),
            job_id: e.job_id.clone(),
            service: e.service.name.clone(),
            since: e.at.clone(),
            status: e.status,
            at: e.at.clone(),
            attempt: e.attempt,
            worker: e.worker.clone(),
            image: None,
            error: None,
        }
    }

    /// `e` heard after what this record holds. A terminal status is final: a late `QUEUED` or
    /// `IN_PROGRESS` (a copy of the job recognised as done) changes nothing.
    fn apply(&mut self, e: &JobEvent) {
        if self.status.is_terminal() {
            return;
        }
        self.status = e.status;
        self.at.clone_from(&e.at);
        self.attempt = e.attempt.or(self.attempt);
        self.worker = e.worker.clone().or(self.worker.take());
        self.image.clone_from(&e.image);
        self.error = e.error.as_ref().map(|f| (f.class, f.message.clone()));
    }

    /// The lines `status` prints.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "operation {} (job {}, service {}), submitted {}",
            self.operation_id, self.job_id, self.service, self.since
        )];
        let by = match (&self.worker, self.attempt) {
            (Some(w), Some(a)) => format!(" (attempt {a}, worker {w})"),
            (Some(w), None) => format!(" (worker {w})"),
            (None, Some(a)) => format!(" (attempt {a})"),
            (None, None) => String::new(),
        };
        let state = match self.status {
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in progress",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        };
        lines.push(format!("status: {} ({state}) at {}{by}", self.status.key(), self.at));
        if let Some(image) = &self.image {
            lines.push(format!("image: {image}"));
        }
        if let Some((class, reason)) = &self.error {
            let what = if self.status == JobStatus::Failed { "reason" } else { "last fault" };
            lines.push(format!("{what} ({class}): {reason}"));
        }
        lines
    }

    /// One line of `history`.
    pub fn line(&self) -> String {
        let detail = match (&self.image, &self.error) {
            (Some(image), _) => image.clone(),
            (None, Some((class, reason))) => format!("{class}: {reason}"),
            (None, None) => String::new(),
        };
        format!("{}  {}  {:<11}  {detail}", self.since, self.operation_id, self.status.key())
    }
}

/// Every deployment the events tell of, in the order first heard.
pub fn summarize<'a>(events: impl IntoIterator<Item = &'a JobEvent>) -> Vec<DeploymentRecord> {
    let mut records: Vec<DeploymentRecord> = Vec::new();
    let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for e in events {
        if let Some(&i) = at.get(&e.operation_id) {
            records[i].apply(e);
        } else {
            at.insert(e.operation_id.clone(), records.len());
            let mut r = DeploymentRecord::from_event(e);
            r.apply(e);
            records.push(r);
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::wire::job::{FailureInfo, Service};

    fn event(op: &str, status: JobStatus, at: &str) -> JobEvent {
        let mut e: JobEvent = serde_json::from_value(serde_json::json!({
            "version": 1, "job_id": format!("j-{op}"), "operation_id": op, "service": {"name": "web"},
            "status": status, "at": at,
        }))
        .unwrap();
        e.service = Service { name: "web".into(), id: None };
        e
    }

    #[test]
    fn the_last_status_counts_until_a_terminal_one_which_is_final() {
        let mut failed = event("b", JobStatus::Failed, "t4");
        failed.error = Some(FailureInfo { class: ErrorClass::User, message: "no runtime".into() });
        let mut ok = event("a", JobStatus::Succeeded, "t3");
        ok.image = Some("r/web@sha256:1".into());
        let events = [
            event("a", JobStatus::Queued, "t1"),
            event("b", JobStatus::Queued, "t2"),
            event("a", JobStatus::InProgress, "t2"),
            ok,
            failed,
            event("a", JobStatus::InProgress, "t5"), // a copy recognised as done
            event("c", JobStatus::Queued, "t6"),
        ];
        let records = summarize(&events);
        let states: Vec<_> = records.iter().map(|r| (r.operation_id.as_str(), r.status)).collect();
        assert_eq!(states, [("a", JobStatus::Succeeded), ("b", JobStatus::Failed), ("c", JobStatus::Queued)]);
        assert_eq!(records[0].since, "t1");
        assert!(records[0].describe().contains(&"image: r/web@sha256:1".to_string()));
        assert!(
            records[1].describe().contains(&"reason (USER): no runtime".to_string()),
            "{:?}",
            records[1].describe()
        );
        assert!(records[1].line().contains("FAILED       USER: no runtime"), "{}", records[1].line());
    }
}
