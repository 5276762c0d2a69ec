//! Deployments of a service in the order they were submitted: the worker follows the history
//! stream as it is written (from its oldest event at start) and keeps each service's line
//! (`history::lines`); a deployment whose service has an earlier one that has not ended waits
//! and comes back, whichever copy reached a worker first.

use crate::queue::history::{self, lines::ServiceLines};
use crate::queue::transport::{Brokers, Lane, StreamOffset, Topology};
use crate::queue::wire::job::JobStatus;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a deployment waits for the history to hold its own submission (its QUEUED event
/// follows its job by a moment; a worker that just started reads the history from its start).
/// One that never shows (a job published without one) goes on unordered after this.
const KNOW_WAIT: Duration = Duration::from_secs(5);

/// The service lines as far as the history has been read, and a wake-up for each event read.
#[derive(Default)]
pub struct Order {
    lines: Mutex<ServiceLines>,
    read: Notify,
}

impl Order {
    /// The deployment of the job's service that must go before it, if any (`ServiceLines::ahead_of`).
    pub async fn ahead_of(&self, operation_id: &str, lane: Lane) -> Option<String> {
        let deadline = tokio::time::Instant::now() + KNOW_WAIT;
        loop {
            let read = self.read.notified();
            {
                let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
                if lines.knows(operation_id) {
                    return lines.ahead_of(operation_id, lane == Lane::Batch).map(str::to_string);
                }
            }
            if tokio::time::timeout_at(deadline, read).await.is_err() {
                tracing::debug!("operation {operation_id}: not in the history after {KNOW_WAIT:?}; not ordered");
                return None;
            }
        }
    }

    /// Whether a worker has said it started building the operation (its `IN_PROGRESS`): from
    /// the history this worker has read (`ServiceLines::started`), else from the stream itself
    /// read `from` the job's submission to its end, since the follower may not have reached
    /// an event a moment old. Asked only of a copy that may follow another.
    pub async fn started(
        &self,
        operation_id: &str,
        brokers: &Brokers,
        topology: &Topology,
        from: history::From,
    ) -> bool {
        if self.lines.lock().unwrap_or_else(PoisonError::into_inner).started(operation_id) {
            return true;
        }
        let reading = tokio::time::timeout(super::copies::HISTORY_READ, history::read_from(brokers, topology, from));
        let events = reading.await.ok().and_then(Result::ok).unwrap_or_default();
        events.iter().any(|e| e.operation_id == operation_id && e.status == JobStatus::InProgress)
    }

    /// Follows the history until the process ends (from its oldest event), reconnecting
    /// from where it was when the broker goes.
    pub async fn follow(&self, brokers: Brokers, topology: Topology, name: String) {
        history::follow(brokers, topology, name, StreamOffset::First, |offset, event| {
            self.lines.lock().unwrap_or_else(PoisonError::into_inner).apply(offset, &event);
            self.read.notify_waiters();
        })
        .await;
    }
}
