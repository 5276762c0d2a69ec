//! The watcher's cost at a fleet's size: `cargo run --release --example watch_load [SERVICES
//! [INTERVAL [SECONDS]]]` (default 1,000 services, a look at each every 20 s, measured 40 s).
//!
//! Needs docker/stack (RabbitMQ). Starts a git host over HTTPS on loopback (`git http-backend`,
//! the tests' host, with a CA of its own) holding 50 repositories, a services file of SERVICES
//! services spread over them, and a watcher of the release binary on fresh queues. Its first
//! round submits every service's first deployment (no worker builds them); then it is measured
//! in its steady state: core-milliseconds per look from `/proc/<pid>/stat`, scaled to a look at
//! every service once a minute, and its resident memory, against a reference measured in the
//! same run: a `git ls-remote` of the same host (what a watcher that shells out to git would
//! pay per look). An idle watcher's memory (one service, not followed) is measured too.
// Benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

/// The tests' git host over smart HTTP(S).
#[path = "../tests/common/git_http.rs"]
mod git_http;

/// `files` committed in a new git repository, on branch `main`.
fn committed(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "the app"]);
    dir
}

use apprunner_build::queue::transport::{Brokers, Topology};
use git_http::{certificates, git, GitHost, HostOptions};
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const BIN: &str = "target/release/apprunner-build";
const REPOSITORIES: usize = 50;

/// Core-seconds a process has spent (user and system), from `/proc/<pid>/stat`.
fn core_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(") ").unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

/// The looks the watcher has made, from its metrics.
async fn looks(metrics: &str) -> f64 {
    // None yet while the watcher starts.
    let Ok(answer) = reqwest::get(format!("http://{metrics}/metrics")).await else { return 0.0 };
    let said = answer.text().await.unwrap();
    said.lines()
        .filter(|l| l.starts_with("apprunner_watch_looks_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A watcher process, killed when dropped: a benchmark that fails leaves none running.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_watcher(
    prefix: &str,
    services: &std::path::Path,
    state: &std::path::Path,
    interval: u64,
    metrics: &str,
) -> Running {
    Running(
        Command::new(BIN)
            .args(["watch", "--queue-prefix", prefix, "--amqp", AMQP, "--metrics-addr", metrics])
            .args(["--poll-interval", &interval.to_string()])
            .arg("--services")
            .arg(services)
            .arg("--state-dir")
            .arg(state)
            .env("APPRUNNER_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().unwrap()).collect();
    let (n, interval, seconds) =
        (args.first().copied().unwrap_or(1000), args.get(1).copied().unwrap_or(20), args.get(2).copied().unwrap_or(40));
    assert!(std::path::Path::new(BIN).exists(), "build it first: cargo build --release");
    let dir = tempfile::tempdir().unwrap();
    let (chain, key, bundle) = certificates(dir.path());
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::set_var("GIT_SSL_CAINFO", &bundle);
    let host = GitHost::start_with(HostOptions { v2: true, tls: Some((chain, key)), basic_auth: None }).await;
    let app = committed(&[("apprunner.yaml", "version: 1.0\nruntime: python3\nrun:\n  command: python app.py\n")]);
    let urls: Vec<String> = (0..REPOSITORIES).map(|i| host.publish(app.path(), &format!("repo{i}"))).collect();
    let mut file = String::from("services:\n");
    for i in 0..n {
        let url = &urls[usize::try_from(i).unwrap() % REPOSITORIES];
        let _ = write!(
            file,
            "  - name: svc-{i:05}\n    repository: {url}\n    image: 127.0.0.1:5000/apprunner-bench/svc-{i:05}\n"
        );
    }
    let services = dir.path().join("services.yaml");
    std::fs::write(&services, file).unwrap();
    let prefix = format!("bench-watch-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    println!("watch_load: {n} services on {REPOSITORIES} repositories of an HTTPS git host, a look at each every {interval}s");

    let watcher = start_watcher(&prefix, &services, &dir.path().join("state"), interval, &metrics);
    let pid = watcher.0.id();
    // The first round (every service's first deployment submitted), then one more interval.
    let began = Instant::now();
    while looks(&metrics).await < n as f64 * 2.0 {
        assert!(
            began.elapsed() < Duration::from_secs(interval * 10 + 120),
            "the watcher did not look at every service twice"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("first round and a second done in {:.1}s", began.elapsed().as_secs_f64());
    let (cpu0, looks0) = (core_seconds(pid), looks(&metrics).await);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, looks1) = (core_seconds(pid), looks(&metrics).await);
    let rss = rss_mib(pid);
    drop(watcher);
    let per_look_ms = (cpu1 - cpu0) * 1000.0 / (looks1 - looks0).max(1.0);
    let per_minute = per_look_ms * n as f64 / 60_000.0 * 100.0;

    // The reference: `git ls-remote` of the same host, as many times, its own CPU (bash's `times`).
    let m = 100;
    let script = format!("for i in $(seq {m}); do git ls-remote {} refs/heads/main >/dev/null; done; times", urls[0]);
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let times = String::from_utf8_lossy(&out.stdout);
    let child = times.lines().nth(1).unwrap_or_default();
    let secs = |s: &str| -> f64 {
        let (min, rest) = s.split_once('m').unwrap();
        min.parse::<f64>().unwrap() * 60.0 + rest.trim_end_matches('s').parse::<f64>().unwrap()
    };
    let reference_ms = child.split_whitespace().map(secs).sum::<f64>() * 1000.0 / f64::from(m);

    // An idle watcher: one service, not followed.
    let idle_file = dir.path().join("idle.yaml");
    std::fs::write(&idle_file, format!("services:\n  - name: idle-one\n    repository: {}\n    image: 127.0.0.1:5000/x/y\n    auto-deploy: false\n", urls[0])).unwrap();
    let idle_metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let idle = start_watcher(&prefix, &idle_file, &dir.path().join("idle"), interval, &idle_metrics);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_rss = rss_mib(idle.0.id());
    drop(idle);

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!("looks measured: {:.0} in {seconds}s", looks1 - looks0);
    println!("watcher: {per_look_ms:.3} core-ms per look; reference `git ls-remote`: {reference_ms:.3} core-ms per look; ratio {:.3}", per_look_ms / reference_ms);
    println!(
        "{n} services looked at once a minute: {per_minute:.2}% of one core (target under 5%: {})",
        verdict(per_minute < 5.0)
    );
    println!(
        "RSS: {rss:.1} MiB with {n} services; idle {idle_rss:.1} MiB (target under 30 MB: {})",
        verdict(idle_rss * 1.048_576 < 30.0)
    );

    let link = Brokers::parse(AMQP).unwrap().connect("bench-cleanup").await.unwrap();
    Topology::new(&prefix).remove(&link, std::iter::empty()).await;
    link.close("cleaned").await;
    drop(host);
}
