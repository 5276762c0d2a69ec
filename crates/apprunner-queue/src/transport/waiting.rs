//! Jobs that wait: a backoff after a transient fault, or a while when their operation (or
//! another deployment of their service) is being built elsewhere. A waiting job sits in the quorum queue of its delay (`<prefix>.wait.<ms>ms`)
//! stamped with the time it is due, and every worker moves the due ones back to the jobs queue
//! itself ([`move_due_jobs`]). Nothing depends on the broker expiring messages and
//! dead-lettering them: `RabbitMQ` 3.10's quorum queues can leave expired messages stuck after
//! losing a node (docs/reliability.md).
//!
//! One queue per delay keeps each queue in due order (first in, first due), so a mover holds
//! its queue's head until it is due and no later job waits behind an earlier one. A job is moved
//! by publishing it to the jobs queue (confirmed) and then acking it here; a mover that dies
//! between the two leaves a second copy, which the worker recognises as the same job (its id,
//! the ledger), so moving is safe with any number of workers moving at once.

use super::{
    Brokers, Lane, Outgoing, Publisher, Topology, ATTEMPT_HEADER, BATCH_HEADER, BEHIND_COPY_HEADER, DUE_HEADER,
};
use crate::error::QueueError;
use std::time::Duration;

/// How often an empty waiting queue is looked at again: the most a job waits past its time.
const POLL: Duration = Duration::from_secs(1);
/// A request the broker does not answer in this long (a queue with no leader) ends the session.
const ANSWER: Duration = Duration::from_secs(10);

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// A job to send to wait: its bytes and id, the attempt it comes back as, and its lane.
pub struct Waiting<'a> {
    pub payload: &'a [u8],
    pub job_id: &'a str,
    pub attempt: u32,
    pub lane: Lane,
    /// It waits because another copy of its operation holds the lease.
    pub behind_copy: bool,
}

/// Sends the job to wait `delay`, then to come back to its lane's queue.
pub async fn send_to_wait(
    publisher: &Publisher,
    topology: &Topology,
    job: &Waiting<'_>,
    delay: Duration,
) -> Result<(), QueueError> {
    let queue = topology.declare_waiting(publisher.side_channel().await?, delay).await?;
    let due = now_ms() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    let msg = Outgoing {
        message_id: Some(job.job_id),
        attempt: Some(job.attempt),
        due_ms: Some(due),
        lane: job.lane,
        behind_copy: job.behind_copy,
        ..Outgoing::new("", &queue, job.payload)
    };
    publisher.publish(&msg).await
}

/// Moves due jobs from the waiting queue of each of `delays` back to the jobs queue, until the
/// process ends; reconnects (to the next node) whenever the broker goes.
pub async fn move_due_jobs(brokers: Brokers, topology: Topology, delays: Vec<Duration>, name: String) {
    let publisher = std::sync::Arc::new(Publisher::new(&brokers, &format!("{name}-publisher")));
    let movers = delays.into_iter().map(|delay| {
        let (brokers, topology, publisher, name) = (brokers.clone(), topology.clone(), publisher.clone(), name.clone());
        async move {
            let mut pause = Duration::from_millis(500);
            loop {
                match move_session(&brokers, &topology, delay, &publisher, &name).await {
                    Ok(()) => pause = Duration::from_millis(500),
                    Err(e) => {
                        tracing::warn!("moving waiting jobs ({}): {e}; again in {pause:?}", topology.waiting(delay));
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                }
                tokio::time::sleep(pause).await;
            }
        }
    });
    futures_util::future::join_all(movers).await;
}

/// One connection's worth of moving; returns when the connection or the broker fails.
async fn move_session(
    brokers: &Brokers,
    topology: &Topology,
    delay: Duration,
    publisher: &Publisher,
    name: &str,
) -> Result<(), QueueError> {
    let conn = brokers.connect(name).await?;
    let slow = |what: &str| QueueError::broker_fault(format!("{what} did not answer within {ANSWER:?}"));
    let result = async {
        let declared = topology.declare_waiting(conn.channel().await?, delay);
        let queue = tokio::time::timeout(ANSWER, declared).await.map_err(|_| slow("declaring the wait queue"))??;
        let ch = conn.channel().await?;
        loop {
            // The ready count first: on a quorum queue a `basic.get` is a command its members
            // write to their logs, even when the queue is empty (0.4 ms of the broker's CPU and
            // a log write, against 0.05 ms for the count); an idle worker asks once a second.
            let asked = ch.look(&queue);
            let ready = tokio::time::timeout(ANSWER, asked).await.map_err(|_| slow(&queue))??.ready;
            let got = if ready == 0 {
                None
            } else {
                tokio::time::timeout(ANSWER, ch.get(&queue)).await.map_err(|_| slow(&queue))??
            };
            let Some(msg) = got else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            // Held until due: if this connection goes meanwhile, the broker gives the job to
            // another mover, so it is not published from here.
            let due = msg.header_u64(DUE_HEADER).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(due.saturating_sub(now_ms()))).await;
            if !ch.is_open() {
                return Err(QueueError::broker_fault("the connection went while a job waited"));
            }
            let id = msg.message_id().map(ToString::to_string);
            let lane = if msg.has_header(BATCH_HEADER) { Lane::Batch } else { Lane::User };
            let to = topology.queue_of(lane);
            let back = Outgoing {
                message_id: id.as_deref(),
                attempt: msg.header_u32(ATTEMPT_HEADER),
                due_ms: Some(due),
                lane,
                behind_copy: msg.has_header(BEHIND_COPY_HEADER),
                ..Outgoing::new("", &to, msg.body())
            };
            publisher.publish(&back).await?;
            let acked = msg.ack();
            tokio::time::timeout(ANSWER, acked).await.map_err(|_| slow("the ack"))??;
        }
    }
    .await;
    super::close_for_next_session(&conn, "moving again", super::CLOSE_BEFORE_AGAIN).await;
    result
}
