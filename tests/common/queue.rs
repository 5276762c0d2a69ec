//! The queue in tests: worker processes of the built binary, jobs, and every event of a
//! test's own queue prefix, against a real `RabbitMQ` (the machine's node, or a cluster's).
#![allow(dead_code, clippy::unwrap_used)]

use super::committed;
use apprunner_build::core::config::ConfigSource;
use apprunner_build::core::log::LogLine;
use apprunner_build::error::ErrorClass;
use apprunner_build::queue::outcome::RetryPolicy;
use apprunner_build::queue::transport::{self as queue, Topology};
use apprunner_build::queue::wire::event::FailureInfo;
use apprunner_build::queue::wire::job::*;
use std::collections::HashMap;
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

    /// A worker on the machine's broker node with more environment (`APPRUNNER_FAILPOINTS`).
    pub fn with_env(prefix: &str, id: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(AMQP, "off", prefix, id, args, env)
    }

    /// A worker on the broker `amqp` (comma-separated nodes), serving /healthz at `metrics`;
    /// its log is `$TMPDIR/<prefix>-<id>.log`.
    pub fn on(amqp: &str, metrics: &str, prefix: &str, id: &str, args: &[&str]) -> Self {
        Self::spawn(amqp, metrics, prefix, id, args, &[])
    }

    fn spawn(amqp: &str, metrics: &str, prefix: &str, id: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["worker", "--queue-prefix", prefix, "--worker-id", id, "--retry-delay", "1"])
            .args(["--amqp", amqp, "--metrics-addr", metrics])
            .args(args)
            .envs(env.iter().copied())
            // A run chasing a fault can ask for more (APPRUNNER_TEST_WORKER_LOG=info,apprunner_build=debug).
            .env("APPRUNNER_LOG", std::env::var("APPRUNNER_TEST_WORKER_LOG").unwrap_or_else(|_| "info".into()));
        Self { child: logged(cmd, prefix, id) }
    }
    /// What the worker logged so far.
    pub fn log(prefix: &str, id: &str) -> String {
        process_log(prefix, id)
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

/// A watcher process of the built binary; its log is `$TMPDIR/<prefix>-<id>.log`.
pub struct Watch {
    pub child: Child,
}

impl Watch {
    pub fn start(prefix: &str, id: &str, services: &std::path::Path, state: &std::path::Path) -> Self {
        Self::with(prefix, id, services, state, &["--poll-interval", "1", "--metrics-addr", "off"])
    }

    pub fn with(prefix: &str, id: &str, services: &std::path::Path, state: &std::path::Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.args(["watch", "--queue-prefix", prefix, "--amqp", AMQP, "--watcher-id", id])
            .args(args)
            .arg("--services")
            .arg(services)
            .arg("--state-dir")
            .arg(state)
            .env("APPRUNNER_LOG", "info,apprunner_build::watch=debug");
        Self { child: logged(cmd, prefix, id) }
    }

    /// What the watcher logged so far.
    pub fn log(prefix: &str, id: &str) -> String {
        process_log(prefix, id)
    }
}

/// `cmd` started with its log (stderr) in `$TMPDIR/<prefix>-<id>.log`.
fn logged(mut cmd: Command, prefix: &str, id: &str) -> Child {
    let log = std::fs::File::create(std::env::temp_dir().join(format!("{prefix}-{id}.log"))).unwrap();
    cmd.stdout(Stdio::null()).stderr(log).spawn().unwrap()
}

/// What the process started as `id` of `prefix` (`logged`) has logged so far.
fn process_log(prefix: &str, id: &str) -> String {
    std::fs::read_to_string(std::env::temp_dir().join(format!("{prefix}-{id}.log"))).unwrap_or_default()
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
                t.remove(&conn, retry.waits()).await;
                conn.close("cleaned").await;
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

/// Every event and log line of a prefix exactly as the broker carries them, from before the
/// first job is published: a consumer of `<p>.events` (`#`) and `<p>.logs` (`deployment.#`) on
/// a queue of its own, without acks and without dropping repeats (the transport's bare
/// `Inbox`), so a second terminal event on the wire is counted (the project's `Subscription`
/// drops repeats by message id; a test that claims one outcome per deployment must not listen
/// through it).
pub struct Events {
    _conn: queue::Link,
    consumer: queue::Inbox,
    status_exchange: String,
    /// Every event, as many times as the broker delivered it.
    pub seen: Vec<JobEvent>,
    /// Every message of log lines, per operation: (message id, the lines), in arrival order.
    pub logs: HashMap<String, Vec<(String, Vec<LogLine>)>>,
    /// Times each message id arrived.
    ids: HashMap<String, u32>,
}

impl Events {
    pub async fn listen(topology: &Topology) -> Self {
        Self::listen_on(&brokers(), topology).await
    }

    pub async fn listen_on(brokers: &queue::Brokers, topology: &Topology) -> Self {
        let conn = brokers.connect("test-wire").await.unwrap();
        let ch = topology.ensure(&conn).await.unwrap();
        let q = ch.private_queue().await.unwrap();
        for (exchange, key) in [(topology.events(), "#".to_string()), (topology.logs(), Topology::log_key("#"))] {
            ch.bind(&q, &exchange, &key).await.unwrap();
        }
        let consumer = ch.consume_unacked(&q).await.unwrap();
        Self {
            _conn: conn,
            consumer,
            status_exchange: topology.events(),
            seen: Vec::new(),
            logs: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    /// The next message off the wire, recorded; false if none came within `limit`.
    async fn read_one(&mut self, limit: Duration) -> bool {
        let Ok(Some(Ok(d))) = tokio::time::timeout(limit, self.consumer.next()).await else { return false };
        let id = d.message_id().map(ToString::to_string).unwrap_or_default();
        *self.ids.entry(id.clone()).or_default() += 1;
        if d.exchange() == self.status_exchange {
            self.seen.push(serde_json::from_slice(d.body()).expect("an event the worker published"));
        } else {
            let lines: Vec<LogLine> = serde_json::from_slice(d.body()).expect("a batch of log lines");
            let op = d.routing_key().trim_start_matches("deployment.").to_string();
            self.logs.entry(op).or_default().push((id, lines));
        }
        true
    }

    /// Reads until `done` holds for what was seen, or panics after `limit`.
    pub async fn until(&mut self, limit: Duration, done: impl Fn(&[JobEvent]) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                self.read_one(left).await,
                "events did not arrive in {limit:?}; seen: {:#?}",
                self.seen.iter().map(|e| (&e.job_id, e.status, &e.error)).collect::<Vec<_>>()
            );
        }
    }

    /// Keeps reading for `quiet`, so a duplicate would show up.
    pub async fn settle(&mut self, quiet: Duration) {
        while self.read_one(quiet).await {}
    }

    /// Messages that arrived again under an id that had arrived before (a publish repeated).
    pub fn repeats(&self) -> u32 {
        self.ids.values().map(|n| n - 1).sum()
    }

    /// How many times an event of `status` for `job_id` went over the wire.
    pub fn count(&self, job_id: &str, status: JobStatus) -> usize {
        self.seen.iter().filter(|e| e.job_id == job_id && e.status == status).count()
    }

    /// Terminal events of the operation on the wire.
    pub fn outcomes_of(&self, operation_id: &str) -> usize {
        self.seen.iter().filter(|e| e.operation_id == operation_id && e.status.is_terminal()).count()
    }

    /// The lines published for an operation, one list per build (`published::by_build`), as a
    /// follower prints them without time.
    pub fn published_lines(&self, operation_id: &str) -> Vec<Vec<String>> {
        let messages: Vec<(String, Vec<String>)> = self
            .logs
            .get(operation_id)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|(id, lines)| (id.clone(), lines.iter().map(LogLine::render).collect()))
            .collect();
        super::published::by_build(&messages)
    }
}

pub fn terminal(events: &[JobEvent], job_id: &str) -> Option<JobEvent> {
    events.iter().find(|e| e.job_id == job_id && e.status.is_terminal()).cloned()
}

pub async fn submit(topology: &Topology, job: &BuildJob) {
    apprunner_build::queue::client::submit(&brokers(), topology, job, queue::Lane::User, None).await.unwrap();
}

/// Messages ready in `queue` (a passive declaration).
pub async fn ready_in(queue: &str) -> u32 {
    let conn = brokers().connect("test-look").await.unwrap();
    let ch = conn.channel().await.unwrap();
    let n = ch.look(queue).await.unwrap().ready;
    conn.close("looked").await;
    n
}

/// Puts a second terminal event on the wire for the first terminal event of each operation
/// that `matches`: under the same message id (`<operation-id>.outcome`, as any repeat has) but
/// saying FAILED where the first said SUCCEEDED (and SUCCEEDED where it said FAILED), so a
/// reader that took the second would show it. Runs until aborted; how many it echoed.
pub async fn echo_outcomes(
    topology: &Topology,
    matches: impl Fn(&JobEvent) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<usize> {
    let topology = topology.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let conn = brokers().connect("test-echo").await.unwrap();
        let ch = conn.channel().await.unwrap();
        let q = ch.private_queue().await.unwrap();
        for status in JobStatus::TERMINAL {
            ch.bind(&q, &topology.events(), &Topology::event_key("*", status.key())).await.unwrap();
        }
        let mut heard = ch.consume_unacked(&q).await.unwrap();
        ready_tx.send(()).unwrap();
        let publisher = queue::Publisher::new(&brokers(), "test-echo-publisher");
        let mut echoed = std::collections::HashSet::new();
        while let Some(Ok(d)) = heard.next().await {
            let Ok(mut event) = serde_json::from_slice::<JobEvent>(d.body()) else { continue };
            if !matches(&event) || !echoed.insert(event.operation_id.clone()) {
                continue;
            }
            event.status = if event.status == JobStatus::Succeeded { JobStatus::Failed } else { JobStatus::Succeeded };
            event.error = Some(FailureInfo { class: ErrorClass::Internal, message: "a second outcome".into() });
            let payload = serde_json::to_vec(&event).unwrap();
            let id = format!("{}.outcome", event.operation_id);
            let key = Topology::event_key(&event.operation_id, event.status.key());
            let exchange = topology.events();
            let msg = queue::Outgoing { message_id: Some(&id), ..queue::Outgoing::new(&exchange, &key, &payload) };
            publisher.publish(&msg).await.unwrap();
        }
        echoed.len()
    });
    tokio::time::timeout(Duration::from_secs(30), ready_rx).await.unwrap().unwrap();
    task
}
