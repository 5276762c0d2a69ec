//! Batch work behind users' deployments: a worker takes a job from the batch queue only when it
//! has a free slot, no user's deployment waits for one of its slots, and the jobs queue holds
//! none ready. And batch work gives way: a user's deployment that finds every slot taken asks
//! the newest batch build among them to stop (it goes back to the batch queue and starts again
//! later), so it starts at once instead of waiting for batch builds to end, and a worker never
//! holds a user's job it could start while other workers' slots free up.

use super::Shared;
use crate::queue::error::QueueError;
use crate::queue::transport::{Lane, Message};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// How often an idle worker looks at the batch queue.
const LOOK: Duration = Duration::from_secs(1);

/// The batch builds running in a worker's slots, oldest first: an id each, and the switch that
/// asks it to give way.
type BatchRuns = Arc<Mutex<Vec<(u64, watch::Sender<bool>)>>>;

/// A worker's build slots, how many user deliveries wait for one, and the batch builds running
/// in them (oldest first), each with the switch that asks it to give way.
pub struct Slots {
    free: Arc<Semaphore>,
    users_waiting: AtomicUsize,
    batch: BatchRuns,
    next_batch: AtomicU64,
}

/// A batch job running in a slot: the switch it watches, and its place in the list (left when
/// dropped).
pub struct BatchRun {
    pub give_way: watch::Receiver<bool>,
    id: u64,
    runs: BatchRuns,
}

impl Drop for BatchRun {
    fn drop(&mut self) {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner).retain(|(id, _)| *id != self.id);
    }
}

impl Slots {
    pub fn new(n: u16) -> Self {
        Self {
            free: Arc::new(Semaphore::new(usize::from(n))),
            users_waiting: AtomicUsize::new(0),
            batch: Arc::default(),
            next_batch: AtomicU64::new(0),
        }
    }

    /// A slot for a user's deployment: a free one, or else the newest batch build is asked to
    /// give its up (it has done the least), and the deployment waits in line for a slot.
    pub async fn for_user(&self) -> Option<OwnedSemaphorePermit> {
        self.users_waiting.fetch_add(1, Ordering::SeqCst);
        let slot = if let Ok(slot) = self.free.clone().try_acquire_owned() {
            Some(slot)
        } else {
            let newest = self.batch.lock().unwrap_or_else(PoisonError::into_inner).pop();
            if let Some((_, give_way)) = newest {
                tracing::info!("a user's deployment waits for a slot: the newest batch build gives way");
                let _ = give_way.send(true);
            }
            self.free.clone().acquire_owned().await.ok()
        };
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

    /// Registers a batch job that runs in one of the slots, so a user's deployment can ask it
    /// to give way.
    pub fn batch_run(&self) -> BatchRun {
        let (tx, rx) = watch::channel(false);
        let id = self.next_batch.fetch_add(1, Ordering::Relaxed);
        self.batch.lock().unwrap_or_else(PoisonError::into_inner).push((id, tx));
        BatchRun { give_way: rx, id, runs: self.batch.clone() }
    }
}

/// A batch job taken, with the slot it runs in.
pub type Taken = (Message, OwnedSemaphorePermit, Lane);

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
) -> Result<(), QueueError> {
    let conn = shared.cfg.brokers.connect(name).await?;
    let ch = conn.channel().await?;
    let (jobs, batch) = (shared.cfg.topology.jobs(), shared.cfg.topology.batch());
    loop {
        tokio::time::sleep(LOOK).await;
        if *stopping.borrow() {
            continue;
        }
        let Some(slot) = slots.for_batch() else { continue };
        // Users' deployments first: none may be ready to start.
        if ch.look(&jobs).await?.ready > 0 {
            continue;
        }
        // Counted before taken: a `basic.get` on a quorum queue is written to its log even
        // when nothing is there (crates/apprunner-queue/src/transport/waiting.rs).
        if ch.look(&batch).await?.ready == 0 {
            continue;
        }
        if let Some(msg) = ch.get(&batch).await? {
            if to.send((msg, slot, Lane::Batch)).await.is_err() {
                return Ok(());
            }
        }
    }
}
