//! One delivered job, from its operation's lease to its published outcome: built (or rebased,
//! for a roll-out), or reported once when a redelivery finds it built already; its log lines
//! forwarded to the logs exchange on the way.

use super::log_forwarder::log_forwarder;
use super::published::{publish_event, publish_failed};
use super::Shared;
use crate::core::image_ref::ImageRef;
use crate::core::labels;
use crate::core::request::BuildRequest;
use crate::core::result::PriorBuild;
use crate::edge::rebase::RebaseOutcome;
use crate::error::BuildError;
use crate::log::DeploymentLog;
use crate::pipeline::{self, Settings};
use crate::queue::error::QueueError;

use crate::queue::ledger::{Built, Ledger, ServiceRecord};
use crate::queue::outcome::{Action, JobOutcome, DEFER};
use crate::queue::transport::lease::{Lease, NoLease};
use crate::queue::transport::{waiting, Lane, Outgoing};
use crate::queue::wire::checked::CheckedJob;
use crate::queue::wire::job::{BuildJob, FailedJob, JobEvent, JobStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One delivered job: the handler a worker runs for it, a step a method.
pub(super) struct Deployment<'a> {
    pub(super) shared: &'a Arc<Shared>,
    pub(super) job: &'a CheckedJob,
    /// Which attempt this is (1 for the first delivery; a retry's comes in its header).
    pub(super) attempt: u32,
    /// Whether an earlier delivery may have built it already (so the registry is asked), or
    /// ended it (so the history is asked before an outcome is published).
    pub(super) may_be_built: bool,
    /// Whether another copy of the operation may still run without its lease: this delivery
    /// came again after a lost connection, or waited while a copy held the lease. Before it
    /// reports, it waits for that copy to end (`Builders`).
    pub(super) may_have_copy: bool,
    /// The queue it came from, and goes back to when it waits.
    pub(super) lane: Lane,
    /// Batch work: turns true when a user's deployment wants its slot.
    pub(super) give_way: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Deployment<'_> {
    /// Builds the job under its operation's lease and publishes its outcome. Ok when the job
    /// may be acked. While another build of the operation runs, the job waits in a delay queue.
    pub(super) async fn run(&self) -> Result<JobOutcome, QueueError> {
        let lease = match self.shared.leases.acquire(&self.job.operation_id).await {
            Ok(lease) => lease,
            Err(NoLease::Held) => {
                tracing::info!("job {}: its operation is being built elsewhere; it waits {DEFER:?}", self.job.job_id);
                self.requeue(self.attempt, DEFER, true).await?;
                return Ok(JobOutcome::Deferred);
            }
            Err(NoLease::Broker(e)) => return Err(e.within("no lease")),
        };
        // In submission order: an earlier deployment of the service that has not ended goes
        // first, whichever reached a worker first.
        if let Some(first) = self.shared.order.ahead_of(&self.job.operation_id, self.lane).await {
            let service = crate::core::shown::cut(&self.job.service.name);
            return self
                .wait_behind(
                    lease,
                    &format!("deployment {first} of service {service} was submitted before it and has not ended"),
                )
                .await;
        }
        // One deployment per service at a time: another one's waits and comes back (the service
        // record, kept by submission time, settles which one ends current).
        let service = match self.shared.leases.acquire_service(&self.job.service.name).await {
            Ok(service) => service,
            Err(NoLease::Broker(e)) => {
                self.shared.leases.release(lease).await;
                return Err(e.within("no service lease"));
            }
            Err(NoLease::Held) => {
                let service = crate::core::shown::cut(&self.job.service.name);
                return self.wait_behind(lease, &format!("another deployment of service {service} is running")).await;
            }
        };
        let outcome = self.leased(&lease).await;
        self.shared.leases.release(service).await;
        self.shared.leases.release(lease).await;
        outcome
    }

    /// Gives the operation's lease back and sends the job to wait [`DEFER`] and come back:
    /// `why` says what it waits for.
    async fn wait_behind(&self, lease: Lease, why: &str) -> Result<JobOutcome, QueueError> {
        self.shared.leases.release(lease).await;
        tracing::info!("job {}: {why}; it waits {DEFER:?}", self.job.job_id);
        self.requeue(self.attempt, DEFER, self.may_have_copy).await?;
        Ok(JobOutcome::Deferred)
    }

    /// With the lease held. Nothing is reported once the lease is lost: another worker may
    /// already be building the operation.
    async fn leased(&self, lease: &Lease) -> Result<JobOutcome, QueueError> {
        let ledger = Ledger::new(&self.shared.registry, &self.shared.cfg.settings.registry);
        // Registered before the marker is read, so a cancel request is heard either way.
        let mut registration = self.shared.running.register(&self.job.operation_id);
        let copy = Copy { token: registration.token.clone(), began: Instant::now() };
        if ledger.cancelled(&self.job.operation_id).await {
            return self.end_cancelled(&ledger, &copy, false).await;
        }
        if let Some(outcome) = self.report_if_built(&ledger, lease, &copy).await? {
            return Ok(outcome);
        }
        // A copy that came again after its worker stopped or was lost mid-build continues a
        // deployment whose log has begun: asked before this copy says it started too.
        let (cfg, since) = (&self.shared.cfg, super::copies::history_since(self.job));
        let resumed = self.may_have_copy
            && self.shared.order.started(&self.job.operation_id, &cfg.brokers, &cfg.topology, since).await;
        // The service's record, read once under its lease: the image a build of the same inputs
        // takes again, and what decides whether this deployment's replaces it.
        let (started, record) = tokio::join!(
            self.publish(JobEvent::new(self.job, JobStatus::InProgress), Some(self.attempt)),
            ledger.record(&self.job.service.name)
        );
        started?;
        // A cancel drops the build: its solve is cancelled with its connection to BuildKit,
        // its clone removed, and nothing reaches the target tag.
        let action = tokio::select! {
            action = Box::pin(self.build(record.as_ref(), resumed)) => action,
            () = registration.cancelled() => return self.end_cancelled(&ledger, &copy, true).await,
            () = asked_to_give_way(self.give_way.clone()) => return self.step_aside().await,
        };
        if let Err(lost) = self.still_held(lease).await {
            // The redelivery that reports this build waits for this mark, so its followers hear
            // every line of the log (published by now, confirmed) before the outcome.
            ledger.mark_logged(&self.job.operation_id).await;
            return Err(lost);
        }
        self.report(&ledger, action, record.as_ref(), &copy).await
    }

    /// Ends the deployment as cancelled: its log says so, then one CANCELLED event (none if the
    /// deployment ended already: `cancel` ends a queued one itself).
    async fn end_cancelled(
        &self,
        ledger: &Ledger<'_>,
        copy: &Copy,
        while_building: bool,
    ) -> Result<JobOutcome, QueueError> {
        if self.ended_already(ledger, copy, true).await {
            return Ok(JobOutcome::Duplicate);
        }
        let (sink, forwarder) = log_forwarder(self.shared.clone(), self.job.operation_id.clone());
        let log = DeploymentLog::new(&self.job.operation_id, vec![Arc::new(sink)]);
        pipeline::Narration(&log).cancelled(&self.job.operation_id, while_building);
        drop(log);
        let _ = forwarder.await;
        let worker = self.shared.cfg.worker_id.as_str();
        let cancelled = JobEvent::cancelled(&JobEvent::new(self.job, JobStatus::InProgress), Some(worker));
        self.publish(cancelled, Some(self.attempt)).await?;
        Ok(JobOutcome::Cancelled)
    }

    /// Batch work stopped for a user's deployment: its log says so, and the job goes back to
    /// the batch queue as it came (the same attempt), to start again when a slot is free.
    async fn step_aside(&self) -> Result<JobOutcome, QueueError> {
        let (sink, forwarder) = log_forwarder(self.shared.clone(), self.job.operation_id.clone());
        let log = DeploymentLog::new(&self.job.operation_id, vec![Arc::new(sink)]);
        pipeline::Narration(&log).gave_way();
        drop(log);
        let _ = forwarder.await;
        let payload = QueueError::json("the job", self.job.wire())?;
        let batch = self.shared.cfg.topology.batch();
        let back = Outgoing {
            message_id: Some(&self.job.job_id),
            attempt: Some(self.attempt),
            lane: Lane::Batch,
            behind_copy: self.may_have_copy,
            ..Outgoing::new("", &batch, &payload)
        };
        self.shared.publisher.publish(&back).await?;
        tracing::info!("job {}: gave its slot to a user's deployment; back in the batch queue", self.job.job_id);
        Ok(JobOutcome::GaveWay)
    }

    /// Runs the build with its log going to the logs exchange; what to do with its result.
    async fn build(&self, record: Option<&ServiceRecord>, resumed: bool) -> Action<Finished> {
        let (shared, job, attempt) = (self.shared, self.job, self.attempt);
        let (sink, forwarder) = log_forwarder(shared.clone(), job.operation_id.clone());
        let log = DeploymentLog::new(&job.operation_id, vec![Arc::new(sink)]);
        let began = Instant::now();
        let this = pipeline::Attempt { number: attempt, of: shared.cfg.retry.max_attempts, resumed };
        let (current, prior) = self.current_build(record);
        let result = build(&shared.cfg.settings, job, current, prior, &log, this).await;
        tracing::debug!("job {}: build returned after {:.1}s", job.job_id, began.elapsed().as_secs_f64());
        let action = shared.cfg.retry.decide(result, attempt);
        if let Action::Retry { delay, error, .. } = &action {
            pipeline::Narration(&log).attempt_failed(this, error, *delay);
        }
        drop(log);
        let confirming = Instant::now();
        let _ = forwarder.await;
        tracing::debug!("job {}: its log confirmed {:.1}s after", job.job_id, confirming.elapsed().as_secs_f64());
        shared.metrics.build_seconds(began.elapsed().as_secs_f64());
        action
    }

    /// The service's current image from its record, which a build of the same inputs takes
    /// again (the job's own tag is new), and what the record says of the build that made it (a
    /// redeploy of its inputs takes it before fetching). None when reuse is off.
    fn current_build(&self, record: Option<&ServiceRecord>) -> (Option<ImageRef>, Option<PriorBuild>) {
        let settings = &self.shared.cfg.settings;
        let Some(record) = record.filter(|_| settings.image_reuse && !settings.no_cache) else { return (None, None) };
        let Ok(image) = ImageRef::parse(&record.image) else { return (None, None) };
        // A roll-out changes the runtime: never a redeploy of the same inputs.
        (Some(image), record.build.clone().filter(|_| self.job.rollout.is_none()))
    }

    /// Publishes what the build came to: success (once), a retry, or a failure.
    async fn report(
        &self,
        ledger: &Ledger<'_>,
        action: Action<Finished>,
        record: Option<&ServiceRecord>,
        copy: &Copy,
    ) -> Result<JobOutcome, QueueError> {
        let (shared, job, attempt) = (self.shared, self.job, self.attempt);
        match action {
            Action::Succeed(finished) => {
                // The same job may have been redelivered and finished elsewhere meanwhile (this
                // worker's connection dropped mid-build): report a success once.
                if self.ended_already(ledger, copy, false).await {
                    return Ok(JobOutcome::Duplicate);
                }
                let reporting = Instant::now();
                let (mut event, mut image) = match &finished {
                    Finished::Built(r) => (JobEvent::succeeded(job, r), r.image.clone()),
                    Finished::Rebased(r) => (JobEvent::rebased(job, r), r.image.to_string()),
                };
                // Another copy of the operation, waited for above, may have pushed its index of
                // the same image to the tag after this one: what is reported is what the tag holds.
                if let Some((held, built)) = self.held_at_target(ledger, &image).await {
                    tracing::info!(
                        "job {}: its tag holds another copy's index of the image; reporting {held}",
                        job.job_id
                    );
                    // What that copy built from (a branch may have moved between the copies).
                    event.commit = built.labels.get(labels::OCI_REVISION).cloned().or(event.commit);
                    event.image = Some(held.clone());
                    image = held;
                }
                // Recorded before it is reported: whoever sees the success finds the record.
                let prior = match &finished {
                    Finished::Built(r) => r.prior.as_ref(),
                    Finished::Rebased(_) => None,
                };
                record_service(ledger, job, &image, record, prior).await;
                self.publish(event, Some(attempt)).await?;
                super::failpoint::exit_at(super::failpoint::AFTER_OUTCOME);
                ledger.mark_reported(&job.operation_id).await;
                if let Finished::Built(result) = &finished {
                    let p = result.phases;
                    for (phase, secs) in
                        [("fetch", p.fetch), ("plan", p.plan), ("solve", p.solve), ("export", p.export)]
                    {
                        shared.metrics.phase_seconds(phase, secs);
                    }
                }
                shared.metrics.phase_seconds("report", reporting.elapsed().as_secs_f64());
                Ok(JobOutcome::Succeeded)
            }
            Action::Retry { next_attempt, delay, error } => {
                self.requeue(next_attempt, delay, self.may_have_copy).await?;
                let mut ev = JobEvent::new(job, JobStatus::Queued);
                ev.batch = self.lane == Lane::Batch;
                ev.attempt = Some(next_attempt);
                ev.error = Some((&error).into());
                publish_event(shared, &ev).await?;
                Ok(JobOutcome::Retried)
            }
            Action::Fail(error) => {
                // A copy of the job that ended meanwhile (its success reported, or any outcome
                // in the history) has the last word: an operation never reports a success and a
                // failure. A failure is not marked, so a roll-out run again builds its failed
                // services again.
                if self.ended_already(ledger, copy, false).await {
                    return Ok(JobOutcome::Duplicate);
                }
                let worker = shared.cfg.worker_id.as_str();
                publish_failed(shared, &FailedJob::of_job(job, &error, attempt, worker)).await?;
                self.publish(JobEvent::failed(job, &error), Some(attempt)).await?;
                super::failpoint::exit_at(super::failpoint::AFTER_OUTCOME);
                Ok(JobOutcome::Failed(error.class))
            }
        }
    }

    /// Publishes `event` as this worker's, on `attempt`.
    async fn publish(&self, event: JobEvent, attempt: Option<u32>) -> Result<(), QueueError> {
        publish_event(self.shared, &event.by(&self.shared.cfg.worker_id, attempt)).await
    }

    /// Sends the job to wait `delay`, to come back as attempt `attempt` (`behind_copy`: while
    /// another copy of its operation may run).
    async fn requeue(&self, attempt: u32, delay: Duration, behind_copy: bool) -> Result<(), QueueError> {
        let (shared, job) = (self.shared, self.job);
        let payload = QueueError::json("the job", job.wire())?;
        let waiting =
            waiting::Waiting { payload: &payload, job_id: &job.job_id, attempt, lane: self.lane, behind_copy };
        waiting::send_to_wait(&shared.publisher, &shared.cfg.topology, &waiting, delay).await
    }

    pub(super) async fn still_held(&self, lease: &Lease) -> Result<(), QueueError> {
        if self.shared.leases.holds(lease).await {
            Ok(())
        } else {
            Err(QueueError::LostLease { job_id: self.job.job_id.clone() })
        }
    }
}

/// Resolves when batch work is asked to give way (never, for a user's deployment).
async fn asked_to_give_way(give_way: Option<tokio::sync::watch::Receiver<bool>>) {
    if let Some(mut asked) = give_way {
        if asked.wait_for(|asked| *asked).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await;
}

/// Keeps the service's record (its current image and the job that made it) for roll-outs.
/// Best effort: a roll-out without it does not see the service, which it says.
pub(super) async fn record_service(
    ledger: &Ledger<'_>,
    job: &CheckedJob,
    image: &str,
    current: Option<&ServiceRecord>,
    build: Option<&PriorBuild>,
) {
    if let Err(e) = ledger.record_service(job, image, current, build).await {
        tracing::warn!("job {}: could not record service {}'s image ({e})", job.job_id, job.service.name);
    }
}

/// What a job ended with: an image built, or (a roll-out) the service's image rebased.
pub(super) enum Finished {
    Built(Box<crate::core::result::BuildResult>),
    Rebased(Box<crate::edge::rebase::Rebased>),
}

/// Runs the job's build within its deadline, which bounds the build's time limit. A roll-out
/// job rebases the service's image when it can, and builds it otherwise.
pub(super) async fn build(
    settings: &Settings,
    job: &CheckedJob,
    current_image: Option<ImageRef>,
    prior: Option<PriorBuild>,
    log: &DeploymentLog,
    attempt: pipeline::Attempt,
) -> Result<Finished, BuildError> {
    let mut settings = settings.clone();
    if let Some(d) = job.deadline {
        let now = time::OffsetDateTime::now_utc();
        if d <= now {
            let given = job.wire().deadline.as_deref().unwrap_or("");
            return Err(BuildError::user(format!("the job's deadline {given} passed before it could start")));
        }
        settings.timeout = settings.timeout.min((d - now).unsigned_abs());
    }
    if let Some(rollout) = &job.rollout {
        log.apprunner(format!(
            "Runtime roll-out of service {} to {} {}.",
            job.service.name, rollout.runtime, rollout.to_version
        ));
        let from = job.rollout_from.as_ref().unwrap_or(&job.target);
        match pipeline::rebase(&settings, from, &rollout.to_version, &job.target, &job.operation_id, log).await? {
            RebaseOutcome::Moved(rebased) => return Ok(Finished::Rebased(Box::new(rebased))),
            RebaseOutcome::Refused(_) => log.apprunner("Building the service again instead."),
        }
    }
    let request = BuildRequest { current_image, prior, ..job.request() };
    pipeline::run_attempt(&settings, &request, log, attempt).await.map(|r| Finished::Built(Box::new(r)))
}

/// This copy of a deployment: its token (by which other workers tell it from a copy they run)
/// and when it took the lease.
pub(super) struct Copy {
    pub(super) token: String,
    pub(super) began: Instant,
}

/// The SUCCEEDED event of an operation whose image is already at its target.
pub(super) fn already_built(job: &BuildJob, target: &ImageRef, built: &Built) -> JobEvent {
    let mut ev = JobEvent::new(job, JobStatus::Succeeded);
    ev.image = Some(target.with_digest(&built.digest));
    ev.runtime = built.labels.get(labels::RUNTIME).cloned();
    ev.runtime_version = built.labels.get(labels::RUNTIME_VERSION).cloned();
    ev.commit = built.labels.get(labels::OCI_REVISION).cloned();
    ev
}
