//! One way to hear what the workers publish: a queue of the follower's own, bound to the events
//! (and, for one operation, the log lines) it wants, read back as typed messages. `submit
//! --wait`, `roll-out --wait`, the tests and the benchmarks all subscribe through it, before they
//! publish, so nothing they wait for can go by unheard.
//!
//! The queue is a quorum queue, so it outlives the loss of the node the follower is connected
//! to: the follower moves to the next node and reads on from where it was, the messages
//! published while it moved included. Messages are acked once read, so one in flight when the
//! connection went comes again; every message carries an id, and a repeat is dropped (an
//! operation's terminal event has one id whoever publishes it, so no follower hears two).

use super::error::QueueError;
use super::transport::{Brokers, Channel, Inbox, Link, Topology};
use super::wire::job::{JobEvent, JobStatus};
use crate::core::log::LogLine;
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// What a subscription hears.
#[derive(Debug, Clone, Copy)]
pub enum Interest<'a> {
    /// Every status event of the prefix.
    AllEvents,
    /// The terminal events (SUCCEEDED, FAILED, CANCELLED) of every operation.
    Outcomes,
    /// The terminal events of these operations.
    OutcomesOf(&'a [String]),
    /// One operation's status events and deployment log lines, in publish order.
    Operation(&'a str),
}

impl Interest<'_> {
    /// (exchange, routing key) pairs to bind.
    fn bindings(self, topology: &Topology) -> Vec<(String, String)> {
        let terminal = |op: &str| JobStatus::TERMINAL.map(|s| (topology.events(), Topology::event_key(op, s.key())));
        match self {
            Interest::AllEvents => vec![(topology.events(), "#".into())],
            Interest::Outcomes => terminal("*").into(),
            Interest::OutcomesOf(ops) => ops.iter().flat_map(|op| terminal(op)).collect(),
            Interest::Operation(op) => {
                vec![(topology.logs(), Topology::log_key(op)), (topology.events(), format!("{op}.*"))]
            }
        }
    }
}

/// A message a subscription heard (an event carries a whole result: boxed).
#[derive(Debug, Clone)]
pub enum Heard {
    Event(Box<JobEvent>),
    Line(LogLine),
}

/// The log lines of one message: a batch (`[line, …]`), or one line as workers before batches
/// sent it; nothing from a message that is neither.
fn log_lines(data: &[u8]) -> Vec<LogLine> {
    serde_json::from_slice::<Vec<LogLine>>(data)
        .or_else(|_| serde_json::from_slice::<LogLine>(data).map(|l| vec![l]))
        .unwrap_or_default()
}

/// How long a follower tries to reach another node before it gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
/// With nothing heard for this long, the follower asks whether its queue holds messages (a
/// consumer subscribed while its queue had no leader may be sent nothing) and subscribes again.
const QUIET: Duration = Duration::from_secs(5);
/// Message ids remembered to drop repeats.
const REMEMBERED: usize = 100_000;

/// A subscription: its queue, and the connection it reads it on, made anew when a node goes.
pub struct Subscription {
    brokers: Brokers,
    name: String,
    queue: String,
    events: String,
    reading: Option<(Link, Channel, Inbox)>,
    seen: HashSet<String>,
    order: VecDeque<String>,
    last_heard: Instant,
    /// What was read and acked but not yet returned (a message holds a batch of log lines; a
    /// caller that stops waiting, a timeout around `next`, while the ack is on its way gets
    /// the rest from the next call).
    ready: VecDeque<Heard>,
    /// Repeats dropped so far (a benchmark or a test reports them).
    pub repeats: u64,
    /// Times the subscription moved to a new connection.
    pub reconnects: u64,
}

impl Subscription {
    /// Connects as `name`, declares the topology (so a job published next has its queue) and
    /// its own queue, and starts hearing `interest`.
    pub async fn open(
        brokers: &Brokers,
        topology: &Topology,
        name: &str,
        interest: Interest<'_>,
    ) -> Result<Self, QueueError> {
        let conn =
            brokers.connect(name).await.map_err(|e| e.within(&format!("cannot reach the broker at {brokers}")))?;
        let ch = topology.ensure(&conn).await.map_err(|e| e.within("declaring the queues"))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let queue = topology.declare_follower(conn.channel().await?, &id).await?;
        for (exchange, key) in interest.bindings(topology) {
            ch.bind(&queue, &exchange, &key).await?;
        }
        let mut sub = Self {
            brokers: brokers.clone(),
            name: name.to_string(),
            queue,
            events: topology.events(),
            reading: None,
            seen: HashSet::new(),
            order: VecDeque::new(),
            last_heard: Instant::now(),
            ready: VecDeque::new(),
            repeats: 0,
            reconnects: 0,
        };
        let consumer = sub.consume(&ch).await?;
        sub.reading = Some((conn, ch, consumer));
        Ok(sub)
    }

    async fn consume(&self, ch: &Channel) -> Result<Inbox, QueueError> {
        ch.prefetch(256).await?;
        ch.consume(&self.queue, "").await
    }

    /// Reads on from the next node that answers; an error once none has for [`RECONNECT_FOR`],
    /// or when the queue is gone.
    async fn reconnect(&mut self, why: &str) -> Result<(), QueueError> {
        if let Some((conn, _, _)) = self.reading.take() {
            conn.close("reconnecting").await;
        }
        tracing::info!("following again on another connection ({why})");
        let began = Instant::now();
        let mut pause = Duration::from_millis(200);
        loop {
            let attempt = async {
                let conn = self.brokers.connect(&self.name).await?;
                let ch = conn.channel().await?;
                ch.look(&self.queue).await?;
                let consumer = self.consume(&ch).await?;
                Ok::<_, QueueError>((conn, ch, consumer))
            };
            // A node that accepts the connection but does not answer counts as gone.
            let attempt = tokio::time::timeout(RECONNECT_FOR / 4, attempt)
                .await
                .unwrap_or_else(|_| Err(QueueError::broker_fault("the node did not answer")));
            match attempt {
                Ok(reading) => {
                    self.reading = Some(reading);
                    self.reconnects += 1;
                    self.last_heard = Instant::now();
                    return Ok(());
                }
                Err(e) if began.elapsed() >= RECONNECT_FOR => {
                    return Err(QueueError::broker_fault(format!(
                        "lost the broker while following ({why}) and could not follow again within {}s: {e}",
                        RECONNECT_FOR.as_secs()
                    )))
                }
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(3));
                }
            }
        }
    }

    /// Whether `id` was heard before (and remembers it).
    fn repeat(&mut self, id: &str) -> bool {
        if self.seen.contains(id) {
            return true;
        }
        if self.order.len() >= REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(id.to_string());
        self.order.push_back(id.to_string());
        false
    }

    /// The next message, skipping any that does not decode and any repeat; None only if the
    /// broker ended the subscription for good.
    /// Cancel-safe: what it read is never lost to a caller that drops the future (a timeout).
    pub async fn next(&mut self) -> Option<Result<Heard, QueueError>> {
        loop {
            if let Some(heard) = self.ready.pop_front() {
                return Some(Ok(heard));
            }
            let Some((_, ch, consumer)) = self.reading.as_mut() else {
                if let Err(e) = self.reconnect("no connection").await {
                    return Some(Err(e));
                }
                continue;
            };
            let Ok(next) = tokio::time::timeout(QUIET, consumer.next()).await else {
                let asked = ch.look(&self.queue);
                let why = match tokio::time::timeout(QUIET, asked).await {
                    Ok(Ok(q)) if q.ready == 0 => continue,
                    Ok(Ok(_)) => "messages wait but none came",
                    Ok(Err(_)) | Err(_) => "the broker did not answer",
                };
                if let Err(e) = self.reconnect(why).await {
                    return Some(Err(e));
                }
                continue;
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    if let Err(e) = self.reconnect(&e.to_string()).await {
                        return Some(Err(e));
                    }
                    continue;
                }
                None => {
                    if let Err(e) = self.reconnect("the broker ended the subscription").await {
                        return Some(Err(e));
                    }
                    continue;
                }
            };
            self.last_heard = Instant::now();
            let repeat = delivery.message_id().is_some_and(|id| self.repeat(id));
            if repeat {
                self.repeats += 1;
            } else if delivery.exchange() == self.events {
                self.ready.extend(serde_json::from_slice(delivery.body()).ok().map(|e| Heard::Event(Box::new(e))));
            } else {
                self.ready.extend(log_lines(delivery.body()).into_iter().map(Heard::Line));
            }
            // Acked as read (and kept in `ready` first, so a caller that gives up waiting during
            // the ack loses nothing): a message lost with the connection before this comes again.
            // Bounded: an ack on a connection whose node just went may never complete.
            let _ = tokio::time::timeout(QUIET, delivery.ack()).await;
        }
    }

    /// The next status event, passing over log lines.
    pub async fn next_event(&mut self) -> Option<Result<JobEvent, QueueError>> {
        loop {
            match self.next().await? {
                Ok(Heard::Event(e)) => return Some(Ok(*e)),
                Ok(Heard::Line(_)) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Deletes the subscription's queue and closes its connection.
    pub async fn close(mut self) {
        if let Some((conn, ch, _)) = self.reading.take() {
            let _ = ch.delete_queue(&self.queue).await;
            conn.close("done").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_lines;

    #[test]
    fn a_message_holds_a_batch_of_lines_or_one() {
        let line =
            |text: &str| format!(r#"{{"stream":"deployment/op","timestamp_ms":1,"source":"Build","text":"{text}"}}"#);
        let texts = |data: &str| log_lines(data.as_bytes()).into_iter().map(|l| l.text).collect::<Vec<_>>();
        assert_eq!(texts(&format!("[{},{}]", line("a"), line("b"))), ["a", "b"]);
        assert_eq!(texts(&line("one")), ["one"]);
        assert!(texts("not json").is_empty());
    }
}
