//! A build's log lines forwarded to the logs exchange: in order, a message per batch of lines,
//! pipelined, each confirmed; what the broker did not take goes again, in order.

use super::Shared;
use crate::log::{LogLine, LogSink};
use crate::queue::transport::{Outgoing, PendingConfirm, Topology, CONFIRM_WAIT};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Log lines go to the logs exchange in order, a message per batch, pipelined; the forwarder
/// task ends once every batch is confirmed.
pub(super) struct AmqpLogSink {
    tx: tokio::sync::mpsc::UnboundedSender<LogLine>,
}

impl LogSink for AmqpLogSink {
    fn line(&self, line: &LogLine) {
        let _ = self.tx.send(line.clone());
    }
}

/// How long a line may wait for others to share its message: the log stays live to a follower,
/// and a chatty build sends a message where it would send dozens.
const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// Most lines in one message.
const BATCH_LINES: usize = 256;

pub(super) fn log_forwarder(shared: Arc<Shared>, operation_id: String) -> (AmqpLogSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogLine>();
    let task = tokio::spawn(async move {
        let (exchange, key) = (shared.cfg.topology.logs(), Topology::log_key(&operation_id));
        // Each message's id: this build's, and the message's place in it (a follower drops a repeat).
        let build = uuid::Uuid::new_v4().simple().to_string();
        let mut pending: Vec<Sent> = Vec::new();
        let mut n = 0u64;
        loop {
            // With messages unconfirmed, the next line is waited for only until they are due to
            // be settled: what the broker did not take goes again then, while the build runs.
            let next = match pending.first() {
                None => rx.recv().await,
                Some(oldest) => {
                    let Ok(next) = tokio::time::timeout_at(oldest.handed + SETTLE_AFTER, rx.recv()).await else {
                        confirm_batches(&shared, &exchange, &key, std::mem::take(&mut pending)).await;
                        continue;
                    };
                    next
                }
            };
            let Some(first) = next else { break };
            let mut batch = vec![first];
            let until = tokio::time::Instant::now() + BATCH_WINDOW;
            while batch.len() < BATCH_LINES {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(line)) => batch.push(line),
                    Ok(None) | Err(_) => break,
                }
            }
            let Ok(payload) = serde_json::to_vec(&batch) else { continue };
            n += 1;
            let id = format!("{build}.{n}");
            let msg = Outgoing { message_id: Some(&id), ..Outgoing::new(&exchange, &key, &payload) };
            let handing = Instant::now();
            let confirm = match shared.publisher.publish_pipelined(&msg).await {
                Ok(confirm) => Some(confirm),
                Err(e) => {
                    tracing::debug!("log message {id} not handed over ({e}); it goes again");
                    None
                }
            };
            if handing.elapsed() > Duration::from_secs(1) {
                tracing::debug!("log message {id} took {:.1}s to hand over", handing.elapsed().as_secs_f64());
            }
            pending.push(Sent { id, payload, confirm, handed: handing.into() });
            if pending.len() >= 64 || pending[0].handed.elapsed() >= SETTLE_AFTER {
                confirm_batches(&shared, &exchange, &key, std::mem::take(&mut pending)).await;
            }
        }
        confirm_batches(&shared, &exchange, &key, pending).await;
    });
    (AmqpLogSink { tx }, task)
}

/// A message of log lines handed to the broker, and its confirm (none if it could not be).
struct Sent {
    id: String,
    payload: Vec<u8>,
    confirm: Option<PendingConfirm>,
    handed: tokio::time::Instant,
}

/// How long after a message is handed over its confirm is waited for (with the others'), if no
/// more than 64 go first. Were confirms only settled at the end of the build, a connection lost
/// mid-build would hold back every line after it until then; a redelivery that reports the
/// build meanwhile (its image pushed, the builder's lease gone) ends a follower without them.
const SETTLE_AFTER: Duration = Duration::from_secs(1);

/// Waits for the messages' confirms in order. From the first the broker did not take (its
/// connection went, or a queue it goes to was between leaders), every one is published again
/// in order, each confirmed: a follower hears them all, in order, and drops the repeats.
async fn confirm_batches(shared: &Shared, exchange: &str, key: &str, sent: Vec<Sent>) {
    let mut resend = false;
    let (began, mut resent) = (Instant::now(), 0usize);
    for batch in sent {
        if !resend {
            resend = match batch.confirm {
                Some(mut confirm) => confirm.taken_within(CONFIRM_WAIT).await != Some(true),
                None => true,
            };
            if resend {
                let waited = began.elapsed().as_secs_f64();
                tracing::debug!("log message {} unconfirmed after {waited:.1}s; it and those after go again", batch.id);
            }
        }
        if resend {
            resent += 1;
            let msg = Outgoing { message_id: Some(&batch.id), ..Outgoing::new(exchange, key, &batch.payload) };
            if let Err(e) = shared.publisher.publish(&msg).await {
                tracing::warn!("log lines of {key} were not taken: {e}");
            }
        }
    }
    if resent > 0 {
        tracing::warn!(
            "{resent} messages of log lines of {key} published again in {:.1}s",
            began.elapsed().as_secs_f64()
        );
    }
}
