//! What the worker does with a job once its build has ended: the queue's ack, retry and
//! dead-letter decisions, as a pure function of the result and the attempt.

use crate::core::result::BuildResult;
use crate::error::{BuildError, ErrorClass};
use std::time::Duration;

/// How long a job waits when another build of its operation is running: one of the waits
/// [`RetryPolicy::waits`] declares.
pub(crate) const DEFER: Duration = Duration::from_secs(5);

/// What to publish for a finished build.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<T = BuildResult> {
    /// Publish SUCCEEDED (once per operation) and ack.
    Succeed(T),
    /// Send the job to wait `delay`, then come back as attempt `next_attempt`; ack this one.
    Retry { next_attempt: u32, delay: Duration, error: BuildError },
    /// Publish FAILED and a failed-jobs entry; ack.
    Fail(BuildError),
}

/// How the worker's retries are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts a job gets when it keeps meeting transient faults.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each later one.
    pub first_delay: Duration,
}

impl Default for RetryPolicy {
    /// A worker's, unless it is told otherwise (`--max-attempts`, `--retry-delay`).
    fn default() -> Self {
        RetryPolicy { max_attempts: 4, first_delay: Duration::from_secs(10) }
    }
}

impl RetryPolicy {
    /// The delays a job of this policy can wait (each retry's backoff), and the wait for an
    /// operation being built elsewhere: the wait queues a worker moves jobs back from.
    pub fn waits(&self) -> Vec<Duration> {
        let mut delays: Vec<Duration> = (1..self.max_attempts).map(|a| self.delay_after(a)).collect();
        delays.push(DEFER);
        delays.sort();
        delays.dedup();
        delays
    }

    /// Exponential backoff: the first retry after `first_delay`, each later one twice as long.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        self.first_delay * 2u32.saturating_pow(attempt.clamp(1, 16) - 1)
    }

    /// A transient fault is retried while attempts are left; everything else is final.
    pub fn decide<T>(&self, result: Result<T, BuildError>, attempt: u32) -> Action<T> {
        match result {
            Ok(r) => Action::Succeed(r),
            Err(error)
                if (crate::pipeline::Attempt { number: attempt, of: self.max_attempts, resumed: false })
                    .will_retry(&error) =>
            {
                Action::Retry { next_attempt: attempt + 1, delay: self.delay_after(attempt), error }
            }
            Err(error) => Action::Fail(error),
        }
    }
}

/// How a delivery ended, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    /// A redelivery of an operation already built and reported.
    Duplicate,
    Retried,
    /// Another build of the operation was running; the job waits and comes back.
    Deferred,
    Failed(ErrorClass),
    /// Ended by `cancel`.
    Cancelled,
    /// Batch work stopped to give its slot to a user's deployment; back in the batch queue.
    GaveWay,
    /// Not a job at all.
    Rejected,
}

impl JobOutcome {
    pub fn label(self) -> &'static str {
        match self {
            JobOutcome::Succeeded => "succeeded",
            JobOutcome::Duplicate => "duplicate",
            JobOutcome::Retried => "retried",
            JobOutcome::Deferred => "deferred",
            JobOutcome::Failed(ErrorClass::User) => "failed",
            JobOutcome::Failed(ErrorClass::Transient) => "failed_transient",
            JobOutcome::Failed(ErrorClass::Internal) => "failed_internal",
            JobOutcome::Cancelled => "cancelled",
            JobOutcome::GaveWay => "gave_way",
            JobOutcome::Rejected => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 3, first_delay: Duration::from_secs(10) };

    #[test]
    fn transient_faults_retry_with_backoff_until_attempts_run_out() {
        let e = BuildError::transient("BuildKit unavailable");
        assert_eq!(
            POLICY.decide::<BuildResult>(Err(e.clone()), 1),
            Action::Retry { next_attempt: 2, delay: Duration::from_secs(10), error: e.clone() }
        );
        assert_eq!(
            POLICY.decide::<BuildResult>(Err(e.clone()), 2),
            Action::Retry { next_attempt: 3, delay: Duration::from_secs(20), error: e.clone() }
        );
        assert_eq!(POLICY.decide::<BuildResult>(Err(e.clone()), 3), Action::Fail(e));
    }

    #[test]
    fn the_users_mistakes_and_our_bugs_fail_at_once() {
        for e in [BuildError::user("bad yaml"), BuildError::internal("bug")] {
            assert_eq!(POLICY.decide::<BuildResult>(Err(e.clone()), 1), Action::Fail(e));
        }
    }

    #[test]
    fn backoff_does_not_overflow() {
        assert_eq!(POLICY.delay_after(100), Duration::from_secs(10) * 32768);
        assert_eq!(JobOutcome::Failed(ErrorClass::Transient).label(), "failed_transient");
    }
}
