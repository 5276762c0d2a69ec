//! The queue in tests: worker processes of the built binary, jobs, and every event of a
//! test's own queue prefix, against a real `RabbitMQ` (the machine's node, or a cluster's).
#![allow(dead_code, clippy::unwrap_used)]

use super::committed;
use apprunner_build::core::config::ConfigSource;
use apprunner_build::queue::outcome::RetryPolicy;
use apprunner_build::queue::subscription::{Interest, Subscription};
use apprunner_build::queue::transport::{self as queue, Topology};
use apprunner_build::queue::wire::job::*;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn brokers() -> queue::Brokers {
    queue::Brokers::parse(AMQP).unwrap()
}
pub const BIN: &str = env!("CARGO_BIN_EXE_apprunner-build");

pub struct Worker {
    pub child: Child,
}

impl Worker {
    /// A worker on the machine's broker node, without a metrics endpoint.
    pub fn start(prefix: &str, id: &str, args: &[&str]) -> Self {
        Self::on(AMQP, "off", prefix, id, args)
    }

    /// A worker on the broker `amqp` (comma-separated nodes), serving /healthz at `metrics`;
    /// its log is `$TMPDIR/<prefix>-<id>.log`.
    pub fn on(amqp: &str, metrics: &str, prefix: &str, id: &str, args: &[&str]) -> Self {
        let log = std::fs::File::create(std::env::temp_dir().join(format!("{prefix}-{id}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["worker", "--queue-prefix", prefix, "--worker-id", id, "--retry-delay", "1"])
            .args(["--amqp", amqp, "--metrics-addr", metrics])
            .args(args)
            // A run chasing a fault can ask for more (APPRUNNER_TEST_WORKER_LOG=info,apprunner_build=debug).
            .env("APPRUNNER_LOG", std::env::var("APPRUNNER_TEST_WORKER_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child }
    }
    /// SIGTERM, and waits for the worker to finish what it runs and exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn prefix() -> String {
    format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// One queue test's own world: a fresh prefix, its topology, every event of it heard from
/// before the first job, and its queues and exchanges deleted when the test ends.
pub struct QueueTest {
    pub prefix: String,
    pub topology: Topology,
    pub events: Events,
    pub cleanup: Cleanup,
}

impl QueueTest {
    pub async fn new() -> Self {
        let prefix = prefix();
        let topology = Topology::new(&prefix);
        let cleanup = Cleanup(topology.clone());
        let events = Events::listen(&topology).await;
        Self { prefix, topology, events, cleanup }
    }
}

/// Deletes a test's queues and exchanges when it ends (on success or failure), so the broker
/// does not collect them run after run.
pub struct Cleanup(pub Topology);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let t = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let Ok(conn) = brokers().connect("test-cleanup").await else { return };
                // The workers' `--retry-delay 1` with up to ten retries (a test may allow more).
                let retry = RetryPolicy { max_attempts: 11, first_delay: Duration::from_secs(1) };
                t.remove(&conn, &retry).await;
                let _ = conn.close(200, "cleaned".into()).await;
            });
        })
        .join();
    }
}

/// A git repository of a small Python app whose build runs `build_cmd`.
pub fn repo(build_cmd: &str) -> (tempfile::TempDir, String) {
    let yaml = format!(
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - \"{}\"\nrun:\n  command: python -m http.server 8080\n",
        build_cmd.replace('"', "\\\"")
    );
    let dir = committed(&[("apprunner.yaml", &yaml), ("index.html", "hi\n")]);
    let url = format!("file://{}", dir.path().display());
    (dir, url)
}

pub fn job(url: &str, service: &str) -> BuildJob {
    let op = uuid::Uuid::new_v4().simple().to_string();
    BuildJob {
        version: JOB_VERSION,
        job_id: format!("{service}-{}", &op[..8]),
        operation_id: op,
        service: Service { name: service.into(), id: None },
        repository: Repository {
            url: url.into(),
            branch: Some("main".into()),
            commit: None,
            source_directory: "/".into(),
        },
        configuration: Configuration { source: ConfigSource::Repository, values: None },
        image: ImageTarget { repository: format!("127.0.0.1:5000/apprunner-tests/{service}"), tag: None },
        deadline: None,
        trigger: None,
        rollout: None,
        submitted_at: None,
    }
}

/// Every event of a prefix, from before the first job is published.
pub struct Events {
    heard: Subscription,
    pub seen: Vec<JobEvent>,
}

impl Events {
    pub async fn listen(topology: &Topology) -> Self {
        Self::listen_on(&brokers(), topology).await
    }

    pub async fn listen_on(brokers: &queue::Brokers, topology: &Topology) -> Self {
        let heard = Subscription::open(brokers, topology, "test-events", Interest::AllEvents).await.unwrap();
        Self { heard, seen: Vec::new() }
    }

    /// Reads events until `done` holds for what was seen, or panics after `limit`.
    pub async fn until(&mut self, limit: Duration, done: impl Fn(&[JobEvent]) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.heard.next_event()).await {
                Ok(Some(Ok(event))) => self.seen.push(event),
                _ => panic!(
                    "events did not arrive in {limit:?}; seen: {:#?}",
                    self.seen.iter().map(|e| (&e.job_id, e.status, &e.error)).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Keeps reading for `quiet`, so a duplicate would show up.
    pub async fn settle(&mut self, quiet: Duration) {
        while let Ok(Some(Ok(event))) = tokio::time::timeout(quiet, self.heard.next_event()).await {
            self.seen.push(event);
        }
    }

    /// Messages the subscription dropped as repeats of ones it had heard.
    pub fn repeats(&self) -> u64 {
        self.heard.repeats
    }

    pub fn count(&self, job_id: &str, status: JobStatus) -> usize {
        self.seen.iter().filter(|e| e.job_id == job_id && e.status == status).count()
    }
}

pub fn terminal(events: &[JobEvent], job_id: &str) -> Option<JobEvent> {
    events.iter().find(|e| e.job_id == job_id && e.status.is_terminal()).cloned()
}

pub async fn submit(topology: &Topology, job: &BuildJob) {
    apprunner_build::queue::client::submit(&brokers(), topology, job, queue::Lane::User, None).await.unwrap();
}
