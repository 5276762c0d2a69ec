//! The queue's clients: `submit` (publish a job, optionally follow its log to the end),
//! `submit_all` (a roll-out's jobs, optionally gathering their outcomes) and `rebuild-failed`
//! (resubmit failed jobs that match a filter).

use super::error::QueueError;
use super::subscription::{Heard, Interest, Subscription};
use super::transport::{self, Brokers, Channel, Lane, Link, Outgoing, Publisher, Topology};
use super::wire::checked::CheckedJob;
use super::wire::job::{BuildJob, FailedJob, JobEvent, JobStatus};
use crate::core::error::ErrorClass;
use crate::core::log::LogLine;
use std::time::Duration;

/// How `submit` follows a job: what prints each log line, and how long to wait for the outcome.
pub type Follow<'a> = (&'a (dyn Fn(&LogLine) + Sync), Duration);

/// Publishes `job` (and its QUEUED event). With `follow` (a printer and how long to wait),
/// prints its log lines as they come and returns its terminal event.
pub async fn submit(
    brokers: &Brokers,
    topology: &Topology,
    job: &BuildJob,
    lane: Lane,
    follow: Option<Follow<'_>>,
) -> Result<Option<JobEvent>, QueueError> {
    let Some((print, wait)) = follow else {
        let (conn, ch) = open(brokers, "apprunner-build-submit", topology).await?;
        publish(
            Publisher::on(brokers, "apprunner-build-submit", conn, ch).await?,
            topology,
            std::slice::from_ref(job),
            lane,
        )
        .await?;
        return Ok(None);
    };
    // Subscribed before publishing, so not one line is missed.
    let interest = Interest::Operation(&job.operation_id);
    let mut heard = Subscription::open(brokers, topology, "apprunner-build-submit", interest).await?;
    let publisher = Publisher::new(brokers, "apprunner-build-submit-publisher");
    publish(publisher, topology, std::slice::from_ref(job), lane).await?;
    let deadline = tokio::time::Instant::now() + wait;
    let outcome = loop {
        let Ok(next) = tokio::time::timeout_at(deadline, heard.next()).await else {
            break Err(QueueError::NoOutcome(format!(
                "no outcome for job {} within {}s; it may still be queued or running (operation {})",
                job.job_id,
                wait.as_secs(),
                job.operation_id
            )));
        };
        match next {
            None => break Err(QueueError::broker_fault("the broker closed the log stream before the build ended")),
            Some(Err(e)) => break Err(e),
            Some(Ok(Heard::Line(line))) => print(&line),
            Some(Ok(Heard::Event(ev))) if ev.status.is_terminal() => break Ok(Some(*ev)),
            Some(Ok(Heard::Event(_))) => {}
        }
    };
    heard.close().await;
    outcome
}

/// Publishes each job and its QUEUED event, confirmed, with `publisher`, which it closes.
async fn publish(publisher: Publisher, topology: &Topology, jobs: &[BuildJob], lane: Lane) -> Result<(), QueueError> {
    let published = async {
        for job in jobs {
            publish_job(&publisher, topology, job, lane).await?;
        }
        Ok(())
    }
    .await;
    publisher.close().await;
    published
}

/// A connection named `name` and a channel on it, the topology there (`Topology::ensure`).
async fn open(brokers: &Brokers, name: &str, topology: &Topology) -> Result<(Link, Channel), QueueError> {
    let conn = brokers.connect(name).await.map_err(|e| e.within(&format!("cannot reach the broker at {brokers}")))?;
    let ch = topology.ensure(&conn).await.map_err(|e| e.within("declaring the queues"))?;
    Ok((conn, ch))
}

/// Publishes `job` and its QUEUED event, each confirmed.
async fn publish_job(publisher: &Publisher, topology: &Topology, job: &BuildJob, lane: Lane) -> Result<(), QueueError> {
    let job = &job.stamped();
    let payload = QueueError::json("the job", job)?;
    publisher
        .publish(&Outgoing { message_id: Some(&job.job_id), ..Outgoing::new("", &topology.queue_of(lane), &payload) })
        .await?;
    let event = JobEvent { batch: lane == Lane::Batch, ..JobEvent::new(job, JobStatus::Queued) };
    let (queued, id) = (QueueError::json("the QUEUED event", &event)?, event.new_message_id());
    let key = Topology::event_key(&job.operation_id, "QUEUED");
    publisher.publish(&Outgoing { message_id: Some(&id), ..Outgoing::new(&topology.events(), &key, &queued) }).await
}

/// How `submit_all` waits: how long, and what it calls with each outcome.
pub type Outcomes<'a> = (Duration, &'a (dyn Fn(&JobEvent) + Sync));

/// Publishes `jobs`. With `wait`, then gathers their terminal events (each job's first), calling
/// `each` as they come, until all are in or `wait` has passed; returns those that came.
pub async fn submit_all(
    brokers: &Brokers,
    topology: &Topology,
    jobs: &[BuildJob],
    wait: Option<Outcomes<'_>>,
) -> Result<Vec<JobEvent>, QueueError> {
    let Some((wait, each)) = wait else {
        let (conn, ch) = open(brokers, "apprunner-build-roll-out", topology).await?;
        publish(Publisher::on(brokers, "apprunner-build-roll-out", conn, ch).await?, topology, jobs, Lane::Batch)
            .await?;
        return Ok(Vec::new());
    };
    // Subscribed before publishing, so no outcome is missed.
    let operations: Vec<String> = jobs.iter().map(|j| j.operation_id.clone()).collect();
    let interest = Interest::OutcomesOf(&operations);
    let mut heard = Subscription::open(brokers, topology, "apprunner-build-roll-out", interest).await?;
    publish(Publisher::new(brokers, "apprunner-build-roll-out-publisher"), topology, jobs, Lane::Batch).await?;
    let mut events: Vec<JobEvent> = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while events.len() < jobs.len() {
        let Ok(Some(Ok(ev))) = tokio::time::timeout_at(deadline, heard.next_event()).await else { break };
        if !events.iter().any(|e| e.operation_id == ev.operation_id) {
            each(&ev);
            events.push(ev);
        }
    }
    heard.close().await;
    Ok(events)
}

/// Which failed jobs to resubmit.
#[derive(Debug, Clone, Default)]
pub struct FailedFilter {
    pub service: Option<String>,
    pub runtime: Option<String>,
    pub class: Option<ErrorClass>,
    /// Only entries that failed at least this long ago / at most this long ago.
    pub older_than: Option<Duration>,
    pub newer_than: Option<Duration>,
}

impl FailedFilter {
    pub fn matches(&self, f: &FailedJob) -> bool {
        let age = time::OffsetDateTime::parse(&f.failed_at, &time::format_description::well_known::Rfc3339)
            .map_or(Duration::ZERO, |t| (time::OffsetDateTime::now_utc() - t).unsigned_abs());
        self.service.as_ref().is_none_or(|s| f.job.as_ref().is_some_and(|j| &j.service.name == s))
            && self.runtime.as_ref().is_none_or(|r| f.runtime.as_ref() == Some(r))
            && self.class.is_none_or(|c| f.class == c)
            && self.older_than.is_none_or(|d| age >= d)
            && self.newer_than.is_none_or(|d| age <= d)
    }
}

/// One failed entry and what was (or would be) done with it.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub entry: FailedJob,
    /// The new job, when the entry matched and holds a job.
    pub resubmitted: Option<BuildJob>,
    /// A second entry of an operation whose first was resubmitted in this run (its failure
    /// recorded twice: an entry published again when its first confirm was lost): removed, not
    /// resubmitted again. The new job's id.
    pub repeat_of: Option<String>,
}

/// Goes through the failed-jobs queue once. Matching entries are republished as new jobs
/// (new job and operation ids; a rebuild is a new deployment) and then acked: each is
/// confirmed by the broker before its entry goes, so an interruption loses nothing (at worst
/// one job is resubmitted twice). Entries that do not match are left in the queue. A deployment
/// is resubmitted once however many entries it has (`Rebuilt::repeat_of`).
pub async fn rebuild_failed(
    brokers: &Brokers,
    topology: &Topology,
    filter: &FailedFilter,
    dry_run: bool,
) -> Result<Vec<Rebuilt>, QueueError> {
    let (conn, ch) = open(brokers, "apprunner-build-rebuild-failed", topology).await?;
    let total = ch.look(&topology.failed()).await?.ready;
    let publisher = Publisher::new(brokers, "apprunner-build-rebuild-failed-publisher");
    let mut out = Vec::new();
    let mut resubmitted: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    // Entries we keep stay unacked until the channel closes, so each is seen once per run.
    for _ in 0..total {
        let Some(msg) = ch.get(&topology.failed()).await? else {
            break;
        };
        let entry: FailedJob = match serde_json::from_slice(msg.body()) {
            Ok(e) => e,
            // A job the broker dead-lettered after its delivery limit (workers died on it).
            Err(_) => match CheckedJob::parse(msg.body()) {
                Ok(job) => {
                    let failed_at = msg
                        .timestamp()
                        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(i64::try_from(t).ok()?).ok())
                        .unwrap_or_else(time::OffsetDateTime::now_utc);
                    let limit = u32::try_from(transport::DELIVERY_LIMIT).unwrap_or(u32::MAX);
                    FailedJob::dead_lettered(&job, super::wire::job::rfc3339(failed_at), limit)
                }
                Err(_) => continue, // not ours to judge; it stays
            },
        };
        let job = entry.job.clone().filter(|_| filter.matches(&entry));
        let Some(job) = job else {
            out.push(Rebuilt { entry, resubmitted: None, repeat_of: None });
            continue;
        };
        if let Some(new_id) = resubmitted.get(&job.operation_id) {
            if !dry_run {
                msg.ack().await?;
            }
            out.push(Rebuilt { entry, resubmitted: None, repeat_of: Some(new_id.clone()) });
            continue;
        }
        let new_job = job.rebuild().stamped();
        if !dry_run {
            // With its QUEUED event, as any submission: `status` knows it, and it takes its
            // place in its service's line.
            publish_job(&publisher, topology, &new_job, Lane::Batch).await?;
            msg.ack().await?;
        }
        resubmitted.insert(job.operation_id.clone(), new_job.job_id.clone());
        out.push(Rebuilt { entry, resubmitted: Some(new_job), repeat_of: None });
    }
    publisher.close().await;
    // Closing returns every entry not acked to the queue.
    conn.close("done").await;
    Ok(out)
}

/// `90s`, `15m`, `2h`, `7d`
pub fn parse_age(s: &str) -> Result<Duration, QueueError> {
    let bad = || QueueError::Setting(format!("`{s}` is not an age; expected a number with s, m, h or d, e.g. 30m"));
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}
