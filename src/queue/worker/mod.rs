//! `apprunner-build worker`: build jobs from `RabbitMQ`, results and logs back, nothing lost.
//!
//! A job is acked only after its outcome is published (with confirms): a SUCCEEDED or FAILED
//! event, plus a failed-jobs entry for failures. Transient faults send the job to wait and come
//! back, a bounded number of times; every worker moves waiting jobs back when they are due
//! (`transport::waiting`). A redelivered job whose image already exists for the same
//! operation is not built again, and its success is reported once.

mod batch;
mod consumer;
mod control;
mod copies;
mod deployment;
mod failpoint;
mod log_forwarder;
mod order;
mod published;

use super::history;
use super::metrics::Metrics;
use super::outcome::{JobOutcome, RetryPolicy};
use super::transport::lease::Leases;
use super::transport::{
    waiting, Brokers, Lane, Message, Publisher, Topology, ATTEMPT_HEADER, BEHIND_COPY_HEADER, DELIVERY_COUNT_HEADER,
    DELIVERY_LIMIT, DUE_HEADER,
};
use super::wire::checked::CheckedJob;
use super::wire::job::{now_rfc3339, FailedJob, JobEvent};
use crate::edge::registry::Registry;
use crate::error::BuildError;
use crate::pipeline::Settings;
use consumer::Consumer;
use deployment::Deployment;
use published::{publish_event, publish_failed};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub brokers: Brokers,
    pub topology: Topology,
    /// Builds at once (the consumer prefetch).
    pub concurrency: u16,
    pub retry: RetryPolicy,
    /// How long running builds may go on after SIGTERM.
    pub grace: Duration,
    pub worker_id: String,
    pub settings: Settings,
}

struct Shared {
    cfg: WorkerConfig,
    publisher: Publisher,
    leases: Leases,
    registry: Registry,
    metrics: Arc<Metrics>,
    /// The deployments running here, for cancel requests and other workers' questions.
    running: Arc<control::Running>,
    /// Each service's line, from the history: a deployment lets earlier ones go first.
    order: Arc<order::Order>,
}

impl Shared {
    fn new(cfg: WorkerConfig, metrics: Arc<Metrics>) -> Self {
        let named = |part: &str| format!("apprunner-build-worker-{}-{part}", cfg.worker_id);
        Shared {
            publisher: Publisher::new(&cfg.brokers, &named("publisher")),
            leases: Leases::new(&cfg.brokers, &named("leases"), cfg.topology.clone()),
            registry: cfg.settings.registry_client(),
            metrics,
            running: Arc::default(),
            order: Arc::default(),
            cfg,
        }
    }
}

/// How long a consumer may see no delivery while jobs wait and it has free slots.
const CONSUMER_STALL: Duration = Duration::from_secs(15);

/// How long a connection's close may take; one whose node is gone may never answer.
const CLOSE: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true: consume, reconnecting with backoff whenever the broker
/// connection is lost; then let running builds finish (up to the grace period).
pub async fn run(cfg: WorkerConfig, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(cfg, metrics));
    shared.metrics.watch_broker(&shared.cfg.brokers);
    sweep_clones("start");
    let slots = Arc::new(batch::Slots::new(shared.cfg.concurrency));
    let (helpers, batch_jobs) = start_helpers(&shared, &slots, &shutdown);
    Consumer::new(shared.clone(), slots, batch_jobs, shutdown).run().await;
    for helper in helpers {
        helper.abort();
    }
    // A connection whose node is gone may never answer its close.
    let _ = tokio::time::timeout(CLOSE, shared.publisher.close()).await;
    let _ = tokio::time::timeout(CLOSE, shared.leases.close()).await;
    sweep_clones("exit");
    Ok(())
}

/// The tasks beside the consumer: the cancel listener, the mover of due waiting jobs, and the
/// taker of batch jobs (which sends what it takes to the loop).
fn start_helpers(
    shared: &Arc<Shared>,
    slots: &Arc<batch::Slots>,
    stopping: &watch::Receiver<bool>,
) -> (Vec<tokio::task::JoinHandle<()>>, tokio::sync::mpsc::Receiver<batch::Taken>) {
    let named = |part: &str| format!("apprunner-build-worker-{}-{part}", shared.cfg.worker_id);
    let (brokers, topology) = (shared.cfg.brokers.clone(), shared.cfg.topology.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let helpers = vec![
        tokio::spawn(shared.running.clone().listen(
            brokers.clone(),
            topology.clone(),
            named("control"),
            shared.cfg.worker_id.clone(),
        )),
        tokio::spawn({
            let (order, brokers, topology, name) =
                (shared.order.clone(), brokers.clone(), topology.clone(), named("order"));
            async move { order.follow(brokers, topology, name).await }
        }),
        tokio::spawn(waiting::move_due_jobs(brokers, topology, shared.cfg.retry.waits(), named("waits"))),
        tokio::spawn(batch::take_batch_jobs(shared.clone(), slots.clone(), tx, stopping.clone())),
    ];
    (helpers, rx)
}

/// Clones left by workers that died mid-build go, at start and at exit.
fn sweep_clones(when: &str) {
    let removed = crate::edge::source::sweep_stale_clones();
    if removed > 0 {
        tracing::info!("removed {removed} clones left by stopped builds ({when})");
    }
}

async fn ack(delivery: &Message) {
    if let Err(e) = delivery.ack().await {
        // The channel is gone: the broker will redeliver, and the redelivery is idempotent.
        tracing::warn!("ack failed ({e}); the job will be redelivered and recognised");
    }
}

/// Handles one delivery; returns once it is acked, or left for redelivery. Batch work watches
/// `give_way`: a user's deployment wants its slot.
async fn handle(shared: &Arc<Shared>, delivery: Message, lane: Lane, give_way: Option<watch::Receiver<bool>>) {
    let attempt = delivery.header_u32(ATTEMPT_HEADER).unwrap_or(1);
    let job = match CheckedJob::parse(delivery.body()) {
        Ok(j) => j,
        Err(error) => {
            // A poison message becomes a failed-jobs entry, never a crash loop.
            tracing::warn!("rejected a message: {error}");
            let entry = FailedJob::rejected(delivery.body(), &error, attempt, &shared.cfg.worker_id);
            if publish_failed(shared, &entry).await.is_ok() {
                shared.metrics.job_finished(lane, JobOutcome::Rejected.label());
                ack(&delivery).await;
            }
            return;
        }
    };
    // The last delivery the broker allows: every earlier one ended with its worker gone. Rather
    // than let the broker dead-letter it unreported, the job fails here, with a reason.
    let delivered_before = delivery.header_u32(DELIVERY_COUNT_HEADER).unwrap_or(0);
    if i64::from(delivered_before) >= DELIVERY_LIMIT - 1 {
        let deliveries = delivered_before + 1;
        // An earlier delivery may have published the outcome and died before its ack.
        let from = job.submitted.map_or(history::From::First, history::From::Time);
        if let Ok(Some(ended)) =
            history::outcome_of(&shared.cfg.brokers, &shared.cfg.topology, &job.operation_id, from).await
        {
            tracing::info!(
                "job {}: delivery {deliveries} of an operation that ended {}; acked",
                job.job_id,
                ended.status.key()
            );
            ack(&delivery).await;
            return;
        }
        tracing::warn!("job {}: delivery {deliveries}, the last the broker allows; failing it", job.job_id);
        let entry = FailedJob::dead_lettered(&job, now_rfc3339(), deliveries);
        let error = BuildError::new(entry.class, entry.reason.clone());
        let event = JobEvent::failed(&job, &error).by(&shared.cfg.worker_id, Some(attempt));
        if publish_failed(shared, &entry).await.is_ok() && publish_event(shared, &event).await.is_ok() {
            shared.metrics.job_finished(lane, JobOutcome::Failed(entry.class).label());
            ack(&delivery).await;
        }
        return;
    }
    if let Some(ts) = delivery.timestamp() {
        let lag = time::OffsetDateTime::now_utc().unix_timestamp() - i64::try_from(ts).unwrap_or(i64::MAX);
        shared.metrics.queue_lag(lag.max(0) as f64);
    }
    shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    // A job seen for the first time cannot have been built yet, so the registry is not asked;
    // but a roll-out may publish the same job again by design. (Another copy of a job published
    // twice is built again from BuildKit's cache and reported once.)
    let may_be_built = job.rollout.is_some()
        || submitted_by_watchers(&job)
        || delivery.redelivered()
        || delivered_before > 0
        || attempt > 1
        || delivery.has_header("x-death")
        || delivery.header_u64(DUE_HEADER).is_some();
    // Another copy may still run without its lease only if this delivery came again after a
    // lost connection, or waited while a copy held the lease.
    let may_have_copy = delivery.redelivered() || delivered_before > 0 || delivery.has_header(BEHIND_COPY_HEADER);
    let done = Deployment { shared, job: &job, attempt, may_be_built, may_have_copy, lane, give_way }.run().await;
    shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    match done {
        Ok(outcome) => {
            shared.metrics.job_finished(lane, outcome.label());
            ack(&delivery).await;
        }
        Err(e) => {
            tracing::warn!("job {}: could not publish its outcome ({e}); returning it to the queue", job.job_id);
            requeue_delivery(&delivery).await;
        }
    }
}

/// Whether the job is a watcher's: its operation id is its service's and commit's, which every
/// watcher submits alike (so the same deployment may come more than once, one after another).
fn submitted_by_watchers(job: &CheckedJob) -> bool {
    let commit = job.repository.commit.as_deref();
    commit.is_some_and(|c| crate::core::watch::decision::operation_id(&job.service.name, c) == job.operation_id)
}

/// Gives a delivery back for another try. The consuming connection may be alive while the
/// publishing or lease connection is not (their node went): an unacked delivery would then
/// wait for the consumer's end. A moment first, so a broker that is away is not asked in a loop;
/// a channel that is gone returns it by itself.
async fn requeue_delivery(delivery: &Message) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = delivery.requeue().await;
}
