//! The queue on a three-node `RabbitMQ` cluster of the test's own (its own node names, ports and
//! directories, torn down at the end; the machine's node is never touched), losing a node twice:
//!
//! 1. Stopped: the node the workers and four `submit --wait` followers are on goes while jobs
//!    wait for an operation built elsewhere (each published twice) and the followers' builds
//!    run. Every follower exits with its deployment's real outcome, having printed its log to
//!    the end; every operation ends with one terminal event; no job is left waiting.
//! 2. Killed (SIGKILL): the node a worker on a `BuildKit` that is down is on goes while its jobs
//!    wait out a transient fault's backoff; `BuildKit` comes back. Every job succeeds on a later
//!    attempt, each retry started within 3 s of its due time (docs/reliability.md).
//!
//! Bounded in time; it prints its figures.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::queue::transport::{Brokers, Lane, Topology};
use apprunner_build::queue::wire::job::*;
use common::cluster::{ctl, Cluster};
use common::faults::FlakyDocker;
use common::queue::*;
use std::process::Command;
use std::time::{Duration, Instant};

/// What a worker's /healthz says: (connected, node).
async fn health(port: u16) -> (bool, String) {
    let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await else {
        return (false, String::new());
    };
    let ok = resp.status().is_success();
    let body = resp.text().await.unwrap_or_default();
    let node = body.split("broker node ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("").to_string();
    (ok, node)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A job whose build runs `command` (none is cached: each test's commands are its own).
fn job_running(url: &str, service: &str, command: &str) -> BuildJob {
    let mut j = job(url, service);
    j.configuration = Configuration {
        source: apprunner_build::core::config::ConfigSource::Api,
        values: Some(serde_json::json!({
            "Runtime": "PYTHON_3",
            "BuildCommand": command,
            "StartCommand": "python -m http.server 8080",
            "Port": "8080",
        })),
    };
    j
}

fn at(e: &JobEvent) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(&e.at, &time::format_description::well_known::Rfc3339).unwrap()
}

/// Waits until every worker on `ports` says it is connected to a node other than `not`; the
/// seconds since `began` (when the node was lost).
async fn moved(ports: &[u16], not: &str, began: Instant, limit: Duration) -> f64 {
    loop {
        let mut all = true;
        for p in ports {
            let (ok, node) = health(*p).await;
            all &= ok && node != not;
        }
        if all {
            return began.elapsed().as_secs_f64();
        }
        assert!(began.elapsed() < limit, "workers did not move off {not} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test's cluster, queue prefix, app and listener (on the last node, never stopped).
struct World {
    cluster: Cluster,
    prefix: String,
    tag: String,
    topology: Topology,
    url: String,
    _app: tempfile::TempDir,
    listener: Brokers,
    events: Events,
}

impl World {
    async fn new() -> Self {
        let cluster = Cluster::start(3);
        let prefix = prefix();
        let tag = prefix[5..].to_string();
        // As every command given the three nodes declares it.
        let topology = Topology::new(&prefix).with_quorum_size(Some(3));
        let (app, url) = repo("echo unused");
        let listener = Brokers::parse(&cluster.nodes[2].uri()).unwrap();
        let events = Events::listen_on(&listener, &topology).await;
        World { cluster, prefix, tag, topology, url, _app: app, listener, events }
    }

    async fn submit(&self, job: &BuildJob) {
        apprunner_build::queue::client::submit(&self.listener, &self.topology, job, Lane::User, None).await.unwrap();
    }

    /// A worker given every node, first node first, serving /healthz; returns once connected.
    async fn worker(&self, id: &str, args: &[&str]) -> (Worker, u16) {
        let port = free_port();
        let w = Worker::on(&self.cluster.uris_from(0), &format!("127.0.0.1:{port}"), &self.prefix, id, args);
        while !health(port).await.0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        (w, port)
    }

    /// `submit --wait` of the app in `dir`, given every node, first node first.
    fn follower(&self, dir: &std::path::Path) -> std::process::Child {
        Command::new(BIN)
            .args(["submit", dir.to_str().unwrap(), "--queue-prefix", &self.prefix, "--wait"])
            .args(["--amqp", &self.cluster.uris_from(0), "--wait-timeout", "400", "--no-timestamps"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn worker_logs(&self, ids: &[&str]) -> String {
        let log = |id: &str| std::fs::read_to_string(std::env::temp_dir().join(format!("{}-{id}.log", self.prefix)));
        ids.iter().map(|id| log(id).unwrap_or_default()).collect()
    }

    /// Until nothing of the prefix waits or is queued (a bounded while).
    async fn nothing_left(&self) {
        let began = Instant::now();
        loop {
            let waiting: Vec<_> =
                self.cluster.messages_in(&self.prefix, ".wait.").into_iter().filter(|(_, n)| *n > 0).collect();
            let queued: u64 = self.cluster.messages_in(&self.prefix, ".jobs").iter().map(|(_, n)| n).sum();
            if waiting.is_empty() && queued == 0 {
                return;
            }
            assert!(began.elapsed() < Duration::from_secs(30), "left waiting: {waiting:?}, queued: {queued}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    fn assert_one_success(&self, jobs: &[BuildJob]) {
        for j in jobs {
            let all: Vec<_> = self.events.seen.iter().filter(|e| e.job_id == j.job_id).collect();
            let counts =
                (self.events.count(&j.job_id, JobStatus::Succeeded), self.events.count(&j.job_id, JobStatus::Failed));
            assert_eq!(counts, (1, 0), "job {}: {all:#?}", j.job_id);
        }
    }
}

/// 1: the node the workers and four followers are on stops while copies of three jobs wait for
/// their twins' builds and the followers' builds run. Returns the phase's figures.
async fn stop_the_node_of_workers_and_followers(w: &mut World) -> String {
    let (w0, p0) = w.worker("w0", &["--concurrency", "2"]).await;
    let (w1, p1) = w.worker("w1", &["--concurrency", "2"]).await;
    let (_, on) = health(p0).await;
    assert_eq!(w.cluster.index_of(&on), 0, "the workers start on the first node they are given");
    // The workers declared the quorum queues with a member on each node.
    let listed = ctl(&w.cluster.nodes[2].name, &["list_queues", "-q", "name", "members"]);
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    let jobs_line = listed.lines().find(|l| l.starts_with(&format!("{}.jobs", w.prefix))).unwrap_or_default();
    assert_eq!(jobs_line.matches("@localhost").count(), 3, "{listed}");

    let tag = w.tag.clone();
    let twins: Vec<BuildJob> =
        (0..3).map(|i| job_running(&w.url, &format!("twin-{i}"), &format!("sleep 4; echo {tag} twin {i}"))).collect();
    for j in twins.iter().chain(&twins) {
        w.submit(j).await;
    }
    let apps: Vec<(tempfile::TempDir, String)> =
        (0..4).map(|i| repo(&format!("sleep 6; echo {tag} followed {i}"))).collect();
    let followers: Vec<std::process::Child> = apps.iter().map(|(dir, _)| w.follower(dir.path())).collect();
    // Once a copy waits for its twin and a followed build runs, the node goes.
    let twin_ids: Vec<&str> = twins.iter().map(|j| j.job_id.as_str()).collect();
    let began = Instant::now();
    loop {
        w.events.settle(Duration::from_millis(200)).await;
        let followed =
            w.events.seen.iter().any(|e| e.status == JobStatus::InProgress && !twin_ids.contains(&e.job_id.as_str()));
        if followed && w.worker_logs(&["w0", "w1"]).contains("being built elsewhere") {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(180), "no deferral and followed build: {:#?}", w.events.seen);
    }
    let stopping = Instant::now();
    w.cluster.nodes[0].stop();
    let failover = moved(&[p0, p1], &on, stopping, Duration::from_secs(120)).await;
    w.events.until(Duration::from_secs(300), |seen| twins.iter().all(|j| terminal(seen, &j.job_id).is_some())).await;
    let mut outputs = Vec::new();
    for mut f in followers {
        while f.try_wait().unwrap().is_none() {
            assert!(stopping.elapsed() < Duration::from_secs(400), "a follower did not end");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        outputs.push(f.wait_with_output().unwrap());
    }
    let done = stopping.elapsed().as_secs_f64();
    w.events.settle(Duration::from_secs(3)).await;
    let mut ops = Vec::new();
    for (i, out) in outputs.iter().enumerate() {
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "follower {i} exited {:?}:\n{stdout}\n{stderr}", out.status.code());
        assert!(stdout.lines().last().unwrap_or("").contains("@sha256:"), "follower {i}:\n{stdout}");
        let op = stdout.lines().next().unwrap_or("").trim_start_matches("operation ").to_string();
        let said = || {
            // Job ids carry the operation's first 12 digits.
            let logs = w.worker_logs(&["w0", "w1"]);
            logs.lines().filter(|l| op.len() >= 12 && l.contains(&op[..12])).collect::<Vec<_>>().join("\n")
        };
        // Its build's own output, whatever the builder managed to publish.
        assert!(
            stdout.contains(&format!("{tag} followed {i}")),
            "follower {i} missed its build's lines:\n{stdout}\nthe workers on it:\n{}",
            said()
        );
        // Every line any worker published for the operation, each build's in its order.
        if let Err(line) = common::published::printed_all(&w.events.published_lines(&op), &stdout) {
            panic!(
                "follower {i} did not print `{line}` (published for {op}):\n{stdout}\nthe workers on it:\n{}",
                said()
            );
        }
        ops.push(op);
    }
    w.assert_one_success(&twins);
    // Counted on the wire: one terminal event per deployment.
    for op in twins.iter().map(|j| &j.operation_id).chain(&ops) {
        assert_eq!(w.events.outcomes_of(op), 1, "operation {op}: {:#?}", w.events.seen);
    }
    // The copies that waited came back and were recognised; nothing is left.
    w.nothing_left().await;
    w.cluster.nodes[0].start();
    drop((w0, w1));
    format!(
        "stopped the workers' and {} followers' node while copies waited for their twins: workers moved in {failover:.1}s, all {} deployments ended {done:.1}s after the stop, each follower with its outcome and every line its build published",
        outputs.len(),
        twins.len() + outputs.len()
    )
}

/// 2: a worker whose `BuildKit` is down backs off (1, 2, 4, 8 s) while the node it is on is
/// killed; `BuildKit` comes back. Returns the phase's figures.
async fn kill_the_node_of_a_backing_off_worker(w: &mut World) -> String {
    let mut docker = FlakyDocker::new();
    let args = ["--buildkit", &docker.addr(), "--max-attempts", "6", "--concurrency", "3"];
    let (_flaky, port) = w.worker("w2", &args).await;
    let (_, on) = health(port).await;
    let tag = w.tag.clone();
    let jobs: Vec<BuildJob> =
        (0..3).map(|i| job_running(&w.url, &format!("backoff-{i}"), &format!("echo {tag} backoff {i}"))).collect();
    for j in &jobs {
        w.submit(j).await;
    }
    let retried = |seen: &[JobEvent], j: &BuildJob| {
        seen.iter().any(|e| e.job_id == j.job_id && e.status == JobStatus::Queued && e.attempt == Some(2))
    };
    w.events.until(Duration::from_secs(120), |seen| jobs.iter().all(|j| retried(seen, j))).await;
    let killing = Instant::now();
    w.cluster.nodes[w.cluster.index_of(&on)].kill();
    let failover = moved(&[port], &on, killing, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    docker.up();
    w.events.until(Duration::from_secs(300), |seen| jobs.iter().all(|j| terminal(seen, &j.job_id).is_some())).await;
    let done = killing.elapsed().as_secs_f64();
    w.events.settle(Duration::from_secs(2)).await;
    w.assert_one_success(&jobs);
    // Each retry starts within 3 s of its due time (a mover looks each second): the wait, and what a worker needs
    // to take a job (a connection, a lease).
    let mut latest = 0.0f64;
    for j in &jobs {
        for attempt in 2..=6u32 {
            let of = |status| {
                w.events.seen.iter().find(|e| e.job_id == j.job_id && e.status == status && e.attempt == Some(attempt))
            };
            let (Some(queued), Some(started)) = (of(JobStatus::Queued), of(JobStatus::InProgress)) else { continue };
            let late = (at(started) - at(queued)).as_seconds_f64() - f64::from(1u32 << (attempt - 2));
            latest = latest.max(late);
            assert!(late < 3.0, "job {} attempt {attempt} started {late:.1}s after it was due", j.job_id);
        }
    }
    w.nothing_left().await;
    format!(
        "killed a backing-off worker's node: it moved in {failover:.1}s, all {} jobs succeeded {done:.1}s after the kill, the latest retry started {latest:.1}s past due",
        jobs.len()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn deployments_and_their_followers_ride_through_the_loss_of_a_broker_node() {
    let began = Instant::now();
    let mut w = World::new().await;
    eprintln!("three-node cluster formed in {:.1}s", began.elapsed().as_secs_f64());
    let stopped = stop_the_node_of_workers_and_followers(&mut w).await;
    let killed = kill_the_node_of_a_backing_off_worker(&mut w).await;
    eprintln!(
        "FIGURES: {stopped}; {killed}; terminal events on the wire {} (one per deployment), messages published again {}; {:.0}s in all",
        w.events.seen.iter().filter(|e| e.status.is_terminal()).count(),
        w.events.repeats(),
        began.elapsed().as_secs_f64()
    );
}
