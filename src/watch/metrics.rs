//! The watcher's Prometheus metrics: looks and their failures per host, webhooks by provider and
//! outcome, deployments by trigger, and when each service was last looked at.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

#[derive(Default)]
pub struct WatchMetrics {
    looks: Mutex<BTreeMap<String, (u64, u64)>>,
    webhooks: Mutex<BTreeMap<(String, String), u64>>,
    deployments: Mutex<BTreeMap<String, u64>>,
    last_look: Mutex<BTreeMap<String, i64>>,
}

impl WatchMetrics {
    /// A look asked `host` (and whether it answered) for `service`.
    pub fn looked(&self, host: &str, service: &str, answered: bool) {
        let mut looks = self.looks.lock().unwrap_or_else(PoisonError::into_inner);
        let (all, failed) = looks.entry(host.to_string()).or_default();
        *all += 1;
        *failed += u64::from(!answered);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.last_look.lock().unwrap_or_else(PoisonError::into_inner).insert(service.to_string(), now);
    }

    pub fn webhook(&self, provider: &str, outcome: &str) {
        let key = (provider.to_string(), outcome.to_string());
        *self.webhooks.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
    }

    pub fn deployed(&self, trigger: &str) {
        *self.deployments.lock().unwrap_or_else(PoisonError::into_inner).entry(trigger.to_string()).or_default() += 1;
    }

    /// Services no longer followed are no longer reported.
    pub fn forget_except(&self, services: &[String]) {
        let kept: std::collections::HashSet<&String> = services.iter().collect();
        self.last_look.lock().unwrap_or_else(PoisonError::into_inner).retain(|s, _| kept.contains(s));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apprunner_watch_looks_total Looks at a branch's head, per git host.\n# TYPE apprunner_watch_looks_total counter\n");
        let looks = self.looks.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for (host, (all, _)) in &looks {
            let _ = writeln!(out, "apprunner_watch_looks_total{{host=\"{}\"}} {all}", escaped(host));
        }
        out.push_str("# HELP apprunner_watch_look_failures_total Looks whose host did not say the head.\n# TYPE apprunner_watch_look_failures_total counter\n");
        for (host, (_, failed)) in &looks {
            let _ = writeln!(out, "apprunner_watch_look_failures_total{{host=\"{}\"}} {failed}", escaped(host));
        }
        out.push_str("# HELP apprunner_watch_webhooks_total Webhooks received, by provider and what was done.\n# TYPE apprunner_watch_webhooks_total counter\n");
        for ((provider, outcome), n) in self.webhooks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ =
                writeln!(out, "apprunner_watch_webhooks_total{{provider=\"{provider}\",outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP apprunner_watch_deployments_total Deployments submitted, by trigger.\n# TYPE apprunner_watch_deployments_total counter\n");
        for (trigger, n) in self.deployments.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "apprunner_watch_deployments_total{{trigger=\"{trigger}\"}} {n}");
        }
        out.push_str("# HELP apprunner_watch_last_look_seconds When each service was last looked at (Unix time).\n# TYPE apprunner_watch_last_look_seconds gauge\n");
        for (service, at) in self.last_look.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "apprunner_watch_last_look_seconds{{service=\"{service}\"}} {at}");
        }
        out
    }
}

/// A label value as Prometheus reads one.
fn escaped(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
