//! Deployments of a service in the order they were submitted: the worker follows the history
//! stream as it is written (from its oldest event at start) and keeps each service's line
//! (`history::lines`); a deployment whose service has an earlier one that has not ended waits
//! and comes back, whichever copy reached a worker first.

use crate::queue::history::lines::ServiceLines;
use crate::queue::transport::{self, Brokers, Lane, Topology};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
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

    /// Follows the history until the process ends, reconnecting (from where it was) when the
    /// broker goes.
    pub async fn follow(&self, brokers: Brokers, topology: Topology, name: String) {
        let mut next: Option<u64> = None;
        loop {
            if let Err(e) = self.follow_once(&brokers, &topology, &name, &mut next).await {
                tracing::warn!("following the history for the services' order: {e}; again in 1s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn follow_once(
        &self,
        brokers: &Brokers,
        topology: &Topology,
        name: &str,
        next: &mut Option<u64>,
    ) -> lapin::Result<()> {
        let conn = brokers.connect(name).await?;
        let ch = conn.create_channel().await?;
        ch.basic_qos(500, BasicQosOptions::default()).await?;
        let mut args = FieldTable::default();
        let from = next.map_or(AMQPValue::LongString("first".into()), |n| {
            AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX))
        });
        args.insert("x-stream-offset".into(), from);
        let mut consumer =
            ch.basic_consume(topology.history().into(), "".into(), BasicConsumeOptions::default(), args).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            let offset = transport::header_u64(&delivery.properties, "x-stream-offset");
            if let (Some(offset), Ok(event)) = (offset, serde_json::from_slice(&delivery.data)) {
                self.lines.lock().unwrap_or_else(PoisonError::into_inner).apply(offset, &event);
                self.read.notify_waiters();
            }
            if let Some(offset) = offset {
                *next = Some(offset + 1);
            }
            // A stream keeps its messages; the ack only makes room for the next ones.
            delivery.ack(BasicAckOptions::default()).await?;
        }
        transport::close_for_next_session(&conn, "following again", transport::CLOSE_BEFORE_AGAIN).await;
        Ok(())
    }
}
