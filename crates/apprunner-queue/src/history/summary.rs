//! What became of each deployment, from the events the history holds: pure.

use crate::core::error::ErrorClass;
use crate::wire::job::{JobEvent, JobStatus};

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
    /// What started it, as its job said (older events say nothing: `SERVICE_DEPLOY` then).
    pub trigger: Option<String>,
    /// The commit it built, once known.
    pub commit: Option<String>,
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
            trigger: e.trigger.clone(),
            commit: e.commit.clone(),
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
        self.commit = e.commit.clone().or(self.commit.take());
        self.trigger = self.trigger.take().or_else(|| e.trigger.clone());
    }

    /// What started it: its job's trigger, `SERVICE_DEPLOY` when the job named none.
    pub fn trigger(&self) -> &str {
        self.trigger.as_deref().unwrap_or("SERVICE_DEPLOY")
    }

    /// Its commit as people read it (12 hex digits), or `-` while none is known.
    pub fn short_commit(&self) -> &str {
        self.commit.as_deref().map_or("-", crate::core::watch::decision::short)
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
        let commit = self.commit.as_deref().unwrap_or("not known yet");
        lines.push(format!("trigger: {}, commit: {commit}", self.trigger()));
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
        let (status, trigger, commit) = (self.status.key(), self.trigger(), self.short_commit());
        format!("{}  {}  {status:<11}  {trigger:<18}  {commit:<12}  {detail}", self.since, self.operation_id)
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
    use crate::wire::job::{FailureInfo, Service};

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
        assert!(
            records[1].line().contains("FAILED       SERVICE_DEPLOY      -             USER: no runtime"),
            "{}",
            records[1].line()
        );
        let mut auto = event("d", JobStatus::Queued, "t7");
        (auto.trigger, auto.commit) = (Some("SOURCE_CODE_CHANGE".into()), Some("0123456789abcdef".repeat(2)));
        let d = &summarize(&[auto])[0];
        assert!(d.line().contains("QUEUED       SOURCE_CODE_CHANGE  0123456789ab"), "{}", d.line());
        assert!(d
            .describe()
            .contains(&format!("trigger: SOURCE_CODE_CHANGE, commit: {}", "0123456789abcdef".repeat(2))));
    }
}
