//! The record of every deployment: a `RabbitMQ` stream, `<prefix>.history`, bound to every
//! event, which the broker keeps (replicated, bounded to `transport::HISTORY_BYTES`, the
//! oldest first to go) whoever was listening. `status` and `history` read it from its start;
//! `summary` folds its events into what became of each deployment.

mod summary;

pub use summary::{summarize, DeploymentRecord};

use super::error::QueueError;
use super::transport::{Brokers, Topology};
use super::wire::job::JobEvent;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

/// With nothing more for this long, the reader has reached the stream's end.
const CAUGHT_UP: Duration = Duration::from_millis(1500);
/// However long the stream, reading it ends after this.
const READ_AT_MOST: Duration = Duration::from_secs(120);

/// Every event the history holds, oldest first.
pub async fn read(brokers: &Brokers, topology: &Topology) -> Result<Vec<JobEvent>, QueueError> {
    let conn = brokers
        .connect("apprunner-build-history")
        .await
        .map_err(|e| QueueError::broker(&format!("cannot reach the broker at {brokers}"), e))?;
    let read = async {
        let ch = topology.ensure(&conn).await.map_err(|e| QueueError::broker("declaring the queues", e))?;
        ch.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut args = FieldTable::default();
        args.insert("x-stream-offset".into(), AMQPValue::LongString("first".into()));
        let mut consumer =
            ch.basic_consume(topology.history().into(), "".into(), BasicConsumeOptions::default(), args).await?;
        let mut events = Vec::new();
        let began = tokio::time::Instant::now();
        while began.elapsed() < READ_AT_MOST {
            let Ok(next) = tokio::time::timeout(CAUGHT_UP, consumer.next()).await else { break };
            let Some(delivery) = next else { break };
            let delivery = delivery?;
            // A stream keeps its messages; the ack only makes room for the next ones.
            delivery.ack(BasicAckOptions::default()).await?;
            if let Ok(event) = serde_json::from_slice::<JobEvent>(&delivery.data) {
                events.push(event);
            }
        }
        Ok(events)
    }
    .await;
    let _ = conn.close(200, "read".into()).await;
    read
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
