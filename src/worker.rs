//! `apprunner-build worker`: build jobs from RabbitMQ, results and logs back, nothing lost.
//!
//! A job is acked only after its outcome is published (with confirms): a SUCCEEDED or FAILED
//! event, plus a failed-jobs entry for failures. Transient faults go to a delay queue and come
//! back, a bounded number of times. A redelivered job whose image already exists for the same
//! operation is not built again, and its success is reported once.

use crate::build::{self, Settings};
use crate::error::{BuildError, ErrorClass};
use crate::image;
use crate::job::{now_rfc3339, BuildJob, FailedJob, JobEvent, JobStatus};
use crate::log::{DeploymentLog, LogLine, LogSink};
use crate::metrics::Metrics;
use crate::queue::{self, Outgoing, Publisher, Topology, ATTEMPT_HEADER};
use crate::registry::{ImageRef, Registry};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub amqp_uri: String,
    pub topology: Topology,
    /// Builds at once (the consumer prefetch).
    pub concurrency: u16,
    /// Attempts a job gets when it keeps meeting transient faults.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each later one.
    pub retry_delay: Duration,
    /// How long running builds may go on after SIGTERM.
    pub grace: Duration,
    pub worker_id: String,
    pub settings: Settings,
}

/// Where a marker says "this operation's success was published"; see `handle`.
const REPORTED_REPOSITORY: &str = "apprunner-build/reported";

struct Shared {
    cfg: WorkerConfig,
    publisher: Publisher,
    registry: Registry,
    metrics: Arc<Metrics>,
}

/// Runs until `shutdown` turns true: consume, reconnecting with backoff whenever the broker
/// connection is lost; then let running builds finish (up to the grace period).
pub async fn run(cfg: WorkerConfig, metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        publisher: Publisher::new(&cfg.amqp_uri, &format!("apprunner-build-worker-{}-publisher", cfg.worker_id)),
        registry: cfg.settings.registry_client(),
        metrics,
        cfg,
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = Duration::from_millis(500);
    'outer: while !*shutdown.borrow() {
        let conn_name = format!("apprunner-build-worker-{}", shared.cfg.worker_id);
        let session = async {
            let conn = queue::connect(&shared.cfg.amqp_uri, &conn_name).await?;
            let ch = conn.create_channel().await?;
            shared.cfg.topology.declare(&ch).await?;
            ch.basic_qos(shared.cfg.concurrency, BasicQosOptions::default()).await?;
            let consumer =
                ch.basic_consume(shared.cfg.topology.jobs().into(), conn_name.clone().into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
            lapin::Result::Ok((conn, ch, consumer))
        }
        .await;
        let (conn, ch, mut consumer) = match session {
            Ok(s) => s,
            Err(e) => {
                shared.metrics.connected.store(false, Ordering::Relaxed);
                tracing::warn!("broker unreachable ({e}); retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => break 'outer,
                }
                backoff = (backoff * 2).min(Duration::from_secs(15));
                continue;
            }
        };
        backoff = Duration::from_millis(500);
        shared.metrics.connected.store(true, Ordering::Relaxed);
        tracing::info!("consuming {} with up to {} builds at once", shared.cfg.topology.jobs(), shared.cfg.concurrency);
        let depth_ch = ch.clone();
        let depth_shared = shared.clone();
        let depth_task = tokio::spawn(async move {
            loop {
                let passive = QueueDeclareOptions { passive: true, ..Default::default() };
                if let Ok(q) = depth_ch.queue_declare(depth_shared.cfg.topology.jobs().into(), passive, FieldTable::default()).await {
                    depth_shared.metrics.queue_depth.store(q.message_count() as i64, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        loop {
            tokio::select! {
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let shared = shared.clone();
                        tasks.spawn(async move { handle(&shared, delivery).await });
                    }
                    Some(Err(e)) => { tracing::warn!("consumer failed: {e}; reconnecting"); break; }
                    None => { tracing::warn!("consumer ended; reconnecting"); break; }
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => {
                    tracing::info!("stopping: no new jobs; waiting up to {:?} for {} running builds", shared.cfg.grace, tasks.len());
                    let _ = ch.basic_cancel(conn_name.clone().into(), BasicCancelOptions::default()).await;
                    let _ = tokio::time::timeout(shared.cfg.grace, async { while tasks.join_next().await.is_some() {} }).await;
                    depth_task.abort();
                    // Jobs still unacked go back to the queue when the connection closes.
                    let _ = conn.close(200, "worker stopping".into()).await;
                    break 'outer;
                }
            }
        }
        depth_task.abort();
        shared.metrics.connected.store(false, Ordering::Relaxed);
        let _ = conn.close(200, "reconnecting".into()).await;
    }
    shared.publisher.close().await;
    Ok(())
}

/// Log lines go to the logs exchange in order, pipelined; `finish` waits for every confirm.
struct AmqpLogSink {
    tx: tokio::sync::mpsc::UnboundedSender<LogLine>,
}

impl LogSink for AmqpLogSink {
    fn line(&self, line: &LogLine) {
        let _ = self.tx.send(line.clone());
    }
}

fn log_forwarder(shared: Arc<Shared>, operation_id: String) -> (AmqpLogSink, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<LogLine>();
    let task = tokio::spawn(async move {
        let exchange = shared.cfg.topology.logs();
        let key = Topology::log_key(&operation_id);
        let mut pending = Vec::new();
        while let Some(line) = rx.recv().await {
            let payload = serde_json::to_vec(&line).expect("json");
            match shared.publisher.publish_pipelined(&Outgoing::new(&exchange, &key, &payload)).await {
                Ok(confirm) => pending.push(confirm),
                // A lost line is retried once on a fresh connection, confirmed.
                Err(_) => {
                    let _ = shared.publisher.publish(&Outgoing::new(&exchange, &key, &payload)).await;
                }
            }
            if pending.len() >= 256 {
                for c in pending.drain(..) {
                    let _ = c.await;
                }
            }
        }
        for c in pending {
            let _ = c.await;
        }
    });
    (AmqpLogSink { tx }, task)
}

async fn publish_event(shared: &Shared, event: &JobEvent) -> Result<(), String> {
    let payload = serde_json::to_vec(event).expect("json");
    let key = Topology::event_key(&event.operation_id, event.status.key());
    shared.publisher.publish(&Outgoing { message_id: Some(&event.job_id), ..Outgoing::new(&shared.cfg.topology.events(), &key, &payload) }).await
}

async fn publish_failed(shared: &Shared, entry: &FailedJob) -> Result<(), String> {
    let payload = serde_json::to_vec(entry).expect("json");
    let failed = shared.cfg.topology.failed();
    shared.publisher.publish(&Outgoing::new("", &failed, &payload)).await
}

async fn ack(delivery: &Delivery) {
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        // The channel is gone: the broker will redeliver, and the redelivery is idempotent.
        tracing::warn!("ack failed ({e}); the job will be redelivered and recognised");
    }
}

/// Handles one delivery; returns once it is acked, or left for redelivery.
async fn handle(shared: &Arc<Shared>, delivery: Delivery) {
    let attempt = queue::header_u32(&delivery.properties, ATTEMPT_HEADER).unwrap_or(1);
    let job = match BuildJob::parse(&delivery.data) {
        Ok(j) => j,
        Err(reason) => {
            // A poison message becomes a failed-jobs entry, never a crash loop.
            tracing::warn!("rejected a message: {reason}");
            let entry = FailedJob {
                reason,
                class: ErrorClass::User,
                failed_at: now_rfc3339(),
                job: None,
                raw_message: Some(String::from_utf8_lossy(&delivery.data).chars().take(64 * 1024).collect()),
                runtime: None,
                attempts: attempt,
                worker: Some(shared.cfg.worker_id.clone()),
            };
            if publish_failed(shared, &entry).await.is_ok() {
                shared.metrics.job_finished("rejected");
                ack(&delivery).await;
            }
            return;
        }
    };
    if let Some(ts) = delivery.properties.timestamp() {
        let lag = time::OffsetDateTime::now_utc().unix_timestamp() - *ts as i64;
        shared.metrics.queue_lag(lag.max(0) as f64);
    }
    shared.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let done = run_job(shared, &job, attempt).await;
    shared.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    match done {
        Ok(outcome) => {
            shared.metrics.job_finished(outcome);
            ack(&delivery).await;
        }
        Err(e) => tracing::warn!("job {}: could not publish its outcome ({e}); leaving it for redelivery", job.job_id),
    }
}

/// Builds one job and publishes its outcome. Ok(outcome label) when the job may be acked.
async fn run_job(shared: &Arc<Shared>, job: &BuildJob, attempt: u32) -> Result<&'static str, String> {
    let target = ImageRef::parse(&job.target_image()).map_err(|e| e.to_string())?;
    let marker = ImageRef {
        registry: shared.cfg.settings.registry.clone(),
        repository: REPORTED_REPOSITORY.into(),
        tag: Some(marker_tag(&job.operation_id)),
        digest: None,
    };

    // Redelivered after the image was pushed: report it once, never build it twice.
    if let Ok(Some((digest, labels))) = image::existing(&shared.registry, &target).await {
        if labels.get("dev.apprunner-build.operation-id") == Some(&job.operation_id) {
            if let Ok(Some(_)) = image::existing(&shared.registry, &marker).await {
                tracing::info!("job {} was built and reported already; acking the redelivery", job.job_id);
                return Ok("duplicate");
            }
            let mut ev = JobEvent::new(job, JobStatus::Succeeded);
            ev.image = Some(target.with_digest(&digest));
            ev.runtime = labels.get("dev.apprunner-build.runtime").cloned();
            ev.runtime_version = labels.get("dev.apprunner-build.runtime-version").cloned();
            ev.commit = labels.get("org.opencontainers.image.revision").cloned();
            ev.worker = Some(shared.cfg.worker_id.clone());
            publish_event(shared, &ev).await?;
            mark_reported(shared, &marker, job).await;
            return Ok("succeeded");
        }
    }

    let mut started = JobEvent::new(job, JobStatus::InProgress);
    started.worker = Some(shared.cfg.worker_id.clone());
    started.attempt = Some(attempt);
    publish_event(shared, &started).await?;

    let (sink, forwarder) = log_forwarder(shared.clone(), job.operation_id.clone());
    let log = DeploymentLog::new(&job.operation_id, vec![Arc::new(sink)]);
    let mut settings = shared.cfg.settings.clone();
    let began = Instant::now();
    let result = match job.deadline() {
        Some(d) if d <= time::OffsetDateTime::now_utc() => {
            Err(BuildError::user(format!("the job's deadline {} passed before it could start", job.deadline.as_deref().unwrap_or(""))))
        }
        deadline => {
            // The deadline bounds the build's time limit.
            if let Some(d) = deadline {
                settings.timeout = settings.timeout.min((d - time::OffsetDateTime::now_utc()).unsigned_abs());
            }
            build::run(&settings, &job.request(), &log).await
        }
    };
    // Exponential backoff: the first retry after retry_delay, each later one twice as long.
    let delay = shared.cfg.retry_delay * 2u32.saturating_pow(attempt.clamp(1, 16) - 1);
    if let Err(e) = &result {
        if e.class == ErrorClass::Transient && attempt < shared.cfg.max_attempts {
            log.apprunner(format!("Transient fault on attempt {attempt} of {}: {}. Retrying in {}s.", shared.cfg.max_attempts, e.message, delay.as_secs_f32()));
        }
    }
    drop(log);
    let _ = forwarder.await;
    shared.metrics.build_seconds(began.elapsed().as_secs_f64());

    match result {
        Ok(outcome) => {
            // The same job may have been redelivered and finished elsewhere meanwhile (this
            // worker's connection dropped mid-build): report a success once.
            if let Ok(Some(_)) = image::existing(&shared.registry, &marker).await {
                return Ok("duplicate");
            }
            let mut ev = JobEvent::succeeded(job, &outcome);
            ev.worker = Some(shared.cfg.worker_id.clone());
            ev.attempt = Some(attempt);
            publish_event(shared, &ev).await?;
            mark_reported(shared, &marker, job).await;
            Ok("succeeded")
        }
        Err(e) if e.class == ErrorClass::Transient && attempt < shared.cfg.max_attempts => {
            let ch = shared.publisher.channel().await.map_err(|e| e.to_string())?;
            let retry_queue = shared.cfg.topology.declare_retry(&ch, delay).await.map_err(|e| e.to_string())?;
            let payload = serde_json::to_vec(job).expect("json");
            let next = attempt + 1;
            shared.publisher.publish(&Outgoing { message_id: Some(&job.job_id), attempt: Some(next), ..Outgoing::new("", &retry_queue, &payload) }).await?;
            let mut ev = JobEvent::new(job, JobStatus::Queued);
            ev.attempt = Some(next);
            ev.error = Some((&e).into());
            publish_event(shared, &ev).await?;
            Ok("retried")
        }
        Err(e) => {
            let mut ev = JobEvent::failed(job, &e);
            ev.worker = Some(shared.cfg.worker_id.clone());
            ev.attempt = Some(attempt);
            let reason = if e.class == ErrorClass::Transient { format!("{} (gave up after {attempt} attempts)", e.message) } else { e.message.clone() };
            let entry = FailedJob {
                reason,
                class: e.class,
                failed_at: now_rfc3339(),
                runtime: runtime_of(job),
                job: Some(job.clone()),
                raw_message: None,
                attempts: attempt,
                worker: Some(shared.cfg.worker_id.clone()),
            };
            publish_failed(shared, &entry).await?;
            publish_event(shared, &ev).await?;
            Ok(match e.class {
                ErrorClass::User => "failed",
                ErrorClass::Transient => "failed_transient",
                ErrorClass::Internal => "failed_internal",
            })
        }
    }
}

/// The runtime a job asked for, when it can be told without fetching the source (API values).
fn runtime_of(job: &BuildJob) -> Option<String> {
    let values = job.configuration.values.as_ref()?;
    let obj = values.get("CodeConfigurationValues").unwrap_or(values).as_object()?;
    let rt = obj.iter().find(|(k, _)| k.eq_ignore_ascii_case("Runtime"))?.1.as_str()?;
    crate::catalog::RuntimeCatalog::builtin().lookup(rt).ok().map(|r| r.name.clone())
}

fn marker_tag(operation_id: &str) -> String {
    operation_id.chars().take(128).collect()
}

/// Records at the registry that this operation's success was published, so a redelivery of
/// the same job (a worker died between publishing and acking) is acked without a second report.
async fn mark_reported(shared: &Shared, marker: &ImageRef, job: &BuildJob) {
    let layer = match crate::source::pack_file("job", job.job_id.as_bytes(), 0o644) {
        Ok(l) => l,
        Err(_) => return,
    };
    let Ok(content) = image::push_content(&shared.registry, &marker.registry, &marker.repository, &layer).await else { return };
    let digest = content.pinned.rsplit('@').next().unwrap_or_default().to_string();
    if let Ok(Some(m)) = shared.registry.manifest(&marker.registry, &marker.repository, &digest).await {
        let _ = shared.registry.put_manifest(&marker.registry, &marker.repository, &marker.reference(), &m.bytes, &m.media_type).await;
    }
}
