//! `cancel`: ending a deployment before it ends by itself. The request is recorded at the
//! registry (a marker every worker reads before it builds, so a queued or waiting job is never
//! built) and sent to the workers (a running build stops at once). A deployment no worker has
//! taken is ended here, with its CANCELLED event; one that runs, by its worker. Either way one
//! terminal event: an operation's terminal event has one id, whoever publishes it.

use super::error::QueueError;
use super::history::{self, DeploymentRecord};
use super::ledger::Ledger;
use super::subscription::{Interest, Subscription};
use super::transport::{Brokers, Outgoing, Publisher, Topology};
use super::wire::job::{JobEvent, JobStatus};
use std::time::Duration;

/// What a cancel came to.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The deployment ended CANCELLED (its record as it was when the cancel came).
    Cancelled(DeploymentRecord),
    /// It had ended, or ended before the cancel reached it: nothing changed.
    Ended(DeploymentRecord),
    /// The history holds no such operation.
    Unknown,
    /// The request is recorded and sent, but no CANCELLED came within the wait (its worker may
    /// be away); the marker still stops any later attempt.
    Requested(DeploymentRecord),
}

/// Cancels the operation `operation_id`, waiting up to `wait` for its end.
pub async fn cancel(
    brokers: &Brokers,
    topology: &Topology,
    ledger: &Ledger<'_>,
    operation_id: &str,
    wait: Duration,
) -> Result<CancelOutcome, QueueError> {
    let events: Vec<JobEvent> =
        history::read(brokers, topology).await?.into_iter().filter(|e| e.operation_id == operation_id).collect();
    let Some(record) = history::summarize(&events).pop() else { return Ok(CancelOutcome::Unknown) };
    if record.status.is_terminal() {
        return Ok(CancelOutcome::Ended(record));
    }
    // Heard before anything is sent, so the outcome cannot go by unheard.
    let ops = [operation_id.to_string()];
    let mut outcome =
        Subscription::open(brokers, topology, "apprunner-build-cancel", Interest::OutcomesOf(&ops)).await?;
    ledger.mark_cancelled(operation_id).await.map_err(|e| QueueError::record("recording the cancel", e))?;
    let publisher = Publisher::new(brokers, "apprunner-build-cancel-publisher");
    let sent = async {
        let key = Topology::cancel_key(operation_id);
        publisher.publish(&Outgoing::new(&topology.control(), &key, operation_id.as_bytes())).await?;
        // Not taken by a worker (or waiting to come back): ended here. Should a worker take it
        // meanwhile, it reads the marker and ends it too, under the same event id.
        if let (JobStatus::Queued, Some(last)) = (record.status, events.last()) {
            let event = JobEvent::cancelled(last, None);
            let (payload, id) = (QueueError::json("the CANCELLED event", &event)?, event.new_message_id());
            let key = Topology::event_key(operation_id, JobStatus::Cancelled.key());
            publisher
                .publish(&Outgoing { message_id: Some(&id), ..Outgoing::new(&topology.events(), &key, &payload) })
                .await?;
        }
        Ok::<_, QueueError>(())
    }
    .await;
    publisher.close().await;
    sent?;
    let ended = tokio::time::timeout(wait, outcome.next_event()).await;
    outcome.close().await;
    Ok(match ended {
        Ok(Some(Ok(e))) if e.status == JobStatus::Cancelled => CancelOutcome::Cancelled(record),
        Ok(Some(Ok(e))) => CancelOutcome::Ended(history::summarize([&e]).pop().unwrap_or(record)),
        Ok(Some(Err(e))) => return Err(e),
        _ => CancelOutcome::Requested(record),
    })
}
