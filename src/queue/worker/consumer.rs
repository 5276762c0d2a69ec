//! The worker's loop: a session with the broker (a connection, its channel, the jobs queue's
//! consumer) after another, each delivery handed to a task in a slot, until shutdown; then the
//! running builds get their grace.

use super::{batch, handle, Shared, CLOSE, CONSUMER_STALL};
use crate::queue::error::QueueError;
use crate::queue::transport::{self, Channel, Inbox, Lane, Link, Message};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// One session with the broker.
pub(super) struct Session {
    conn: Link,
    ch: Channel,
    consumer: Inbox,
    /// The connection's name, which is also the consumer's tag.
    name: String,
}

impl Session {
    /// Connects, declares the topology (the queues it declared are returned, to be said once)
    /// and subscribes to the jobs queue with a prefetch of the worker's concurrency.
    async fn open(shared: &Shared) -> Result<(Self, Vec<String>), QueueError> {
        let name = format!("apprunner-build-worker-{}", shared.cfg.worker_id);
        let conn = shared.cfg.brokers.connect(&name).await?;
        let (ch, queues) = shared.cfg.topology.declare(&conn).await?;
        ch.prefetch(shared.cfg.concurrency).await?;
        // The consumer's tag is the connection's name.
        let consumer = ch.consume(&shared.cfg.topology.jobs(), &name).await?;
        Ok((Session { conn, ch, consumer, name }, queues))
    }

    /// Closes the connection; one whose node is gone may never answer, and a new session
    /// does not wait long for it.
    async fn close(self, why: &str, limit: std::time::Duration) {
        transport::close_for_next_session(&self.conn, why, limit).await;
    }
}

/// How a session ended.
enum Ended {
    /// The consumer failed, ended or stalled: a new session.
    Lost,
    /// Shutdown: no new jobs.
    Stopping,
}

/// The loop's state across sessions.
pub(super) struct Consumer {
    shared: Arc<Shared>,
    slots: Arc<batch::Slots>,
    /// The builds running here.
    tasks: JoinSet<()>,
    /// Batch jobs taken behind users' (`batch::take_batch_jobs`).
    batch_jobs: mpsc::Receiver<batch::Taken>,
    shutdown: watch::Receiver<bool>,
}

impl Consumer {
    pub(super) fn new(
        shared: Arc<Shared>,
        slots: Arc<batch::Slots>,
        batch_jobs: mpsc::Receiver<batch::Taken>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self { shared, slots, tasks: JoinSet::new(), batch_jobs, shutdown }
    }

    /// Sessions one after another until shutdown; then the running builds' grace.
    pub(super) async fn run(mut self) {
        let mut first_session = true;
        while let Some((mut session, queues)) = self.connect().await {
            if std::mem::take(&mut first_session) {
                for q in queues {
                    tracing::info!("{q}");
                }
            }
            let shared = &self.shared;
            tracing::info!("connected to broker node {}", shared.cfg.brokers.node());
            tracing::info!(
                "consuming {} with up to {} builds at once",
                shared.cfg.topology.jobs(),
                shared.cfg.concurrency
            );
            let ended = self.serve(&mut session).await;
            self.shared.metrics.connected.store(false, Ordering::Relaxed);
            match ended {
                Ended::Lost => session.close("reconnecting", transport::CLOSE_BEFORE_AGAIN).await,
                Ended::Stopping => {
                    self.stop(session).await;
                    return;
                }
            }
        }
    }

    /// A new session, trying again with backoff while the broker is unreachable; None at
    /// shutdown.
    async fn connect(&mut self) -> Option<(Session, Vec<String>)> {
        let mut backoff = Duration::from_millis(500);
        while !*self.shutdown.borrow() {
            match Session::open(&self.shared).await {
                Ok(opened) => {
                    self.shared.metrics.connected.store(true, Ordering::Relaxed);
                    return Some(opened);
                }
                Err(e) => {
                    self.shared.metrics.connected.store(false, Ordering::Relaxed);
                    tracing::warn!("broker unreachable ({e}); retrying in {backoff:?}");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => return None,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
        }
        None
    }

    /// Hands each delivery and each batch job taken to a task, until the session is lost or
    /// the worker stops.
    async fn serve(&mut self, session: &mut Session) -> Ended {
        // A consumer that subscribed while its queue had no leader (the node that led it had
        // just gone) may be sent nothing: jobs wait, slots are free, no delivery comes. The
        // depth check sees that and the consumer subscribes again.
        let last_delivery = Arc::new(Mutex::new(Instant::now()));
        let stalled = Arc::new(Notify::new());
        let depth = watch_depth(session.ch.clone(), self.shared.clone(), last_delivery.clone(), stalled.clone());
        let ended = loop {
            tokio::select! {
                () = stalled.notified() => {
                    tracing::warn!("jobs are waiting and slots are free, but none came for {CONSUMER_STALL:?}; subscribing again");
                    break Ended::Lost;
                }
                next = session.consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        *last_delivery.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
                        self.take_users(delivery);
                    }
                    Some(Err(e)) => { tracing::warn!("consumer failed: {e}; reconnecting"); break Ended::Lost; }
                    None => { tracing::warn!("consumer ended; reconnecting"); break Ended::Lost; }
                },
                Some(taken) = self.batch_jobs.recv() => self.take_batch(taken),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                _ = self.shutdown.changed() => break Ended::Stopping,
            }
        };
        depth.abort();
        ended
    }

    /// A user's deployment: built in a slot of its own, batch work giving way if none is free.
    fn take_users(&mut self, delivery: Message) {
        let (shared, slots) = (self.shared.clone(), self.slots.clone());
        self.tasks.spawn(async move {
            let _slot = slots.for_user().await;
            handle(&shared, delivery, Lane::User, None).await;
        });
    }

    /// Batch work, in the slot it was taken with; it gives way when a user's deployment asks.
    fn take_batch(&mut self, (delivery, slot, lane): batch::Taken) {
        let (shared, run) = (self.shared.clone(), self.slots.batch_run());
        self.tasks.spawn(async move {
            handle(&shared, delivery, lane, Some(run.give_way.clone())).await;
            drop(run);
            drop(slot);
        });
    }

    /// No new jobs; the running builds get the grace, then the connection closes (jobs still
    /// unacked go back to the queue with it).
    async fn stop(mut self, session: Session) {
        let (shared, tasks) = (&self.shared, &mut self.tasks);
        tracing::info!(
            "stopping: no new jobs; waiting up to {:?} for {} running builds",
            shared.cfg.grace,
            tasks.len()
        );
        let _ = session.ch.cancel(&session.name).await;
        let _ = tokio::time::timeout(shared.cfg.grace, async { while tasks.join_next().await.is_some() {} }).await;
        session.close("worker stopping", CLOSE).await;
    }
}

/// Every 5 s: the jobs queue's depth for the metrics, and whether the consumer is stalled
/// (jobs ready, a slot free, no delivery for [`CONSUMER_STALL`]).
fn watch_depth(
    ch: Channel,
    shared: Arc<Shared>,
    last_delivery: Arc<Mutex<Instant>>,
    stalled: Arc<Notify>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(q) = ch.look(&shared.cfg.topology.jobs()).await {
                shared.metrics.queue_depth.store(i64::from(q.ready), Ordering::Relaxed);
                let free = shared.metrics.in_flight.load(Ordering::Relaxed) < i64::from(shared.cfg.concurrency);
                let quiet = last_delivery.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
                if q.ready > 0 && free && quiet > CONSUMER_STALL {
                    stalled.notify_one();
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}
