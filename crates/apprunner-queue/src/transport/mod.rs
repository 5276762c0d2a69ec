//! `RabbitMQ` transport: the topology every worker declares at start, the connections to a
//! cluster's nodes, a publisher that waits for the broker's confirm and reconnects when the
//! connection is lost, and the lease (`lease`) that keeps one build per operation.

mod amqp;
mod brokers;
pub mod lease;
mod publisher;
pub mod waiting;

pub use amqp::{Channel, Inbox, Link, Message, QueueState, StreamOffset};
pub use brokers::{close_for_next_session, Brokers, CLOSE_BEFORE_AGAIN, FRAME_MAX};
pub use publisher::{publish_confirmed_once, Outgoing, PendingConfirm, Publisher, CONFIRM_WAIT};

use crate::error::QueueError;
use lapin::options::{ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use std::time::Duration;

/// Which queue a job is in: users' deployments, or batch work that runs behind them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    User,
    Batch,
}

impl Lane {
    pub fn label(self) -> &'static str {
        match self {
            Lane::User => "user",
            Lane::Batch => "batch",
        }
    }
}

/// The names of everything the worker uses, under one prefix (default `apprunner-build`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
    /// Members each quorum queue is declared with (`x-quorum-initial-group-size`); None: the
    /// broker's default, every node of the cluster.
    pub quorum_size: Option<u32>,
}

/// A job delivered this many times without an ack (a worker dying on it each time) is
/// dead-lettered to the failed-jobs queue instead of looping.
pub const DELIVERY_LIMIT: i64 = 5;
pub const ATTEMPT_HEADER: &str = "x-apprunner-attempt";
/// When a waiting job is due back in the jobs queue (milliseconds since the epoch); a job that
/// carries it has waited, so an earlier delivery may have built it.
pub const DUE_HEADER: &str = "x-apprunner-due-ms";
/// On a waiting job: it goes back to the batch queue, not the jobs queue.
pub const BATCH_HEADER: &str = "x-apprunner-batch";
/// On a waiting job: it waited while another copy of its operation held the lease, a copy that
/// may still run without it (its broker connection lost), so the job asks before it reports.
pub const BEHIND_COPY_HEADER: &str = "x-apprunner-behind-copy";
/// How many times a quorum queue delivered a message before, without an ack.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string(), quorum_size: None }
    }

    #[must_use]
    pub fn with_quorum_size(mut self, size: Option<u32>) -> Self {
        self.quorum_size = size;
        self
    }
    /// Durable quorum queue of build jobs.
    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    /// Durable quorum queue of batch jobs (roll-outs, rebuilds, `submit --batch`), which a
    /// worker takes only while no user's deployment waits.
    pub fn batch(&self) -> String {
        format!("{}.batch", self.prefix)
    }
    /// The queue of jobs of `lane`.
    pub fn queue_of(&self, lane: Lane) -> String {
        match lane {
            Lane::User => self.jobs(),
            Lane::Batch => self.batch(),
        }
    }
    /// Durable quorum queue of failed jobs, each with its reason.
    pub fn failed(&self) -> String {
        format!("{}.failed", self.prefix)
    }
    /// Topic exchange of job status changes; routing key `<operation-id>.<STATUS>`.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// Topic exchange of deployment log lines; routing key `deployment.<operation-id>`.
    pub fn logs(&self) -> String {
        format!("{}.logs", self.prefix)
    }
    /// The exclusive queue whose existence says an operation is being built: its lease.
    pub fn lease(&self, operation_id: &str) -> String {
        format!("{}.lease.{operation_id}", self.prefix)
    }
    /// The exclusive queue whose existence says a deployment of the service runs: one at a
    /// time per service. Named by a digest, since a service's name may be any text.
    pub fn service_lease(&self, service: &str) -> String {
        let digest = crate::core::digest::sha256_digest(service.as_bytes());
        format!("{}.service.{}", self.prefix, &digest[7..39])
    }
    /// The quorum queue where jobs wait `delay` (a backoff, or while their operation is built
    /// elsewhere) until a worker moves them back (`waiting`).
    pub fn waiting(&self, delay: Duration) -> String {
        format!("{}.wait.{}ms", self.prefix, delay.as_millis())
    }
    /// Topic exchange of requests to the workers; routing key `cancel.<operation-id>`.
    pub fn control(&self) -> String {
        format!("{}.control", self.prefix)
    }
    pub fn cancel_key(operation_id: &str) -> String {
        format!("cancel.{operation_id}")
    }
    /// Routing key of a worker's question "does anyone else still build this operation?"
    /// (`worker::control`).
    pub fn building_key(operation_id: &str) -> String {
        format!("building.{operation_id}")
    }
    /// The stream of every event, which `status` and `history` read (`queue::history`).
    pub fn history(&self) -> String {
        format!("{}.history", self.prefix)
    }
    /// A follower's own queue (`subscription`): quorum, so what it holds outlives a node.
    pub fn follower(&self, id: &str) -> String {
        format!("{}.follow.{id}", self.prefix)
    }

    pub fn event_key(operation_id: &str, status: &str) -> String {
        format!("{operation_id}.{status}")
    }
    pub fn log_key(operation_id: &str) -> String {
        format!("deployment.{operation_id}")
    }

    /// Deletes what a fleet declared under this prefix (tests and benchmarks end with it, so a
    /// broker does not collect their quorum queues run after run): the fixed queues and
    /// exchanges and the wait queues of the delays `waits` (those its retry policy uses). Best
    /// effort: what is not there is skipped.
    pub async fn remove(&self, link: &Link, waits: impl IntoIterator<Item = Duration>) {
        let Ok(Channel(ch)) = link.channel().await else { return };
        let mut queues = vec![self.jobs(), self.batch(), self.failed(), self.history()];
        queues.extend(waits.into_iter().map(|delay| self.waiting(delay)));
        for q in queues {
            let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
        }
        for x in [self.events(), self.logs(), self.control()] {
            let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
        }
    }

    /// The arguments every quorum queue of this topology is declared with: its type and, when
    /// set, its member count.
    fn quorum(&self) -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        if let Some(n) = self.quorum_size {
            args.insert("x-quorum-initial-group-size".into(), AMQPValue::LongInt(i32::try_from(n).unwrap_or(i32::MAX)));
        }
        args
    }

    /// Declares exchanges and queues; idempotent, so every worker does it at start. Returns a
    /// channel to go on with, and a line per quorum queue saying how many members it has.
    pub async fn declare(&self, conn: &Link) -> Result<(Channel, Vec<String>), QueueError> {
        let ch = conn.channel().await?;
        for exchange in [self.events(), self.logs(), self.control()] {
            ch.declare_topic(&exchange).await?;
        }
        let failed = self.declare_quorum(conn, &self.failed(), self.quorum()).await?;
        let mut jobs = self.quorum();
        jobs.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        jobs.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        jobs.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(self.failed().into()));
        let batch = self.declare_quorum(conn, &self.batch(), jobs.clone()).await?;
        let jobs = self.declare_quorum(conn, &self.jobs(), jobs).await?;
        self.declare_history(conn).await?;
        Ok((ch, vec![jobs, batch, failed]))
    }

    /// As `declare`, for a client: a connection that finds the topology there (the jobs queue
    /// and the history stream, which a full declaration makes last) only looks, on one channel
    /// it returns; otherwise it declares in full. A submission would else ask the broker a dozen
    /// questions each time. Workers declare in full at start, so what a look trusts is kept.
    pub async fn ensure(&self, conn: &Link) -> Result<Channel, QueueError> {
        let ch = conn.channel().await?;
        // A queue that is not there closes the channel: then the full declaration, on others.
        if ch.look(&self.jobs()).await.is_ok() && ch.look(&self.history()).await.is_ok() {
            return Ok(ch);
        }
        Ok(self.declare(conn).await?.0)
    }

    /// Declares one quorum queue with this topology's member count, unless it exists: then it
    /// keeps the members it has (the broker refuses a declaration whose arguments differ, and
    /// `rabbitmq-queues grow`/`shrink` change the members of a queue that exists).
    async fn declare_quorum(&self, conn: &Link, name: &str, args: FieldTable) -> Result<String, QueueError> {
        let exists = |ch: Channel| async move {
            let found = ch.look(name).await.is_ok();
            // A queue that is not there closes the channel by itself.
            if found {
                ch.close("checked").await;
            }
            found
        };
        let kept = format!("{name}: quorum queue declared before; it keeps the members it has");
        if exists(conn.channel().await?).await {
            return Ok(kept);
        }
        let Channel(ch) = conn.channel().await?;
        let q = QueueDeclareOptions { durable: true, ..Default::default() };
        match ch.queue_declare(name.into(), q, args).await {
            Ok(_) => {
                let _ = ch.close(200, "declared".into()).await;
                Ok(match self.quorum_size {
                    Some(n) => format!("{name}: quorum queue of {n} members (or as many nodes as the cluster has)"),
                    None => format!("{name}: quorum queue on every node of the cluster (the broker's default)"),
                })
            }
            // Another client declared it meanwhile, with other arguments.
            Err(_) if exists(conn.channel().await?).await => Ok(kept),
            Err(e) => Err(e.into()),
        }
    }

    /// Declares the history stream, bound to every event: a record the broker keeps of each
    /// deployment, bounded to [`HISTORY_BYTES`] (the oldest segments go first).
    async fn declare_history(&self, conn: &Link) -> Result<(), QueueError> {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
        args.insert("x-max-length-bytes".into(), AMQPValue::LongLongInt(HISTORY_BYTES));
        args.insert("x-stream-max-segment-size-bytes".into(), AMQPValue::LongLongInt(HISTORY_BYTES / 8));
        if let Some(n) = self.quorum_size {
            args.insert("x-initial-cluster-size".into(), AMQPValue::LongInt(i32::try_from(n).unwrap_or(i32::MAX)));
        }
        self.declare_own(conn.channel().await?, &self.history(), args).await?;
        let Channel(ch) = conn.channel().await?;
        ch.queue_bind(
            self.history().into(),
            self.events().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let _ = ch.close(200, "bound".into()).await;
        Ok(())
    }

    /// Declares the waiting queue of `delay` on a channel of its own (`ch`, closed after): a
    /// quorum queue with no TTL and no dead-lettering; workers move its jobs back when due.
    pub async fn declare_waiting(&self, ch: Channel, delay: Duration) -> Result<String, QueueError> {
        let name = self.waiting(delay);
        self.declare_own(ch, &name, self.quorum()).await?;
        Ok(name)
    }

    /// Declares a follower's queue: quorum, deleted by the broker once no one has used it for
    /// [`FOLLOWER_EXPIRY`] (a follower that died), and by the follower when it is done.
    pub async fn declare_follower(&self, ch: Channel, id: &str) -> Result<String, QueueError> {
        let name = self.follower(id);
        let mut args = self.quorum();
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(i64::try_from(FOLLOWER_EXPIRY.as_millis()).unwrap_or(i64::MAX)),
        );
        self.declare_own(ch, &name, args).await?;
        Ok(name)
    }

    /// Declares the durable queue `name` with `args` on `ch` (closed after). One that exists
    /// with another member count serves as it is.
    async fn declare_own(&self, Channel(ch): Channel, name: &str, args: FieldTable) -> Result<(), QueueError> {
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        match ch.queue_declare(name.into(), durable, args).await {
            Ok(_) => {
                let _ = ch.close(200, "declared".into()).await;
                Ok(())
            }
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 406) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// How much of the event history the broker keeps: some 30,000 deployments' events.
pub const HISTORY_BYTES: i64 = 64 << 20;

/// How long a follower's queue outlives its last use (a follower killed mid-deployment).
pub const FOLLOWER_EXPIRY: Duration = Duration::from_secs(600);
