//! The record of every deployment: a `RabbitMQ` stream, `<prefix>.history`, bound to every
//! event, which the broker keeps (replicated, bounded to `transport::HISTORY_BYTES`, the
//! oldest first to go) whoever was listening. `status` and `history` read it from its start;
//! `summary` folds its events into what became of each deployment; `follow` reads it as it is
//! written, into each service's line (`lines`) or last deployment (`deployed`).

pub mod deployed;
mod follow;
pub mod lines;
mod summary;

pub use follow::follow;
pub use summary::{summarize, DeploymentRecord};

use super::error::QueueError;
use super::transport::{self, Brokers, Link, Outgoing, StreamOffset, Topology};
use super::wire::job::JobEvent;
use std::time::Duration;

/// A probe that goes this long without coming back: the stream is not being read.
const PROBE_STALL: Duration = Duration::from_secs(30);
/// With nothing more for this long, a reader that could not append its probe has reached the
/// stream's end.
const CAUGHT_UP: Duration = Duration::from_millis(1500);
/// However long the stream, reading it ends after this.
const READ_AT_MOST: Duration = Duration::from_secs(120);

/// Where a read of the history starts.
#[derive(Debug, Clone, Copy)]
pub enum From {
    /// Its oldest event.
    First,
    /// The first chunk written at or after this time (the broker's clock, in seconds).
    Time(time::OffsetDateTime),
}

/// Every event the history holds, oldest first.
pub async fn read(brokers: &Brokers, topology: &Topology) -> Result<Vec<JobEvent>, QueueError> {
    read_from(brokers, topology, From::First).await
}

/// The events the history holds from `from` to its end, oldest first. The end is exact: the
/// reader appends a probe of its own to the stream first (a message that is no event, which
/// every reader passes over) and reads until it comes back, so every event confirmed before
/// the read began is in what it returns. A reader not allowed to append reads until the stream
/// goes quiet instead.
pub async fn read_from(brokers: &Brokers, topology: &Topology, from: From) -> Result<Vec<JobEvent>, QueueError> {
    let conn = brokers
        .connect("apprunner-build-history")
        .await
        .map_err(|e| e.within(&format!("cannot reach the broker at {brokers}")))?;
    let read = async {
        let ch = topology.ensure(&conn).await.map_err(|e| e.within("declaring the queues"))?;
        let probe = append_probe(&conn, topology).await;
        ch.prefetch(1000).await?;
        let offset = match from {
            From::First => StreamOffset::First,
            From::Time(t) => StreamOffset::Time(u64::try_from(t.unix_timestamp()).unwrap_or(0)),
        };
        let mut consumer = ch.consume_stream(&topology.history(), offset).await?;
        let mut events = Vec::new();
        let began = tokio::time::Instant::now();
        let quiet = if probe.is_some() { PROBE_STALL } else { CAUGHT_UP };
        while began.elapsed() < READ_AT_MOST {
            let next = tokio::time::timeout(quiet, consumer.next()).await;
            let Ok(Some(delivery)) = next else {
                if probe.is_some() {
                    return Err(QueueError::broker_fault(format!(
                        "the history stream {} sent nothing for {}s",
                        topology.history(),
                        quiet.as_secs()
                    )));
                }
                break;
            };
            let delivery = delivery?;
            // A stream keeps its messages; the ack only makes room for the next ones.
            delivery.ack().await?;
            let id = delivery.message_id();
            if probe.is_some() && id == probe.as_deref() {
                break;
            }
            if let Ok(event) = serde_json::from_slice::<JobEvent>(delivery.body()) {
                events.push(event);
            }
        }
        Ok(events)
    }
    .await;
    conn.close("read").await;
    read
}

/// Appends a probe to the history stream, confirmed; its id, or None if it could not be.
async fn append_probe(conn: &Link, topology: &Topology) -> Option<String> {
    let id = format!("probe.{}", uuid::Uuid::new_v4().simple());
    let ch = conn.channel().await.ok()?;
    let stream = topology.history();
    let msg = Outgoing { message_id: Some(&id), ..Outgoing::new("", &stream, b"") };
    let sent = transport::publish_confirmed_once(&ch, &msg).await;
    ch.close("probed").await;
    sent.ok().map(|()| id)
}

/// The terminal event the history holds for `operation_id`, reading from `from`: a deployment
/// that may be a repeat asks it before it publishes an outcome, so an outcome published once
/// (its publisher gone before it could mark it) is not published again.
pub async fn outcome_of(
    brokers: &Brokers,
    topology: &Topology,
    operation_id: &str,
    from: From,
) -> Result<Option<JobEvent>, QueueError> {
    let events = read_from(brokers, topology, from).await?;
    Ok(events.into_iter().find(|e| e.operation_id == operation_id && e.status.is_terminal()))
}

/// What became of the operation `operation_id`, if the history holds it.
pub async fn status(
    brokers: &Brokers,
    topology: &Topology,
    operation_id: &str,
) -> Result<Option<DeploymentRecord>, QueueError> {
    let events = read(brokers, topology).await?;
    Ok(summarize(events.iter().filter(|e| e.operation_id == operation_id)).pop())
}

/// The service's last `limit` deployments, newest last.
pub async fn of_service(
    brokers: &Brokers,
    topology: &Topology,
    service: &str,
    limit: usize,
) -> Result<Vec<DeploymentRecord>, QueueError> {
    let events = read(brokers, topology).await?;
    let mut records = summarize(events.iter().filter(|e| e.service.name == service));
    let skip = records.len().saturating_sub(limit);
    Ok(records.split_off(skip))
}
