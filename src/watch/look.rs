//! One look at one service: the branch's head asked of its host, compared with the service's
//! last deployment on record (and, for a source directory below the root, what changed under
//! it, asked of git), and the head submitted through the queue when it is to deploy.

use super::schedule::host_of;
use super::Watcher;
use crate::core::config::ConfigSource;
use crate::core::request::{ConfigInput, Revision, SourceLocation};
use crate::core::watch::decision::{self, Verdict};
use crate::core::watch::WatchedService;
use crate::error::{BuildError, Classified, ErrorClass};
use crate::queue::transport::Lane;
use crate::queue::wire::job::{BuildJob, Configuration, ImageTarget, Repository, Service, JOB_VERSION};
use std::sync::PoisonError;
use std::time::Duration;
use tokio::time::Instant;

/// How long a host may take to say a branch's head.
const HEAD_WAIT: Duration = Duration::from_secs(30);

/// What a look did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Looked {
    /// The head was submitted.
    Deployed {
        commit: String,
        operation_id: String,
        trigger: &'static str,
        why: String,
    },
    Nothing {
        why: String,
    },
    /// The host did not say the head; it is not asked again before `until`.
    HostAway {
        host: String,
        until: Instant,
    },
}

impl Watcher {
    /// Looks at `service` once.
    pub async fn look(&self, service: &WatchedService) -> Result<Looked, BuildError> {
        let host = host_of(&service.repository);
        let _turn = self.hosts.turn(&host).await;
        let location = SourceLocation::Git(service.repository.clone());
        let revision = service.branch.clone().map_or(Revision::DefaultBranch, Revision::Branch);
        let asked = crate::edge::source::remote_head(&location, &revision, self.cfg.git_credentials.as_deref());
        let head = match tokio::time::timeout(HEAD_WAIT, asked).await {
            Ok(Ok(head)) => head,
            // The host answered, and said no (no such repository, or no access): this
            // service's to mend; the host's other services are asked as ever.
            Ok(Err(e)) if e.class() == ErrorClass::User => {
                self.hosts.answered(&host);
                self.metrics.looked(&host, &service.name, true);
                return Err(BuildError::from(e));
            }
            Ok(Err(_)) | Err(_) => {
                self.metrics.looked(&host, &service.name, false);
                let until = self.hosts.failed(&host);
                let branch = service.branch.as_deref().unwrap_or("its default branch");
                tracing::warn!(
                    "service {}: {host} did not say the head of {branch}; asked again in {:.0?}",
                    service.name,
                    until - Instant::now()
                );
                return Ok(Looked::HostAway { host, until });
            }
        };
        self.hosts.answered(&host);
        self.metrics.looked(&host, &service.name, true);
        let Some(head) = head else {
            let what = service.branch.as_ref().map_or_else(|| "default branch".to_string(), |b| format!("branch {b}"));
            return Err(BuildError::user(format!("{} has no {what}", service.repository)));
        };
        let head = head.to_ascii_lowercase();
        let last = self.deployed.lock().unwrap_or_else(PoisonError::into_inner).of(&service.name).cloned();
        let shown = last.as_ref().is_some_and(|l| l.commit == head);
        if !shown && self.submitted.lock().unwrap_or_else(PoisonError::into_inner).get(&service.name) == Some(&head) {
            let why = format!("{} was submitted; the history does not show it yet", decision::short(&head));
            return Ok(Looked::Nothing { why });
        }
        let verdict = match decision::before_git(last.as_ref(), &head, &service.source_dir) {
            Verdict::AskGit { from } => self.compare(service, &from, &head).await?,
            other => other,
        };
        match verdict {
            Verdict::Deploy { trigger, why } => {
                let operation_id = self.submit(service, &head, trigger).await?;
                self.metrics.deployed(trigger);
                self.submitted
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(service.name.clone(), head.clone());
                Ok(Looked::Deployed { commit: head, operation_id, trigger, why })
            }
            Verdict::Nothing { why } => Ok(Looked::Nothing { why }),
            Verdict::AskGit { .. } => unreachable!("git was asked above"),
        }
    }

    /// What git says of `from` and `head` for the service's source directory; a comparison
    /// that found nothing is remembered, so the next look at the same two commits asks nothing.
    async fn compare(&self, service: &WatchedService, from: &str, head: &str) -> Result<Verdict, BuildError> {
        if let Some((f, h, why)) = self.compared.lock().unwrap_or_else(PoisonError::into_inner).get(&service.name) {
            if f == from && h == head {
                return Ok(Verdict::Nothing { why: why.clone() });
            }
        }
        let (url, branch, dir) = (&service.repository, service.branch.as_deref(), &service.source_dir);
        let changes = self.mirrors.changes(url, branch, from, head, dir).await?;
        let verdict = decision::after_git(&changes, from, head, dir);
        if let Verdict::Nothing { why } = &verdict {
            let memo = (from.to_string(), head.to_string(), why.clone());
            self.compared.lock().unwrap_or_else(PoisonError::into_inner).insert(service.name.clone(), memo);
        }
        Ok(verdict)
    }

    /// Submits the deployment of `service` at `commit`, as `submit` does; its operation id.
    async fn submit(&self, service: &WatchedService, commit: &str, trigger: &str) -> Result<String, BuildError> {
        let job = watched_job(service, commit, trigger);
        crate::queue::client::submit(&self.cfg.brokers, &self.cfg.topology, &job, Lane::User, None).await?;
        Ok(job.operation_id)
    }
}

/// The job that deploys `service` at `commit`: its operation id the service's and the
/// commit's, so every watcher's submission of it is the same deployment.
pub fn watched_job(service: &WatchedService, commit: &str, trigger: &str) -> BuildJob {
    let configuration = match &service.configuration {
        ConfigInput::Repository => Configuration { source: ConfigSource::Repository, values: None },
        ConfigInput::Api(values) => Configuration { source: ConfigSource::Api, values: Some(values.clone()) },
    };
    BuildJob {
        version: JOB_VERSION,
        job_id: uuid::Uuid::new_v4().simple().to_string(),
        operation_id: decision::operation_id(&service.name, commit),
        service: Service { name: service.name.clone(), id: None },
        repository: Repository {
            url: service.repository.clone(),
            branch: None,
            commit: Some(commit.to_string()),
            source_directory: service.source_dir.clone(),
        },
        configuration,
        image: ImageTarget { repository: service.image.name(), tag: service.image.tag.clone() },
        deadline: None,
        trigger: Some(trigger.to_string()),
        rollout: None,
        submitted_at: None,
    }
}
