//! The worker's health and Prometheus metrics, served over a tiny HTTP endpoint.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS.len()];
        }
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    /// Renders the series; `labels` (`phase="fetch"`) go before `le`.
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let (pre, braces) = if labels.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{labels},"), format!("{{{labels}}}"))
        };
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{{pre}le=\"{b}\"}} {}", self.counts.get(i).copied().unwrap_or(0));
        }
        let _ = write!(
            out,
            "{name}_bucket{{{pre}le=\"+Inf\"}} {}\n{name}_sum{braces} {}\n{name}_count{braces} {}\n",
            self.count, self.sum, self.count
        );
    }
}

#[derive(Default)]
pub struct Metrics {
    pub connected: AtomicBool,
    pub in_flight: AtomicI64,
    /// Ready messages in the jobs queue, as last seen.
    pub queue_depth: AtomicI64,
    jobs: Mutex<BTreeMap<String, u64>>,
    durations: Mutex<Histogram>,
    lag: Mutex<Histogram>,
    phases: Mutex<BTreeMap<&'static str, Histogram>>,
    /// The broker's nodes: which one the worker is on, how often it moved.
    brokers: std::sync::OnceLock<super::transport::Brokers>,
}

impl Metrics {
    /// Says which broker the worker uses (once, at start).
    pub fn watch_broker(&self, brokers: &super::transport::Brokers) {
        let _ = self.brokers.set(brokers.clone());
    }

    fn broker(&self) -> (String, u64) {
        self.brokers.get().map_or_else(|| (String::new(), 0), |b| (b.node(), b.failovers()))
    }

    /// A job of `lane` ended with `outcome`.
    pub fn job_finished(&self, lane: super::transport::Lane, outcome: &str) {
        let key = format!("kind=\"{}\",outcome=\"{outcome}\"", lane.label());
        *self.jobs.lock().unwrap_or_else(PoisonError::into_inner).entry(key).or_default() += 1;
    }
    pub fn build_seconds(&self, s: f64) {
        self.durations.lock().unwrap_or_else(PoisonError::into_inner).observe(s);
    }
    /// Where a successful build's time went; `report` is the worker publishing its outcome.
    pub fn phase_seconds(&self, phase: &'static str, s: f64) {
        self.phases.lock().unwrap_or_else(PoisonError::into_inner).entry(phase).or_default().observe(s);
    }

    /// Seconds between a job's publication and a worker starting it.
    pub fn queue_lag(&self, s: f64) {
        self.lag.lock().unwrap_or_else(PoisonError::into_inner).observe(s);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP apprunner_build_jobs_total Jobs finished, by kind (user, batch) and outcome.\n# TYPE apprunner_build_jobs_total counter\n",
        );
        for (labels, n) in self.jobs.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let _ = writeln!(out, "apprunner_build_jobs_total{{{labels}}} {n}");
        }
        out.push_str("# HELP apprunner_build_in_flight Builds running now.\n# TYPE apprunner_build_in_flight gauge\n");
        let _ = writeln!(out, "apprunner_build_in_flight {}", self.in_flight.load(Ordering::Relaxed));
        out.push_str("# HELP apprunner_build_queue_depth Ready jobs in the jobs queue when last checked.\n# TYPE apprunner_build_queue_depth gauge\n");
        let _ = writeln!(out, "apprunner_build_queue_depth {}", self.queue_depth.load(Ordering::Relaxed));
        out.push_str("# HELP apprunner_build_duration_seconds Build durations.\n# TYPE apprunner_build_duration_seconds histogram\n");
        self.durations.lock().unwrap_or_else(PoisonError::into_inner).render(
            "apprunner_build_duration_seconds",
            "",
            &mut out,
        );
        out.push_str("# HELP apprunner_build_phase_seconds Where successful builds' time went: fetch, plan, solve, export (and push), report.\n# TYPE apprunner_build_phase_seconds histogram\n");
        for (phase, h) in self.phases.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            h.render("apprunner_build_phase_seconds", &format!("phase=\"{phase}\""), &mut out);
        }
        out.push_str(
            "# HELP apprunner_build_queue_lag_seconds Time from a job's publication to its start.\n# TYPE apprunner_build_queue_lag_seconds histogram\n",
        );
        self.lag.lock().unwrap_or_else(PoisonError::into_inner).render(
            "apprunner_build_queue_lag_seconds",
            "",
            &mut out,
        );
        let _ = write!(
            out,
            "# TYPE apprunner_build_broker_connected gauge\napprunner_build_broker_connected {}\n",
            u8::from(self.connected.load(Ordering::Relaxed))
        );
        let (node, failovers) = self.broker();
        let _ = write!(
            out,
            "# HELP apprunner_build_broker_node The broker node the worker connects to.\n# TYPE apprunner_build_broker_node gauge\napprunner_build_broker_node{{node=\"{node}\"}} 1\n# HELP apprunner_build_broker_failovers_total Moves to another broker node.\n# TYPE apprunner_build_broker_failovers_total counter\napprunner_build_broker_failovers_total {failovers}\n"
        );
        out
    }
}

/// Serves `/healthz` (200 while connected to the broker, else 503) and `/metrics`.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf)).await else {
                return;
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, body, ctype) = match path {
                "/metrics" => ("200 OK", metrics.render(), "text/plain; version=0.0.4"),
                "/healthz" => {
                    let (node, failovers) = metrics.broker();
                    let said = format!("broker node {node}, {failovers} failovers\n");
                    if metrics.connected.load(Ordering::Relaxed) {
                        ("200 OK", format!("ok: {said}"), "text/plain")
                    } else {
                        ("503 Service Unavailable", format!("broker not connected: last {said}"), "text/plain")
                    }
                }
                _ => ("404 Not Found", "try /healthz or /metrics\n".to_string(), "text/plain"),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
