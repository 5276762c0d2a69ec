//! Each service's last deployment that names a commit, folded from the history as it is read:
//! what a watcher compares a branch's new head with. Pure.

use crate::core::watch::LastDeployment;
use crate::wire::job::JobEvent;
use std::collections::{HashMap, VecDeque};

/// Operations whose place is remembered; an event of an older one that comes again (a read of
/// the history that overlaps the last) is placed anew, after every one remembered.
const REMEMBERED: usize = 200_000;

/// The services' last deployments, as far as the history has been read.
#[derive(Debug, Default)]
pub struct LastDeployments {
    /// Each operation's place: the order its first event was read in.
    places: HashMap<String, u64>,
    order: VecDeque<String>,
    next: u64,
    /// Each service's newest deployment with a commit, and its place.
    last: HashMap<String, (u64, LastDeployment)>,
}

impl LastDeployments {
    /// Folds in the next event read.
    pub fn apply(&mut self, event: &JobEvent) {
        let place = self.place_of(&event.operation_id);
        let Some(commit) = event.commit.as_deref().filter(|c| crate::core::redeploy::is_full_commit(c)) else {
            return;
        };
        let newer = self.last.get(&event.service.name).is_none_or(|(p, _)| place >= *p);
        if newer {
            let last = LastDeployment { operation_id: event.operation_id.clone(), commit: commit.to_ascii_lowercase() };
            self.last.insert(event.service.name.clone(), (place, last));
        }
    }

    fn place_of(&mut self, operation_id: &str) -> u64 {
        if let Some(p) = self.places.get(operation_id) {
            return *p;
        }
        let p = self.next;
        self.next += 1;
        self.places.insert(operation_id.to_string(), p);
        self.order.push_back(operation_id.to_string());
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.places.remove(&old);
            }
        }
        p
    }

    /// The service's last deployment that names a commit, if the history holds one.
    pub fn of(&self, service: &str) -> Option<&LastDeployment> {
        self.last.get(service).map(|(_, l)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::job::JobStatus;

    fn event(op: &str, service: &str, commit: Option<&str>) -> JobEvent {
        serde_json::from_value(serde_json::json!({
            "version": 1, "job_id": format!("j-{op}"), "operation_id": op, "service": {"name": service},
            "status": JobStatus::Queued, "at": "t", "commit": commit,
        }))
        .unwrap()
    }

    #[test]
    fn the_newest_deployment_with_a_commit_counts_and_a_repeat_does_not_move_it() {
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let mut d = LastDeployments::default();
        d.apply(&event("op1", "web", Some(&a)));
        d.apply(&event("op2", "web", None)); // a branch deployment, commit not known yet
        assert_eq!(d.of("web").unwrap().commit, a);
        d.apply(&event("op2", "web", Some(&b))); // its build fetched b
        assert_eq!(d.of("web").unwrap().operation_id, "op2");
        d.apply(&event("op1", "web", Some(&a))); // op1's late event: op2 came after
        assert_eq!(d.of("web").unwrap().commit, b);
        d.apply(&event("op3", "web", Some("not-a-commit")));
        assert_eq!(d.of("web").unwrap().commit, b);
        assert!(d.of("api").is_none());
    }
}
