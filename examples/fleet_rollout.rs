//! A roll-out at a fleet's size: `cargo run --release --example fleet_rollout [N]` (default 200).
//!
//! Needs docker/stack; the nodejs18 18.20.6 and 18.20.8 runtime images are made first when
//! missing. On fresh queues: two workers that hold nodejs18 at 18.20.6 deploy N services (each
//! its own repository and image; half a revised build a rebase can move, half with pre-run
//! commands, which must be rebuilt); two ordinary workers replace them; users' deployments (a
//! new commit each) are timed from submission to their start, one every 2 s, first on the idle
//! fleet, then during `roll-out --runtime nodejs18 --to-version 18.20.8` (one every 3 s until
//! the roll-out ends). Prints, last: `roll-out of N services: T s, R rebased, B rebuilt, X
//! core-seconds per service; users' deployments waited p50 A s, p95 B s (idle: p50 C s, p95 D
//! s)`, and whether every service ended on 18.20.8 with nothing failed.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use apprunner_build::core::config::ConfigSource;
use apprunner_build::queue::subscription::{Interest, Subscription};
use apprunner_build::queue::transport::{self as queue, Lane, Topology};
use apprunner_build::queue::wire::job::{
    BuildJob, Configuration, ImageTarget, JobEvent, JobStatus, Repository, Service, JOB_VERSION,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const FROM: &str = "18.20.6";
const TO: &str = "18.20.8";

/// What the events said so far: when each operation started and how it ended, and which were
/// the roll-out's (batch work says so on its QUEUED event).
#[derive(Default)]
struct Seen {
    started: HashMap<String, Instant>,
    ended: HashMap<String, JobEvent>,
    batch: HashSet<String>,
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(["-c", "user.email=fleet@example.com", "-c", "user.name=fleet"])
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// Service `i`'s repository: a Node.js app without packages; every other one has pre-run.
fn repository(root: &Path, i: usize) -> PathBuf {
    let dir = root.join(format!("service-{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let pre_run = if i % 2 == 1 { "  pre-run:\n    - echo ready > ready.txt\n" } else { "" };
    let yaml = format!("version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - echo built > built.txt\nrun:\n{pre_run}  command: node app.js\n  network:\n    port: 8080\n");
    std::fs::write(dir.join("apprunner.yaml"), yaml).unwrap();
    std::fs::write(
        dir.join("app.js"),
        format!("// service {i}\nrequire('http').createServer((q, s) => s.end(process.version)).listen(8080);\n"),
    )
    .unwrap();
    git(&dir, &["init", "-q", "-b", "main"]);
    git(&dir, &["add", "."]);
    git(&dir, &["commit", "-q", "-m", "one"]);
    dir
}

/// A new commit of `dir` (a user's change).
fn change(dir: &Path) {
    std::fs::write(dir.join("change.txt"), uuid::Uuid::new_v4().to_string()).unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "a change"]);
}

fn job(prefix: &str, i: usize, dir: &Path) -> BuildJob {
    let op = uuid::Uuid::new_v4().simple().to_string();
    BuildJob {
        version: JOB_VERSION,
        job_id: format!("fleet-{i}-{}", &op[..8]),
        operation_id: op,
        service: Service { name: format!("{prefix}-service-{i}"), id: None },
        repository: Repository {
            url: format!("file://{}", dir.display()),
            branch: Some("main".into()),
            commit: None,
            source_directory: "/".into(),
        },
        configuration: Configuration { source: ConfigSource::Repository, values: None },
        image: ImageTarget { repository: format!("127.0.0.1:5000/apprunner-bench/{prefix}-{i}"), tag: None },
        deadline: None,
        trigger: None,
        rollout: None,
        submitted_at: None,
    }
}

fn workers(bin: &Path, prefix: &str, names: &[&str], extra: &[&str]) -> Vec<Child> {
    let spawn = |id: &&str| {
        Command::new(bin)
            .args(["worker", "--queue-prefix", prefix, "--worker-id", id, "--concurrency", "4"])
            .args(["--metrics-addr", "off"])
            .args(extra)
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    names.iter().map(spawn).collect()
}

/// Stops the workers as a scale-down does (SIGTERM) and waits for them.
fn stop(children: Vec<Child>) {
    for mut child in children {
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let _ = child.wait();
    }
}

/// Core-seconds every process on this machine has spent so far (`/proc/stat`'s busy columns).
fn machine_core_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]) as f64 / 100.0
}

/// The `p`th percentile (0..=100) of `values`, by nearest rank.
fn percentile(values: &[f64], p: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

async fn wait_until(seen: &Arc<Mutex<Seen>>, limit: Duration, what: &str, done: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + limit;
    while !done(&seen.lock().unwrap()) {
        assert!(Instant::now() < deadline, "{what} did not happen within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Users' deployments, one every `every`, until `until` says stop (at least `at_least`): each
/// a new commit of a service, timed from submission to its start. Returns their waits.
async fn users(
    topology: &Topology,
    seen: &Arc<Mutex<Seen>>,
    services: &[(PathBuf, usize)],
    prefix: &str,
    every: Duration,
    at_least: usize,
    until: impl Fn(&Seen) -> bool,
) -> Vec<f64> {
    let brokers = queue::Brokers::parse(AMQP).unwrap();
    let mut submitted: Vec<(String, Instant)> = Vec::new();
    let mut n = 0;
    while n < at_least || !until(&seen.lock().unwrap()) {
        let (dir, i) = &services[(n * 7919) % services.len()];
        change(dir);
        let j = job(prefix, *i, dir);
        submitted.push((j.operation_id.clone(), Instant::now()));
        apprunner_build::queue::client::submit(&brokers, topology, &j, Lane::User, None).await.unwrap();
        n += 1;
        tokio::time::sleep(every).await;
    }
    let ops: Vec<String> = submitted.iter().map(|(op, _)| op.clone()).collect();
    wait_until(seen, Duration::from_secs(900), "the users' deployments", |s| {
        ops.iter().all(|o| s.ended.contains_key(o))
    })
    .await;
    let s = seen.lock().unwrap();
    for (op, _) in &submitted {
        assert_eq!(s.ended[op].status, JobStatus::Succeeded, "a user's deployment failed: {:?}", s.ended[op].error);
    }
    submitted.iter().map(|(op, at)| s.started[op].duration_since(*at).as_secs_f64()).collect()
}

// A benchmark script, read top to bottom.
#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("apprunner-build");
    assert!(bin.exists(), "build the binary first: cargo build --release");
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let made = Command::new(top.join("docker/runtime-images"))
        .args([format!("nodejs18={FROM}"), format!("nodejs18={TO}")])
        .status();
    assert!(made.unwrap().success(), "docker/runtime-images nodejs18");
    let root = tempfile::tempdir().unwrap();
    let prefix = format!("fleet-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topology = Topology::new(&prefix);
    let brokers = queue::Brokers::parse(AMQP).unwrap();
    let events = Subscription::open(&brokers, &topology, "fleet", Interest::AllEvents).await.unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = tokio::spawn(listen(events, seen.clone()));

    println!("[fleet] {n} services deployed on nodejs18 {FROM} (held) by two workers");
    let deploying = Instant::now();
    let services: Vec<(PathBuf, usize)> = (0..n).map(|i| (repository(root.path(), i), i)).collect();
    let held = workers(&bin, &prefix, &["held-a", "held-b"], &["--hold-runtime", &format!("nodejs18={FROM}")]);
    let mut first = Vec::new();
    for (dir, i) in &services {
        let j = job(&prefix, *i, dir);
        first.push(j.operation_id.clone());
        apprunner_build::queue::client::submit(&brokers, &topology, &j, Lane::User, None).await.unwrap();
    }
    let limit = Duration::from_secs(60 + 10 * n as u64);
    wait_until(&seen, limit, "the first deployments", |s| first.iter().all(|o| s.ended.contains_key(o))).await;
    assert!(
        first.iter().all(|o| seen.lock().unwrap().ended[o].status == JobStatus::Succeeded),
        "a first deployment failed"
    );
    println!("[fleet] deployed in {:.0} s", deploying.elapsed().as_secs_f64());
    // Still held: the fleet before the roll-out, whose users' deployments stay on 18.20.6.
    println!("[fleet] users' deployments on the idle fleet: one every 2 s");
    let idle = users(&topology, &seen, &services, &prefix, Duration::from_secs(2), 15, |_| true).await;
    // The hold lifted, as an operator does before a roll-out: workers restarted without it.
    stop(held);
    let fleet = workers(&bin, &prefix, &["a", "b"], &[]);

    println!("[fleet] roll-out of nodejs18 to {TO}, users' deployments one every 3 s meanwhile");
    let (began, cores) = (Instant::now(), machine_core_seconds());
    // Its own services only: the records of every service built against this registry are
    // shared (other runs', the tests').
    let names: Vec<String> = (0..n).flat_map(|i| ["--service".to_string(), format!("{prefix}-service-{i}")]).collect();
    let rollout = Command::new(&bin)
        .args(["roll-out", "--runtime", "nodejs18", "--to-version", TO, "--queue-prefix", &prefix])
        .args(&names)
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&rollout.stdout), String::from_utf8_lossy(&rollout.stderr));
    assert!(rollout.status.success(), "roll-out failed:\n{out}{err}");
    // Its last line: `…; N jobs submitted`.
    let submitted: usize = out
        .lines()
        .last()
        .and_then(|l| l.strip_suffix(" jobs submitted")?.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("roll-out said: {out}"));
    println!("[fleet] roll-out submitted {submitted} jobs");
    let rolled = |s: &Seen| s.batch.len() >= submitted && s.batch.iter().all(|o| s.ended.contains_key(o));
    let during = users(&topology, &seen, &services, &prefix, Duration::from_secs(3), 5, rolled).await;
    wait_until(&seen, Duration::from_secs(60 + 10 * n as u64), "the roll-out", rolled).await;
    let took = began.elapsed().as_secs_f64();
    let per_service = (machine_core_seconds() - cores) / n as f64;
    stop(fleet);
    listener.abort();

    report(&seen.lock().unwrap(), n, took, per_service, &idle, &during);
}

/// Folds the events heard into `seen` until the subscription ends.
async fn listen(mut events: Subscription, seen: Arc<Mutex<Seen>>) {
    while let Some(Ok(e)) = events.next_event().await {
        let mut s = seen.lock().unwrap();
        match e.status {
            JobStatus::Queued if e.batch => {
                s.batch.insert(e.operation_id.clone());
            }
            JobStatus::InProgress => {
                s.started.entry(e.operation_id.clone()).or_insert_with(Instant::now);
            }
            status if status.is_terminal() => {
                s.ended.entry(e.operation_id.clone()).or_insert(e);
            }
            _ => {}
        }
    }
}

/// Prints whether every service ended on the new version, and the roll-out's line.
fn report(s: &Seen, n: usize, took: f64, per_service: f64, idle: &[f64], during: &[f64]) {
    let rollout: Vec<&JobEvent> = s.batch.iter().map(|o| &s.ended[o]).collect();
    let failed = rollout.iter().filter(|e| e.status != JobStatus::Succeeded).count();
    let rebased = rollout.iter().filter(|e| e.rebased_from.is_some()).count();
    // Each service's last outcome, by when it ended: on the new version?
    let mut last: BTreeMap<&str, &JobEvent> = BTreeMap::new();
    for e in s.ended.values() {
        let kept = last.entry(e.service.name.as_str()).or_insert(e);
        if e.at > kept.at {
            *kept = e;
        }
    }
    let behind = last.values().filter(|e| e.runtime_version.as_deref() != Some(TO)).count();
    println!(
        "[fleet] every service on {TO}: {}; roll-out deployments failed: {failed}",
        if behind == 0 { "yes".to_string() } else { format!("no, {behind} behind") }
    );
    println!(
        "roll-out of {n} services: {took:.0} s, {rebased} rebased, {} rebuilt, {per_service:.2} core-seconds per service; users' deployments waited p50 {:.2} s, p95 {:.2} s (idle: p50 {:.2} s, p95 {:.2} s)",
        rollout.len() - rebased - failed,
        percentile(during, 50),
        percentile(during, 95),
        percentile(idle, 50),
        percentile(idle, 95),
    );
}
