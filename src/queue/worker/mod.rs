//! `apprunner-build worker`: build jobs from `RabbitMQ`, results and logs back, nothing lost.
//!
//! A job is acked only after its outcome is published (with confirms): a SUCCEEDED or FAILED
//! event, plus a failed-jobs entry for failures. Transient faults send the job to wait and come
//! back, a bounded number of times; every worker moves waiting jobs back when they are due
//! (`transport::waiting`). A redelivered job whose image already exists for the same
//! operation is not built again, and its success is reported once.

mod batch;
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
    self, waiting, Brokers, Lane, Publisher, Topology, ATTEMPT_HEADER, BEHIND_COPY_HEADER, DELIVERY_COUNT_HEADER,
    DELIVERY_LIMIT, DUE_HEADER,
};
use super::wire::checked::CheckedJob;
use super::wire::job::{now_rfc3339, FailedJob, JobEvent};
use crate::edge::registry::Registry;
use crate::error::BuildError;
use crate::pipeline::Settings;
use deployment::Deployment;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use published::{publish_event, publish_failed};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
pub async fn run(cfg: WorkerConfig, metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::new(cfg, metrics));
    shared.metrics.watch_broker(&shared.cfg.brokers);
    sweep_clones("start");
    let slots = Arc::new(batch::Slots::new(shared.cfg.concurrency));
    let (helpers, mut batch_jobs) = start_helpers(&shared, &slots, &shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(500);
    let mut first_session = true;
    'outer: while !*shutdown.borrow() {
        let conn_name = format!("apprunner-build-worker-{}", shared.cfg.worker_id);
        let session = async {
            let conn = shared.cfg.brokers.connect(&conn_name).await?;
            let (ch, queues) = shared.cfg.topology.declare(&conn).await?;
            ch.basic_qos(shared.cfg.concurrency, BasicQosOptions::default()).await?;
            let consumer = ch
                .basic_consume(
                    shared.cfg.topology.jobs().into(),
                    conn_name.clone().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            lapin::Result::Ok((conn, ch, consumer, queues))
        }
        .await;
        let (conn, ch, mut consumer, queues) = match session {
            Ok(s) => s,
            Err(e) => {
                shared.metrics.connected.store(false, Ordering::Relaxed);
                tracing::warn!("broker unreachable ({e}); retrying in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break 'outer,
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        shared.metrics.connected.store(true, Ordering::Relaxed);
        if std::mem::take(&mut first_session) {
            for q in queues {
                tracing::info!("{q}");
            }
        }
        tracing::info!("connected to broker node {}", shared.cfg.brokers.node());
        tracing::info!("consuming {} with up to {} builds at once", shared.cfg.topology.jobs(), shared.cfg.concurrency);
        // A consumer that subscribed while its queue had no leader (the node that led it had
        // just gone) may be sent nothing: jobs wait, slots are free, no delivery comes. The
        // depth check sees that and the consumer subscribes again.
        let last_delivery = Arc::new(std::sync::Mutex::new(Instant::now()));
        let stalled = Arc::new(tokio::sync::Notify::new());
        let depth_task = watch_depth(ch.clone(), shared.clone(), last_delivery.clone(), stalled.clone());
        loop {
            tokio::select! {
                () = stalled.notified() => {
                    tracing::warn!("jobs are waiting and slots are free, but none came for {CONSUMER_STALL:?}; subscribing again");
                    break;
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        *last_delivery.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
                        let (shared, slots) = (shared.clone(), slots.clone());
                        tasks.spawn(async move {
                            let _slot = slots.for_user().await;
                            handle(&shared, delivery, Lane::User, None).await;
                        });
                    }
                    Some(Err(e)) => { tracing::warn!("consumer failed: {e}; reconnecting"); break; }
                    None => { tracing::warn!("consumer ended; reconnecting"); break; }
                },
                Some((delivery, slot, lane)) = batch_jobs.recv() => {
                    let (shared, run) = (shared.clone(), slots.batch_run());
                    tasks.spawn(async move {
                        handle(&shared, delivery, lane, Some(run.give_way.clone())).await;
                        drop(run);
                        drop(slot);
                    });
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => {
                    tracing::info!("stopping: no new jobs; waiting up to {:?} for {} running builds", shared.cfg.grace, tasks.len());
                    let _ = ch.basic_cancel(conn_name.clone().into(), BasicCancelOptions::default()).await;
                    let _ = tokio::time::timeout(shared.cfg.grace, async { while tasks.join_next().await.is_some() {} }).await;
                    depth_task.abort();
                    // Jobs still unacked go back to the queue when the connection closes.
                    let _ = tokio::time::timeout(CLOSE, conn.close(200, "worker stopping".into())).await;
                    break 'outer;
                }
            }
        }
        depth_task.abort();
        shared.metrics.connected.store(false, Ordering::Relaxed);
        let _ = tokio::time::timeout(CLOSE, conn.close(200, "reconnecting".into())).await;
    }
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

/// Every 5 s: the jobs queue's depth for the metrics, and whether the consumer is stalled
/// (jobs ready, a slot free, no delivery for [`CONSUMER_STALL`]).
fn watch_depth(
    ch: lapin::Channel,
    shared: Arc<Shared>,
    last_delivery: Arc<std::sync::Mutex<Instant>>,
    stalled: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(q) = transport::look(&ch, &shared.cfg.topology.jobs()).await {
                shared.metrics.queue_depth.store(i64::from(q.message_count()), Ordering::Relaxed);
                let free = shared.metrics.in_flight.load(Ordering::Relaxed) < i64::from(shared.cfg.concurrency);
                let quiet = last_delivery.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed();
                if q.message_count() > 0 && free && quiet > CONSUMER_STALL {
                    stalled.notify_one();
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
}

/// Clones left by workers that died mid-build go, at start and at exit.
fn sweep_clones(when: &str) {
    let removed = crate::edge::source::sweep_stale_clones();
    if removed > 0 {
        tracing::info!("removed {removed} clones left by stopped builds ({when})");
    }
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker will redeliver, and the redelivery is idempotent.
        tracing::warn!("ack failed ({e}); the job will be redelivered and recognised");
    }
}

/// Handles one delivery; returns once it is acked, or left for redelivery. Batch work watches
/// `give_way`: a user's deployment wants its slot.
async fn handle(shared: &Arc<Shared>, delivery: Delivery, lane: Lane, give_way: Option<watch::Receiver<bool>>) {
    let attempt = transport::header_u32(&delivery.properties, ATTEMPT_HEADER).unwrap_or(1);
    let job = match CheckedJob::parse(&delivery.data) {
        Ok(j) => j,
        Err(error) => {
            // A poison message becomes a failed-jobs entry, never a crash loop.
            tracing::warn!("rejected a message: {error}");
            let entry = FailedJob::rejected(&delivery.data, &error, attempt, &shared.cfg.worker_id);
            if publish_failed(shared, &entry).await.is_ok() {
                shared.metrics.job_finished(lane, JobOutcome::Rejected.label());
                ack(&delivery).await;
            }
            return;
        }
    };
    // The last delivery the broker allows: every earlier one ended with its worker gone. Rather
    // than let the broker dead-letter it unreported, the job fails here, with a reason.
    let delivered_before = transport::header_u32(&delivery.properties, DELIVERY_COUNT_HEADER).unwrap_or(0);
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
    if let Some(ts) = delivery.properties.timestamp() {
        let lag = time::OffsetDateTime::now_utc().unix_timestamp() - i64::try_from(*ts).unwrap_or(i64::MAX);
        shared.metrics.queue_lag(lag.max(0) as f64);
    }
    shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    // A job seen for the first time cannot have been built yet, so the registry is not asked;
    // but a roll-out may publish the same job again by design. (Another copy of a job published
    // twice is built again from BuildKit's cache and reported once.)
    let props = &delivery.properties;
    let may_be_built = job.rollout.is_some()
        || delivery.redelivered
        || delivered_before > 0
        || attempt > 1
        || props.headers().as_ref().is_some_and(|h| h.inner().contains_key("x-death"))
        || transport::header_u64(props, DUE_HEADER).is_some();
    // Another copy may still run without its lease only if this delivery came again after a
    // lost connection, or waited while a copy held the lease.
    let may_have_copy =
        delivery.redelivered || delivered_before > 0 || transport::has_header(props, BEHIND_COPY_HEADER);
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

/// Gives a delivery back for another try. The consuming connection may be alive while the
/// publishing or lease connection is not (their node went): an unacked delivery would then
/// wait for the consumer's end. A moment first, so a broker that is away is not asked in a loop;
/// a channel that is gone returns it by itself.
async fn requeue_delivery(delivery: &Delivery) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
}
