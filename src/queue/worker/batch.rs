//! Batch work behind users' deployments: a worker takes a job from the batch queue only when it
//! has a free slot, no user's deployment waits for one of its slots, and the jobs queue holds
//! none ready. A user's deployment then waits at most for the builds already running: slots
//! are handed out first come first served, and the batch side never queues for one.

use super::Shared;
use crate::queue::transport::{self, Lane};
use lapin::message::Delivery;
use lapin::options::BasicGetOptions;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// How often an idle worker looks at the batch queue.
const LOOK: Duration = Duration::from_secs(1);

/// A worker's build slots, and how many user deliveries wait for one.
pub struct Slots {
    free: Arc<Semaphore>,
    users_waiting: AtomicUsize,
}

impl Slots {
    pub fn new(n: u16) -> Self {
        Self { free: Arc::new(Semaphore::new(usize::from(n))), users_waiting: AtomicUsize::new(0) }
    }

    /// A slot for a user's deployment, waiting in line for one.
    pub async fn for_user(&self) -> Option<OwnedSemaphorePermit> {
        self.users_waiting.fetch_add(1, Ordering::SeqCst);
        let slot = self.free.clone().acquire_owned().await.ok();
        self.users_waiting.fetch_sub(1, Ordering::SeqCst);
        slot
    }

    /// A slot for batch work, if one is free and no user waits.
    fn for_batch(&self) -> Option<OwnedSemaphorePermit> {
        if self.users_waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.free.clone().try_acquire_owned().ok()
    }
}

/// A batch job taken, with the slot it runs in.
pub type Taken = (Delivery, OwnedSemaphorePermit, Lane);

/// Takes batch jobs while the worker is not stopping, sending each (with its slot) to `to`.
/// Its connection lives as long as this task, so the jobs it took can be acked.
pub async fn take_batch_jobs(
    shared: Arc<Shared>,
    slots: Arc<Slots>,
    to: mpsc::Sender<Taken>,
    stopping: watch::Receiver<bool>,
) {
    let name = format!("apprunner-build-worker-{}-batch", shared.cfg.worker_id);
    loop {
        if let Err(e) = take_on_one_connection(&shared, &slots, &to, &stopping, &name).await {
            tracing::warn!("batch jobs: {e}; looking again in {LOOK:?}");
        }
        tokio::time::sleep(LOOK).await;
    }
}

async fn take_on_one_connection(
    shared: &Shared,
    slots: &Slots,
    to: &mpsc::Sender<Taken>,
    stopping: &watch::Receiver<bool>,
    name: &str,
) -> lapin::Result<()> {
    let conn = shared.cfg.brokers.connect(name).await?;
    let ch = conn.create_channel().await?;
    let (jobs, batch) = (shared.cfg.topology.jobs(), shared.cfg.topology.batch());
    loop {
        tokio::time::sleep(LOOK).await;
        if *stopping.borrow() {
            continue;
        }
        let Some(slot) = slots.for_batch() else { continue };
        // Users' deployments first: none may be ready to start.
        if transport::look(&ch, &jobs).await?.message_count() > 0 {
            continue;
        }
        // Counted before taken: a `basic.get` on a quorum queue is written to its log even
        // when nothing is there (src/queue/transport/waiting.rs).
        if transport::look(&ch, &batch).await?.message_count() == 0 {
            continue;
        }
        if let Some(msg) = ch.basic_get(batch.as_str().into(), BasicGetOptions::default()).await? {
            if to.send((msg.delivery, slot, Lane::Batch)).await.is_err() {
                return Ok(());
            }
        }
    }
}
