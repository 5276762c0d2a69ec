//! `apprunner-build watch`: App Runner's automatic deployment. The services a file declares are
//! looked at in turn (each branch's head asked of its host, no clone); a head that changed
//! something under the service's source directory since its last deployment on record is
//! submitted through the queue, as `submit` does. What was deployed is read from the history
//! the broker keeps, never from this process's memory, and a deployment's operation id is the
//! service's and the commit's, so watchers may run side by side and restart at will.
//!
//! `look` is one look at one service; `schedule` the turns (when each service is due, each
//! host's backoff); `endpoint` the webhooks, health and metrics (`metrics`).

mod endpoint;
mod look;
mod metrics;
mod schedule;

pub use endpoint::Endpoint;
pub use look::{watched_job, Looked};
pub use metrics::WatchMetrics;

use crate::core::watch::WatchedService;
use crate::edge::source::Mirrors;
use crate::queue::history::{self, deployed::LastDeployments};
use crate::queue::transport::{Brokers, StreamOffset, Topology};
use schedule::{HostGate, Turns};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How a watcher reaches the broker and the git hosts.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub brokers: Brokers,
    pub topology: Topology,
    /// How often each service is looked at.
    pub poll_interval: Duration,
    /// Where the repositories' mirrors are kept (what changed under a source directory).
    pub state_dir: PathBuf,
    /// A git-credential-store file for private hosts (`--git-credentials`).
    pub git_credentials: Option<PathBuf>,
    /// This watcher's name, in its connections' names.
    pub watcher_id: String,
}

/// What a watcher holds between looks.
pub struct Watcher {
    cfg: WatchConfig,
    /// Each service's last deployment with a commit, from the history.
    deployed: Mutex<LastDeployments>,
    /// The commit each service was last submitted at by this watcher: not submitted again
    /// while the history has not shown it yet.
    submitted: Mutex<HashMap<String, String>>,
    /// Each service's last comparison that found nothing to deploy (from, head, why): git is
    /// not asked the same again.
    compared: Mutex<HashMap<String, (String, String, String)>>,
    mirrors: Mirrors,
    hosts: HostGate,
    pub metrics: WatchMetrics,
    /// The set followed now.
    current: Mutex<Arc<Vec<WatchedService>>>,
    /// Services a webhook asked to look at now, and the wake-up of the loop that does.
    asked: Mutex<Vec<String>>,
    ask: Notify,
}

impl Watcher {
    pub fn new(cfg: WatchConfig) -> Self {
        let mirrors = Mirrors::new(&cfg.state_dir.join("mirrors"), cfg.git_credentials.clone());
        Self {
            cfg,
            deployed: Mutex::default(),
            submitted: Mutex::default(),
            compared: Mutex::default(),
            mirrors,
            hosts: HostGate::default(),
            metrics: WatchMetrics::default(),
            current: Mutex::default(),
            asked: Mutex::default(),
            ask: Notify::new(),
        }
    }

    /// The names of the services followed now (auto-deploy on) that `wanted` picks.
    pub fn following(&self, wanted: impl Fn(&WatchedService) -> bool) -> Vec<String> {
        let set = self.current.lock().unwrap_or_else(PoisonError::into_inner).clone();
        set.iter().filter(|s| s.auto_deploy && wanted(s)).map(|s| s.name.clone()).collect()
    }

    /// Looks at these services now, whenever they were due.
    pub fn look_now(&self, names: Vec<String>) {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner).extend(names);
        self.ask.notify_one();
    }

    /// Follows `services` (the last good set of the file, replaced on reload) until `stop`.
    pub async fn run(
        self: Arc<Self>,
        mut services: watch::Receiver<Arc<Vec<WatchedService>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Nothing is decided before the history is read: without it every service would look
        // new. Read again until the broker answers.
        let began = loop {
            let began = time::OffsetDateTime::now_utc();
            match history::read(&self.cfg.brokers, &self.cfg.topology).await {
                Ok(events) => {
                    let mut deployed = self.deployed.lock().unwrap_or_else(PoisonError::into_inner);
                    for e in &events {
                        deployed.apply(e);
                    }
                    tracing::info!("read {} events of the history; following it", events.len());
                    break began;
                }
                Err(e) => tracing::warn!("the history could not be read ({e}); no service is looked at before it is"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
        };
        // From a little before the read began: an event read twice changes nothing.
        let since = u64::try_from((began - time::Duration::seconds(10)).unix_timestamp());
        let from = since.map_or(StreamOffset::First, StreamOffset::Time);
        let following = {
            let me = self.clone();
            let name = format!("apprunner-build-watch-{}-history", self.cfg.watcher_id);
            tokio::spawn(async move {
                let (brokers, topology) = (me.cfg.brokers.clone(), me.cfg.topology.clone());
                history::follow(brokers, topology, name, from, |_, e| {
                    me.deployed.lock().unwrap_or_else(PoisonError::into_inner).apply(&e);
                })
                .await;
            })
        };
        let mut turns = Turns::new(self.cfg.poll_interval);
        let mut looks = tokio::task::JoinSet::new();
        loop {
            let set = services.borrow_and_update().clone();
            // Taken in once per set (a reload), not on every turn of the loop.
            if !Arc::ptr_eq(&set, &self.current.lock().unwrap_or_else(PoisonError::into_inner)) {
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = set.clone();
                self.metrics.forget_except(&set.iter().map(|s| s.name.clone()).collect::<Vec<_>>());
                turns.follow(&set);
            }
            turns.now(&std::mem::take(&mut *self.asked.lock().unwrap_or_else(PoisonError::into_inner)));
            for service in turns.due(&set, &self.hosts) {
                let me = self.clone();
                looks.spawn(async move { me.look_and_say(&service).await });
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = services.changed() => {}
                () = self.ask.notified() => {}
                Some(_) = looks.join_next(), if !looks.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
        following.abort();
        looks.shutdown().await;
    }

    /// One look at `service`, said in the log.
    async fn look_and_say(&self, service: &WatchedService) {
        match self.look(service).await {
            Ok(Looked::Deployed { commit, operation_id, trigger, why }) => tracing::info!(
                "service {}: deploying {} as operation {operation_id} ({trigger}): {why}",
                service.name,
                crate::core::watch::decision::short(&commit)
            ),
            Ok(Looked::Nothing { why }) => tracing::debug!("service {}: nothing to deploy: {why}", service.name),
            Ok(Looked::HostAway { host, until }) => {
                tracing::debug!("service {}: {host} is not asked again before {until:?}", service.name);
            }
            Err(e) => tracing::warn!("service {}: {e}", service.name),
        }
    }
}
