//! The history followed as it is written, from a given place, for as long as the process runs:
//! a worker keeps each service's line from it (`worker::order`), a watcher each service's last
//! deployment. A lost connection is followed again from the next event not yet read.

use crate::error::QueueError;
use crate::transport::{close_for_next_session, Brokers, StreamOffset, Topology, CLOSE_BEFORE_AGAIN};
use crate::wire::job::JobEvent;
use std::time::Duration;

/// Follows the history from `from`, handing `on_event` each event and its offset in the stream,
/// in order; never returns (the task that runs it is dropped or aborted to stop).
pub async fn follow(
    brokers: Brokers,
    topology: Topology,
    name: String,
    from: StreamOffset,
    mut on_event: impl FnMut(u64, JobEvent) + Send,
) {
    let mut next = from;
    loop {
        if let Err(e) = follow_once(&brokers, &topology, &name, &mut next, &mut on_event).await {
            tracing::warn!("following the history ({name}): {e}; again in 1s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow_once(
    brokers: &Brokers,
    topology: &Topology,
    name: &str,
    next: &mut StreamOffset,
    on_event: &mut (impl FnMut(u64, JobEvent) + Send),
) -> Result<(), QueueError> {
    let conn = brokers.connect(name).await?;
    let read = async {
        let ch = conn.channel().await?;
        ch.prefetch(500).await?;
        let mut consumer = ch.consume_stream(&topology.history(), *next).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            let offset = delivery.header_u64("x-stream-offset");
            if let (Some(offset), Ok(event)) = (offset, serde_json::from_slice(delivery.body())) {
                on_event(offset, event);
            }
            if let Some(offset) = offset {
                *next = StreamOffset::At(offset + 1);
            }
            // A stream keeps its messages; the ack only makes room for the next ones.
            delivery.ack().await?;
        }
        Ok(())
    }
    .await;
    close_for_next_session(&conn, "following again", CLOSE_BEFORE_AGAIN).await;
    read
}
