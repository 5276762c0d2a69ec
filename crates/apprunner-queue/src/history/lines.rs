//! Each service's line: its deployments that have not ended, in the order their submissions
//! reached the broker (the place in the history of the first event heard of each, its QUEUED).
//! A deployment lets every one before it in its service's line go first, so a service deploys
//! in submission order whichever copy reaches a worker first. Pure: the worker folds the history
//! into it as it is written (`worker::order`).

use crate::wire::job::{JobEvent, JobStatus};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Operations that ended, remembered so a late event of one (a copy recognised as done says
/// `IN_PROGRESS` after the outcome) does not put it back in its line.
const ENDED_REMEMBERED: usize = 100_000;

#[derive(Debug, Clone)]
struct Place {
    service: String,
    offset: u64,
    batch: bool,
    /// A worker said it started building it (`IN_PROGRESS`): its log has begun.
    started: bool,
}

/// The lines of every service, as far as the history has been read.
#[derive(Debug, Default)]
pub struct ServiceLines {
    places: HashMap<String, Place>,
    lines: HashMap<String, BTreeMap<u64, String>>,
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
}

impl ServiceLines {
    /// Folds in the event at `offset` in the history.
    pub fn apply(&mut self, offset: u64, event: &JobEvent) {
        let op = &event.operation_id;
        if event.status.is_terminal() {
            if let Some(place) = self.places.remove(op) {
                if let Some(line) = self.lines.get_mut(&place.service) {
                    line.remove(&place.offset);
                    if line.is_empty() {
                        self.lines.remove(&place.service);
                    }
                }
            }
            self.remember_ended(op);
            return;
        }
        let started = event.status == JobStatus::InProgress;
        if let Some(place) = self.places.get_mut(op) {
            place.started |= started;
            return;
        }
        if self.ended.contains(op) {
            return;
        }
        let batch = event.status == JobStatus::Queued && event.batch;
        let place = Place { service: event.service.name.clone(), offset, batch, started };
        self.lines.entry(place.service.clone()).or_default().insert(offset, op.clone());
        self.places.insert(op.clone(), place);
    }

    fn remember_ended(&mut self, op: &str) {
        if self.ended.insert(op.to_string()) {
            self.ended_order.push_back(op.to_string());
            if self.ended_order.len() > ENDED_REMEMBERED {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
    }

    /// Whether the history read so far holds the operation (waiting, running, or ended).
    pub fn knows(&self, operation_id: &str) -> bool {
        self.places.contains_key(operation_id) || self.ended.contains(operation_id)
    }

    /// The deployment of the operation's service that must go before it: the first one ahead
    /// of it in the line that has not ended. A user's deployment lets only users' deployments
    /// go first (batch work never holds one up; a batch deployment that runs holds the
    /// service's lease, which settles that); batch work lets everyone go first. None when the
    /// operation is first, has ended, or is not known.
    pub fn ahead_of(&self, operation_id: &str, batch: bool) -> Option<&str> {
        let place = self.places.get(operation_id)?;
        let line = self.lines.get(&place.service)?;
        line.range(..place.offset)
            .map(|(_, op)| op.as_str())
            .find(|op| op != &operation_id && self.places.get(*op).is_some_and(|p| batch || !p.batch))
    }

    /// Whether a worker has started building the operation, which has not ended: a copy of it
    /// that comes again (its worker gone) resumes a deployment whose log has begun.
    pub fn started(&self, operation_id: &str) -> bool {
        self.places.get(operation_id).is_some_and(|p| p.started)
    }

    /// Deployments in every line.
    pub fn waiting(&self) -> usize {
        self.places.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::job::Service;

    fn event(op: &str, service: &str, status: JobStatus, batch: bool) -> JobEvent {
        let json = serde_json::json!({
            "version": 1, "job_id": op, "operation_id": op, "service": {"name": service},
            "status": status, "at": "2026-12-07T00:00:00Z", "batch": batch,
        });
        let e: JobEvent = serde_json::from_value(json).unwrap();
        assert_eq!(e.service, Service { name: service.into(), id: None });
        e
    }

    #[test]
    fn a_deployment_lets_those_submitted_before_it_go_first_until_they_end() {
        let mut lines = ServiceLines::default();
        lines.apply(0, &event("a", "web", JobStatus::Queued, false));
        lines.apply(1, &event("x", "api", JobStatus::Queued, false));
        lines.apply(2, &event("b", "web", JobStatus::Queued, false));
        assert_eq!(lines.ahead_of("a", false), None);
        assert_eq!(lines.ahead_of("b", false), Some("a"));
        assert_eq!(lines.ahead_of("x", false), None, "other services never wait");
        // A retry's QUEUED and the start change no place; the start is remembered.
        assert!(!lines.started("a"));
        lines.apply(3, &event("a", "web", JobStatus::InProgress, false));
        lines.apply(4, &event("a", "web", JobStatus::Queued, false));
        assert_eq!(lines.ahead_of("b", false), Some("a"));
        assert!(lines.started("a") && !lines.started("b"), "its log has begun; b's has not");
        lines.apply(5, &event("a", "web", JobStatus::Failed, false));
        assert_eq!(lines.ahead_of("b", false), None);
        // A late event of an ended deployment puts nothing back.
        lines.apply(6, &event("a", "web", JobStatus::InProgress, false));
        assert_eq!(lines.ahead_of("b", false), None);
        assert!(lines.knows("a") && lines.knows("b") && !lines.knows("c"));
        assert_eq!(lines.ahead_of("c", false), None, "unknown: nothing to wait for");
        lines.apply(7, &event("b", "web", JobStatus::Succeeded, false));
        assert_eq!(lines.waiting(), 1);
    }

    #[test]
    fn a_users_deployment_never_waits_for_batch_work_and_batch_work_waits_for_all() {
        let mut lines = ServiceLines::default();
        lines.apply(0, &event("rollout", "web", JobStatus::Queued, true));
        lines.apply(1, &event("user", "web", JobStatus::Queued, false));
        lines.apply(2, &event("rebuild", "web", JobStatus::Queued, true));
        assert_eq!(lines.ahead_of("user", false), None);
        assert_eq!(lines.ahead_of("rebuild", true), Some("rollout"));
        lines.apply(3, &event("rollout", "web", JobStatus::Cancelled, true));
        assert_eq!(lines.ahead_of("rebuild", true), Some("user"));
    }
}
