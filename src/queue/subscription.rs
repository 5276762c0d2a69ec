//! One way to hear what the workers publish: a private queue bound to the events (and, for one
//! operation, the log lines) a follower wants, read back as typed messages. `submit --wait`,
//! `roll-out --wait`, the tests and the benchmarks all subscribe through it, before they publish,
//! so nothing they wait for can go by unheard.

use super::amqp::{self, Brokers, Topology};
use super::error::QueueError;
use super::job::{JobEvent, JobStatus};
use crate::core::log::LogLine;
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions};
use lapin::types::FieldTable;

/// What a subscription hears.
#[derive(Debug, Clone, Copy)]
pub enum Interest<'a> {
    /// Every status event of the prefix.
    AllEvents,
    /// The terminal events (SUCCEEDED, FAILED) of every operation.
    Outcomes,
    /// The terminal events of these operations.
    OutcomesOf(&'a [String]),
    /// One operation's status events and deployment log lines, in publish order.
    Operation(&'a str),
}

impl Interest<'_> {
    /// (exchange, routing key) pairs to bind.
    fn bindings(self, topology: &Topology) -> Vec<(String, String)> {
        let terminal = |op: &str| {
            [JobStatus::Succeeded, JobStatus::Failed].map(|s| (topology.events(), Topology::event_key(op, s.key())))
        };
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

/// A subscription on a connection of its own; its queue goes with the connection.
pub struct Subscription {
    conn: lapin::Connection,
    consumer: lapin::Consumer,
    events: String,
}

impl Subscription {
    /// Connects as `name`, declares the topology (so a job published next has its queue) and
    /// starts hearing `interest`.
    pub async fn open(
        brokers: &Brokers,
        topology: &Topology,
        name: &str,
        interest: Interest<'_>,
    ) -> Result<Self, QueueError> {
        let conn = brokers
            .connect(name)
            .await
            .map_err(|e| QueueError::broker(&format!("cannot reach the broker at {brokers}"), e))?;
        let (ch, _) = topology.declare(&conn).await.map_err(|e| QueueError::broker("declaring the queues", e))?;
        let queue = amqp::private_queue(&ch).await?;
        for (exchange, key) in interest.bindings(topology) {
            let (options, args) = (QueueBindOptions::default(), FieldTable::default());
            ch.queue_bind(queue.clone().into(), exchange.into(), key.into(), options, args).await?;
        }
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let consumer = ch.basic_consume(queue.into(), "".into(), no_ack, FieldTable::default()).await?;
        Ok(Self { conn, consumer, events: topology.events() })
    }

    /// The next message, skipping any that does not decode; None when the broker ended the
    /// subscription.
    pub async fn next(&mut self) -> Option<Result<Heard, QueueError>> {
        loop {
            let delivery = match self.consumer.next().await? {
                Ok(d) => d,
                Err(e) => return Some(Err(QueueError::broker("lost the broker while listening", e))),
            };
            let heard = if delivery.exchange.as_str() == self.events {
                serde_json::from_slice(&delivery.data).ok().map(|e| Heard::Event(Box::new(e)))
            } else {
                serde_json::from_slice(&delivery.data).ok().map(Heard::Line)
            };
            if let Some(h) = heard {
                return Some(Ok(h));
            }
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

    pub async fn close(self) {
        let _ = self.conn.close(200, "done".into()).await;
    }
}
