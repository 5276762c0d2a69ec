//! What a copy of a deployment does about other copies of its operation (a redelivery while
//! the first copy may still run, or after it pushed or reported): wait while one still runs,
//! report an image another pushed once, and publish no second outcome.

use super::control::Builders;
use super::deployment::{already_built, record_service, Copy, Deployment};
use super::published::publish_event;
use crate::queue::error::QueueError;
use crate::queue::history;
use crate::queue::ledger::{Built, Ledger};
use crate::queue::outcome::JobOutcome;
use crate::queue::transport::lease::Lease;
use crate::queue::wire::checked::CheckedJob;
use std::time::Duration;

impl Deployment<'_> {
    /// A redelivery after the image was pushed: reported once, never built twice. A copy of an
    /// operation that ended whose image the tag no longer holds (a later deployment's is there)
    /// is not built again either: it would put its older image back over the later one.
    pub(super) async fn report_if_built(
        &self,
        ledger: &Ledger<'_>,
        lease: &Lease,
        copy: &Copy,
    ) -> Result<Option<JobOutcome>, QueueError> {
        let (job, worker) = (self.job, self.shared.cfg.worker_id.as_str());
        if !self.may_be_built {
            return Ok(None);
        }
        let target = &job.target;
        if ledger.built(target, &job.operation_id).await.is_none() {
            if self.ended_already(ledger, copy, true).await {
                tracing::info!("job {}: a copy of an operation that ended; acked, not built", job.job_id);
                return Ok(Some(JobOutcome::Duplicate));
            }
            return Ok(None);
        }
        if self.ended_already(ledger, copy, true).await {
            tracing::info!("job {} was built and reported already; acking the redelivery", job.job_id);
            return Ok(Some(JobOutcome::Duplicate));
        }
        // Read again: the copy waited for may have sealed its image (a new index) since.
        let Some(built) = ledger.built(target, &job.operation_id).await else { return Ok(None) };
        self.still_held(lease).await?;
        tracing::info!(
            "job {} (operation {}): built by an earlier delivery; reporting it",
            job.job_id,
            job.operation_id
        );
        // Its builder recorded the service before its event, unless it died first. A record
        // there may be a later deployment's: an old job redelivered must not replace it.
        if !ledger.has_record(&job.service.name).await {
            record_service(ledger, job, &target.with_digest(&built.digest), None, None).await;
        }
        publish_event(self.shared, &already_built(job, target, &built).by(worker, None)).await?;
        ledger.mark_reported(&job.operation_id).await;
        Ok(Some(JobOutcome::Succeeded))
    }

    /// When another copy may have run: the image at the job's tag (`repo@digest`, and what it
    /// says of itself), if it is an image of this operation other than `image`.
    pub(super) async fn held_at_target(&self, ledger: &Ledger<'_>, image: &str) -> Option<(String, Built)> {
        if !self.may_have_copy {
            return None;
        }
        let target = &self.job.target;
        let built = ledger.built(target, &self.job.operation_id).await?;
        let held = target.with_digest(&built.digest);
        (held != image).then_some((held, built))
    }

    /// Whether the operation ended before this copy could say how, asked before this copy
    /// publishes an outcome. First, should another copy still run (its lease lost with its
    /// broker connection), it waits for that copy to end: its log goes out before any outcome,
    /// so a follower hears every line. Then: a success marked at the registry, or (for a
    /// delivery that may be a repeat, or `history` set) an outcome in the history, which a
    /// copy that died between its outcome and its marker left there.
    pub(super) async fn ended_already(&self, ledger: &Ledger<'_>, copy: &Copy, history: bool) -> bool {
        let (shared, op) = (self.shared, self.job.operation_id.as_str());
        if self.may_have_copy {
            let name = format!("apprunner-build-worker-{}-ask", shared.cfg.worker_id);
            let builders = Builders { brokers: &shared.cfg.brokers, topology: &shared.cfg.topology, name };
            let done = || async { ledger.reported(op).await || ledger.logged(op).await };
            let limit = shared.cfg.settings.timeout + COPY_MAY_TAKE;
            if let Err(e) = builders.wait_until_alone(op, &copy.token, copy.began, limit, done).await {
                tracing::warn!("job {}: could not ask whether another copy still runs ({e})", self.job.job_id);
            }
        }
        if ledger.reported(op).await {
            return true;
        }
        if !(history || self.may_be_built) {
            return false;
        }
        let asked = history::outcome_of(&shared.cfg.brokers, &shared.cfg.topology, op, history_since(self.job));
        let asked = tokio::time::timeout(HISTORY_READ, asked)
            .await
            .unwrap_or_else(|_| Err(QueueError::broker_fault(format!("no answer within {}s", HISTORY_READ.as_secs()))));
        match asked {
            Ok(Some(ended)) => {
                tracing::info!(
                    "job {}: its operation ended {} already; nothing more is published",
                    self.job.job_id,
                    ended.status.key()
                );
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!("job {}: could not read the history ({e}); reporting", self.job.job_id);
                false
            }
        }
    }
}

/// How much longer than its build's time limit another copy is waited for: its seal, and its
/// log confirmed.
const COPY_MAY_TAKE: Duration = Duration::from_secs(300);

/// Longest a deployment reads the history for its operation's outcome (or its start).
pub(super) const HISTORY_READ: Duration = Duration::from_secs(60);

/// Where the history is read for the events of `job`: from a while before its submission, or
/// from the start for a job that does not say when it was submitted.
pub(super) fn history_since(job: &CheckedJob) -> history::From {
    job.submitted.map_or(history::From::First, |t| history::From::Time(t - CLOCKS_DIFFER))
}

/// How far before a job's `submitted_at` (the submitter's clock) its events are looked for in
/// the history (the broker's clock, by whole chunks).
const CLOCKS_DIFFER: Duration = Duration::from_secs(600);
