//! When each service is looked at: once per interval, the first look of each spread across the
//! interval (a thousand services do not all ask at once); and how much each git host is asked:
//! a few looks at once, none while it is backing off after failures, so a host that never
//! answers holds up nobody else.

use crate::core::watch::WatchedService;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Looks at one host at once.
const PER_HOST: usize = 4;
/// Looks at once, every host together.
const AT_ONCE: usize = 32;
/// The first wait after a host failed; doubled with each failure in a row, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Each followed service's next look.
pub(super) struct Turns {
    interval: Duration,
    next: HashMap<String, Instant>,
}

impl Turns {
    pub(super) fn new(interval: Duration) -> Self {
        Self { interval, next: HashMap::new() }
    }

    /// Takes in a (new) set of services: one not followed before gets its first look at a
    /// place in the interval of its own (by its name), one gone is forgotten.
    pub(super) fn follow(&mut self, set: &[WatchedService]) {
        let followed: std::collections::HashSet<&str> =
            set.iter().filter(|s| s.auto_deploy).map(|s| s.name.as_str()).collect();
        self.next.retain(|name, _| followed.contains(name.as_str()));
        let now = Instant::now();
        for s in set.iter().filter(|s| s.auto_deploy) {
            self.next.entry(s.name.clone()).or_insert_with(|| now + spread(&s.name, self.interval));
        }
    }

    /// Makes these services due now (a webhook said their branch moved).
    pub(super) fn now(&mut self, names: &[String]) {
        let now = Instant::now();
        for name in names {
            if let Some(next) = self.next.get_mut(name) {
                *next = now;
            }
        }
    }

    /// The services due now whose host is not backing off; each is due again an interval on.
    pub(super) fn due(&mut self, set: &[WatchedService], hosts: &HostGate) -> Vec<WatchedService> {
        let now = Instant::now();
        let mut due = Vec::new();
        for s in set.iter().filter(|s| s.auto_deploy) {
            let Some(next) = self.next.get_mut(&s.name) else { continue };
            if *next > now {
                continue;
            }
            match hosts.away_until(&host_of(&s.repository)) {
                Some(until) if until > now => *next = until,
                _ => {
                    *next = now + self.interval;
                    due.push(s.clone());
                }
            }
        }
        due
    }
}

/// Where in `interval` a service's first look falls: from its name, so every watcher places it
/// alike.
fn spread(name: &str, interval: Duration) -> Duration {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    interval.mul_f64((h % 1000) as f64 / 1000.0)
}

/// The host a repository URL is on (`https://host:port`), or `file` for a local path.
pub(super) fn host_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if scheme == "file" {
        return "file".into();
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    format!("{scheme}://{}", host.rsplit('@').next().unwrap_or(host))
}

#[derive(Default)]
struct HostState {
    failures: u32,
    until: Option<Instant>,
}

/// How much each host is asked, and which are backing off.
pub(super) struct HostGate {
    hosts: Mutex<HashMap<String, (HostState, Arc<Semaphore>)>>,
    all: Arc<Semaphore>,
}

impl Default for HostGate {
    fn default() -> Self {
        Self { hosts: Mutex::default(), all: Arc::new(Semaphore::new(AT_ONCE)) }
    }
}

impl HostGate {
    /// Until when `host` is not asked, after failing.
    pub(super) fn away_until(&self, host: &str) -> Option<Instant> {
        self.hosts.lock().unwrap_or_else(PoisonError::into_inner).get(host).and_then(|(s, _)| s.until)
    }

    /// A turn to ask `host`: one of its few, and one of all hosts' together.
    pub(super) async fn turn(&self, host: &str) -> (OwnedSemaphorePermit, OwnedSemaphorePermit) {
        let own = {
            let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
            hosts
                .entry(host.to_string())
                .or_insert_with(|| (HostState::default(), Arc::new(Semaphore::new(PER_HOST))))
                .1
                .clone()
        };
        let own = own.acquire_owned().await.expect("never closed");
        let all = self.all.clone().acquire_owned().await.expect("never closed");
        (own, all)
    }

    /// `host` failed to answer: it backs off, longer with each failure in a row. Returns until when.
    pub(super) fn failed(&self, host: &str) -> Instant {
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, _) =
            hosts.entry(host.to_string()).or_insert_with(|| (HostState::default(), Arc::new(Semaphore::new(PER_HOST))));
        state.failures += 1;
        let wait = FIRST_BACKOFF.saturating_mul(1 << state.failures.min(8).saturating_sub(1)).min(MAX_BACKOFF);
        let until = Instant::now() + wait;
        state.until = Some(until);
        until
    }

    /// `host` answered: no backoff.
    pub(super) fn answered(&self, host: &str) {
        if let Some((state, _)) = self.hosts.lock().unwrap_or_else(PoisonError::into_inner).get_mut(host) {
            *state = HostState::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_is_named_by_scheme_host_and_port_and_backs_off_doubling() {
        assert_eq!(host_of("https://git.example.com:8443/team/app.git"), "https://git.example.com:8443");
        assert_eq!(host_of("file:///srv/git/app"), "file");
        let gate = HostGate::default();
        let first = gate.failed("h") - Instant::now();
        let second = gate.failed("h") - Instant::now();
        assert!(
            first <= FIRST_BACKOFF && second > FIRST_BACKOFF && second <= FIRST_BACKOFF * 2,
            "{first:?} {second:?}"
        );
        gate.answered("h");
        assert!(gate.away_until("h").is_none());
        let spread_of = |n: &str| spread(n, Duration::from_secs(60));
        assert!(spread_of("web") < Duration::from_secs(60));
        assert_eq!(spread_of("web"), spread_of("web"), "every watcher places a service alike");
    }
}
