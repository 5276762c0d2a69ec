//! A soak of the queue under faults, with a checker of its own.
//!
//! ```sh
//! cargo build --release --examples && cargo build --release
//! target/release/examples/chaos --minutes 8 [--seed S]
//! ```
//!
//! A three-node `RabbitMQ` cluster of its own (as `tests/broker_cluster.rs` starts one), three
//! workers of the release binary given every node, and a stream of deployments from a seeded
//! schedule (printed; `--seed` replays it): `submit --wait` followers and plain submits, some
//! cancelled, some failing on purpose (a build command that exits 1), some batch, several
//! services deploying more than once. Faults, one at a time: a worker killed (SIGKILL) mid-build,
//! a broker node stopped and started, a node's VM killed and started, the registry unreachable
//! for 20-40 s (a proxy in front of it, which the workers use), BuildKit unreachable for 20 s (a
//! proxy in front of the Docker socket), a follower killed and its deployment read with
//! `status`. The third node is never touched: the checker listens there.
//!
//! The checker shares no code path with the worker's reporting: a raw consumer of the events
//! and logs exchanges, the registry read over HTTP, each follower's output. It checks that every
//! deployment ended; with exactly one terminal event on the wire (a repeat is named when the
//! worker logged the one window the design leaves, an outcome published again after its
//! confirm was lost with its connection); that SUCCEEDED means the image is at its tag with
//! the reported digest and annotations naming the operation, CANCELLED that nothing was pushed,
//! FAILED only for the deployments meant to fail, with their reason; that every follower printed
//! every line its build published; that no job is left in any queue. Its last line:
//! `chaos: N deployments, F faults (kinds), lost 0, duplicated D, stuck 0, incomplete 0, wrong 0, seed S`.
//! It exits 1 when any count but the named duplicates is not zero.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/common/cluster.rs"]
mod cluster;
#[path = "../../tests/common/faults.rs"]
mod faults;
mod plan;
#[path = "../../tests/common/published.rs"]
mod published;
mod wire;

use plan::{Fault, FaultKind, Planned};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

/// How long, after the last submission, deployments may take to end.
const DRAIN: Duration = Duration::from_secs(480);

struct Args {
    minutes: u64,
    seed: u64,
}

fn args() -> Args {
    let mut args = Args { minutes: 8, seed: 0 };
    let mut seeded = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let value = it.next().unwrap_or_default();
        match a.as_str() {
            "--minutes" => args.minutes = value.parse().expect("--minutes takes a whole number"),
            "--seed" => {
                args.seed = value.parse().expect("--seed takes a whole number");
                seeded = true;
            }
            _ => panic!("usage: chaos [--minutes M] [--seed S]"),
        }
    }
    if !seeded {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        args.seed = u64::try_from(now % 1_000_000_007).unwrap_or(1);
    }
    args
}

/// The release binary beside this example (`target/release/examples/chaos`).
fn release_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("apprunner-build");
    assert!(bin.exists(), "{} is missing: cargo build --release", bin.display());
    bin
}

/// Prints a line of the soak, stamped with the seconds since it began.
fn say(began: Instant, what: &str) {
    println!("[chaos {:6.1}s] {what}", began.elapsed().as_secs_f64());
}

/// A deployment as the soak submitted it, and what came of its follower and cancel.
struct Tracked {
    planned: Planned,
    op: String,
    repository: String,
    follower: Option<Child>,
    /// The follower's exit code, once it exited by itself (-1: by a signal).
    follower_exit: Option<i32>,
    follower_killed: bool,
    /// `cancel`'s exit code, once it ran (-1: by a signal).
    cancel_exit: Option<i32>,
}

/// The soak's world: its cluster, proxies, workers, and what it submitted.
struct Soak {
    bin: PathBuf,
    prefix: String,
    tag: String,
    dir: tempfile::TempDir,
    cluster: Arc<cluster::Cluster>,
    registry: faults::FlakyPort,
    docker: faults::FlakyDocker,
    workers: Vec<Option<Child>>,
    tracked: Vec<Tracked>,
}

impl Soak {
    /// The nodes' URIs, node `first` first (workers and clients are spread over nodes 0 and 1).
    fn amqp(&self, first: usize) -> String {
        self.cluster.uris_from(first)
    }

    fn registry(&self) -> String {
        format!("127.0.0.1:{}", self.registry.port)
    }

    fn start_worker(&mut self, i: usize) {
        let log = std::fs::File::create(self.dir.path().join(format!("w{i}.log"))).unwrap();
        let child = Command::new(&self.bin)
            .args(["worker", "--queue-prefix", &self.prefix, "--worker-id", &format!("w{i}")])
            .args(["--amqp", &self.amqp(i % 2), "--metrics-addr", "off", "--concurrency", "2"])
            .args(["--retry-delay", "2", "--max-attempts", "8", "--build-runtime-images", "off"])
            .args(["--registry", &self.registry(), "--buildkit", &self.docker.addr()])
            .env("APPRUNNER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.workers[i] = Some(child);
    }

    async fn kill_worker(&mut self, i: usize) {
        if let Some(mut w) = self.workers[i].take() {
            let _ = w.kill().await;
        }
    }

    /// What the workers and the `cancel` commands logged.
    fn logs(&self) -> String {
        let mut all: String = (0..self.workers.len())
            .map(|i| std::fs::read_to_string(self.dir.path().join(format!("w{i}.log"))).unwrap_or_default())
            .collect();
        for t in &self.tracked {
            let cancel = self.dir.path().join(format!("cancel-{}.log", t.planned.n));
            all += &std::fs::read_to_string(cancel).unwrap_or_default();
        }
        all
    }

    /// A git repository per service: the configuration goes in each job (`--api-config`).
    fn service_repo(&self, k: usize) -> PathBuf {
        let repo = self.dir.path().join(format!("s{k}"));
        if !repo.exists() {
            std::fs::create_dir_all(&repo).unwrap();
            std::fs::write(repo.join("index.html"), format!("service {k}\n")).unwrap();
            let commit = ["-c", "user.email=c@h", "-c", "user.name=chaos", "commit", "-qm", "s"];
            for args in [&["init", "-q", "-b", "main"][..], &["add", "-A"], &commit] {
                let ok = std::process::Command::new("git").args(args).current_dir(&repo).status().unwrap().success();
                assert!(ok, "git {args:?}");
            }
        }
        repo
    }

    /// The `submit` of `p`; a follower (`--wait`) writes its output to `d<n>.out`.
    fn submit_command(&self, p: &Planned, op: &str, repository: &str) -> Command {
        let (repo, n) = (self.service_repo(p.service), p.n);
        let exit = if p.fails { "; exit 1" } else { "" };
        let command = format!("sleep {}; echo {} deployment {n}{exit}", p.sleeps, self.tag);
        let api = serde_json::json!({
            "Runtime": "PYTHON_3", "BuildCommand": command,
            "StartCommand": "python -m http.server 8080", "Port": "8080",
        });
        let api_file = self.dir.path().join(format!("d{n}.json"));
        std::fs::write(&api_file, api.to_string()).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["submit", repo.to_str().unwrap(), "--api-config", api_file.to_str().unwrap()])
            .args(["--service", &format!("s{}", p.service), "--operation-id", op, "--queue-prefix", &self.prefix])
            .args(["--image", &format!("{}/{repository}", self.registry()), "--amqp", &self.amqp(n % 2)]);
        if p.batch {
            cmd.arg("--batch");
        }
        if p.followed {
            let out = std::fs::File::create(self.dir.path().join(format!("d{n}.out"))).unwrap();
            cmd.args(["--wait", "--no-timestamps", "--wait-timeout", "1200"]).stdout(out).stderr(Stdio::null());
        }
        cmd
    }
}

type Shared = Arc<Mutex<Soak>>;

/// Submits `p` (a plain submit waited for; a follower left running) and, if it is to be
/// cancelled, cancels it later.
async fn deploy(soak: &Shared, p: Planned, began: Instant) {
    let op = uuid::Uuid::new_v4().simple().to_string();
    let (mut cmd, repository) = {
        let s = soak.lock().await;
        let repository = format!("chaos-{}/s{}", s.tag, p.service);
        (s.submit_command(&p, &op, &repository), repository)
    };
    let mut tracked = Tracked {
        planned: p.clone(),
        op: op.clone(),
        repository,
        follower: None,
        follower_exit: None,
        follower_killed: false,
        cancel_exit: None,
    };
    if p.followed {
        tracked.follower = Some(cmd.spawn().unwrap());
    } else {
        let out = cmd.output().await.unwrap();
        assert!(out.status.success(), "submit #{}: {}", p.n, String::from_utf8_lossy(&out.stderr));
    }
    let mut kind = vec![if p.followed { "followed" } else { "plain" }];
    kind.extend(p.fails.then_some("fails"));
    kind.extend(p.batch.then_some("batch"));
    kind.extend(p.cancel_after.map(|_| "cancelled"));
    say(began, &format!("#{} {op} to s{} ({}), build {}s", p.n, p.service, kind.join(", "), p.sleeps));
    soak.lock().await.tracked.push(tracked);
    if let Some(after) = p.cancel_after {
        let (soak, n) = (soak.clone(), p.n);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let mut cmd = {
                let s = soak.lock().await;
                let mut cmd = Command::new(&s.bin);
                cmd.args([
                    "cancel",
                    &op,
                    "--queue-prefix",
                    &s.prefix,
                    "--amqp",
                    &s.amqp(1),
                    "--registry",
                    &s.registry(),
                ]);
                // Its warnings kept: a CANCELLED it published again is the documented window.
                let log = std::fs::File::create(s.dir.path().join(format!("cancel-{n}.log"))).unwrap();
                cmd.env("APPRUNNER_LOG", "warn").stderr(log);
                cmd
            };
            let out = cmd.output().await.unwrap();
            say(began, &format!("cancel {op}: exit {:?}", out.status.code()));
            let mut s = soak.lock().await;
            if let Some(t) = s.tracked.iter_mut().find(|t| t.op == op) {
                t.cancel_exit = Some(out.status.code().unwrap_or(-1));
            }
        });
    }
}

/// Injects `f`; returns whether it could be (a follower to kill may be lacking).
async fn inject(
    soak: &Shared,
    heard: &Arc<std::sync::Mutex<wire::Heard>>,
    f: &Fault,
    rng: &mut plan::Rng,
    began: Instant,
) -> bool {
    match f.kind {
        FaultKind::KillWorker => {
            // A worker with a build in progress (waiting a little for one).
            let until = Instant::now() + Duration::from_secs(15);
            let building = loop {
                let now = heard.lock().unwrap().in_progress();
                if !now.is_empty() || Instant::now() > until {
                    break now;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            let (op, worker) = match building.len() {
                0 => (String::from("nothing"), format!("w{}", rng.below(3))),
                n => building[usize::try_from(rng.below(n as u64)).unwrap_or(0)].clone(),
            };
            let i: usize = worker.trim_start_matches('w').parse().unwrap_or(0);
            say(began, &format!("fault: SIGKILL worker {worker} (building {op}); started again in {:?}", f.lasts));
            soak.lock().await.kill_worker(i).await;
            tokio::time::sleep(f.lasts).await;
            soak.lock().await.start_worker(i);
        }
        FaultKind::StopNode | FaultKind::KillNode => {
            let how = if f.kind == FaultKind::StopNode { "stopped" } else { "killed (SIGKILL)" };
            say(began, &format!("fault: broker node {} {how} for {:?}", f.node, f.lasts));
            let (kind, node, cluster) = (f.kind, f.node, soak.lock().await.cluster.clone());
            let held = cluster.clone();
            tokio::task::spawn_blocking(move || {
                if kind == FaultKind::StopNode {
                    held.nodes[node].stop();
                } else {
                    held.nodes[node].kill();
                }
            })
            .await
            .unwrap();
            tokio::time::sleep(f.lasts).await;
            tokio::task::spawn_blocking(move || cluster.nodes[node].start()).await.unwrap();
            say(began, &format!("broker node {} is back", f.node));
        }
        FaultKind::RegistryDown => {
            say(began, &format!("fault: the registry unreachable for {:?}", f.lasts));
            soak.lock().await.registry.down();
            tokio::time::sleep(f.lasts).await;
            soak.lock().await.registry.up();
            say(began, "the registry is back");
        }
        FaultKind::BuildkitDown => {
            say(began, &format!("fault: BuildKit unreachable for {:?}", f.lasts));
            soak.lock().await.docker.down();
            tokio::time::sleep(f.lasts).await;
            soak.lock().await.docker.up();
            say(began, "BuildKit is back");
        }
        FaultKind::KillFollower => {
            // A follower still waiting whose deployment is on the wire (one killed before it
            // submitted would leave nothing to check), waiting a little for one.
            let until = Instant::now() + Duration::from_secs(30);
            let (mut s, running) = loop {
                let mut s = soak.lock().await;
                let mut running = Vec::new();
                for (k, t) in s.tracked.iter_mut().enumerate() {
                    let submitted = heard.lock().unwrap().events.contains_key(&t.op);
                    if submitted && t.follower.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none()) {
                        running.push(k);
                    }
                }
                if !running.is_empty() || Instant::now() > until {
                    break (s, running);
                }
                drop(s);
                tokio::time::sleep(Duration::from_millis(500)).await;
            };
            if running.is_empty() {
                say(began, "fault: no follower running to kill; skipped");
                return false;
            }
            let k = running[usize::try_from(rng.below(running.len() as u64)).unwrap_or(0)];
            let t = &mut s.tracked[k];
            say(began, &format!("fault: SIGKILL the follower of #{} ({})", t.planned.n, t.op));
            if let Some(c) = t.follower.as_mut() {
                let _ = c.kill().await;
            }
            t.follower_killed = true;
        }
    }
    true
}

/// What the checker found.
#[derive(Default)]
struct Findings {
    lost: Vec<String>,
    duplicated: Vec<String>,
    /// Duplicates a worker logged as the documented window (an outcome published again after
    /// its confirm was lost with its connection).
    in_window: usize,
    stuck: Vec<String>,
    incomplete: Vec<String>,
    wrong: Vec<String>,
}

/// What is wrong with the outcome `first` of `t`, against what it was meant to come to and
/// what the registry holds.
async fn judge(t: &Tracked, first: &wire::Event, registry: &wire::Registry) -> Vec<String> {
    let op = &t.op;
    // `cancel` exits 0 when the deployment ended cancelled, 1 when it had ended already; on
    // anything else (no worker confirmed in time, the registry away) either may be true.
    let cancelled = t.cancel_exit == Some(0);
    let maybe_cancelled = t.cancel_exit.is_some_and(|c| c != 1);
    let at_tag = registry.image(&t.repository, op).await;
    let mut wrong = Vec::new();
    match first.status.as_str() {
        "CANCELLED" => {
            if !maybe_cancelled {
                wrong.push(format!("CANCELLED, yet its cancel said {:?}", t.cancel_exit));
            }
            match at_tag {
                Ok(None) => {}
                Ok(Some(_)) => wrong.push("CANCELLED, yet an image is at its tag".into()),
                Err(e) => wrong.push(format!("the registry could not be read: {e}")),
            }
        }
        _ if cancelled => wrong.push(format!("its cancel said it ended CANCELLED, the wire says {}", first.status)),
        "FAILED" => {
            let reason = first.error.clone().unwrap_or_default();
            if !t.planned.fails {
                wrong.push(format!("FAILED, not meant to: {reason}"));
            } else if !reason.contains("exit code 1") {
                wrong.push(format!("FAILED without the user's reason: {reason}"));
            }
        }
        "SUCCEEDED" => {
            if t.planned.fails {
                wrong.push("SUCCEEDED, though its build command exits 1".into());
            }
            let reported = first.image.clone().unwrap_or_default();
            let digest = reported.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
            match at_tag {
                Ok(Some((held, labels))) => {
                    if held != digest {
                        wrong.push(format!("reported {digest}, the tag holds {held}"));
                    }
                    if labels.get("dev.apprunner-build.operation-id") != Some(op) {
                        wrong.push("its image's annotations and labels name another operation".into());
                    }
                }
                Ok(None) => wrong.push("SUCCEEDED, yet nothing is at its tag".into()),
                Err(e) => wrong.push(format!("the registry could not be read: {e}")),
            }
        }
        other => wrong.push(format!("ended {other}")),
    }
    wrong
}

/// What is missing from the follower of `t`: every line its build published, and the outcome's
/// exit code (0, 1, 4).
fn follower_gaps(t: &Tracked, first: &wire::Event, heard: &wire::Heard, dir: &Path) -> Vec<String> {
    let mut gaps = Vec::new();
    let printed = std::fs::read_to_string(dir.join(format!("d{}.out", t.planned.n))).unwrap_or_default();
    if let Err(line) = published::printed_all(&heard.published(&t.op), &printed) {
        gaps.push(format!("its follower did not print `{line}`"));
    }
    let expected = match first.status.as_str() {
        "SUCCEEDED" => 0,
        "FAILED" => 1,
        _ => 4,
    };
    if t.follower_exit != Some(expected) {
        gaps.push(format!("its follower exited {:?}, not {expected}", t.follower_exit));
    }
    gaps
}

/// Duplicates of an outcome, named when a worker logged the documented window for it.
fn judge_repeats(op: &str, count: usize, logs: &str, found: &mut Findings, n: usize) {
    if count < 2 {
        return;
    }
    let said = format!("published {op}.outcome");
    let window = logs.lines().any(|l| l.contains(&said) && l.contains("it may be on the wire twice"));
    found.in_window += usize::from(window);
    let how =
        if window { "an outcome published again after its confirm was lost" } else { "not in the documented window" };
    found.duplicated.push(format!("#{n} {op}: {count} terminal events ({how})"));
}

async fn check(soak: &Shared, heard: &wire::Heard, registry: &wire::Registry) -> Findings {
    let mut found = Findings::default();
    if heard.consumer_ended {
        found.wrong.push("the checker's consumer ended before the check: what it heard is incomplete".into());
    }
    let s = soak.lock().await;
    let logs = s.logs();
    for t in &s.tracked {
        let (op, n) = (t.op.as_str(), t.planned.n);
        let outcomes = heard.terminal(op);
        let Some(first) = outcomes.first().copied() else {
            found.lost.push(format!("#{n} {op}: no outcome"));
            continue;
        };
        judge_repeats(op, outcomes.len(), &logs, &mut found, n);
        found.wrong.extend(judge(t, first, registry).await.into_iter().map(|w| format!("#{n} {op}: {w}")));
        if !t.planned.followed {
            continue;
        }
        if t.follower_killed {
            // Its deployment read back with `status`.
            let out = Command::new(&s.bin)
                .args(["status", op, "--queue-prefix", &s.prefix, "--amqp", &s.amqp(1)])
                .output()
                .await
                .unwrap();
            let said = String::from_utf8_lossy(&out.stdout).to_string();
            if !said.contains(&format!("status: {}", first.status)) {
                found
                    .wrong
                    .push(format!("#{n} {op}: `status` says otherwise than the wire ({}): {said}", first.status));
            }
        } else {
            let gaps = follower_gaps(t, first, heard, s.dir.path());
            found.incomplete.extend(gaps.into_iter().map(|g| format!("#{n} {op}: {g}")));
        }
    }
    // No job left in any queue: the users', the batch one, the waiting ones.
    let listed = cluster::ctl(&s.cluster.nodes[2].name, &["list_queues", "-q", "name", "messages"]);
    let prefix = &s.prefix;
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let Some((name, count)) = line.split_once('\t') else { continue };
        let ours = name == format!("{prefix}.jobs")
            || name == format!("{prefix}.batch")
            || name.starts_with(&format!("{prefix}.wait."));
        if ours && count.trim() != "0" {
            found.stuck.push(format!("{name}: {} messages", count.trim()));
        }
    }
    found
}

/// Starts the cluster, the proxies, the checker and the workers.
async fn set_up(seed: u64, minutes: u64) -> (Shared, Arc<std::sync::Mutex<wire::Heard>>) {
    let setup = Instant::now();
    let cluster = tokio::task::spawn_blocking(|| cluster::Cluster::start(3)).await.unwrap();
    println!(
        "chaos: three-node cluster formed in {:.1}s (seed {seed}, {minutes} minutes)",
        setup.elapsed().as_secs_f64()
    );
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let prefix = format!("chaos-{tag}");
    let heard = wire::listen(&cluster.nodes[2].uri(), &prefix).await.unwrap();
    let mut registry = faults::FlakyPort::to("127.0.0.1:5000");
    registry.up();
    let mut docker = faults::FlakyDocker::new();
    docker.up();
    let soak = Arc::new(Mutex::new(Soak {
        bin: release_binary(),
        prefix: prefix.clone(),
        tag,
        dir: tempfile::tempdir().unwrap(),
        cluster: Arc::new(cluster),
        registry,
        docker,
        workers: (0..3).map(|_| None).collect(),
        tracked: Vec::new(),
    }));
    let mut s = soak.lock().await;
    for i in 0..3 {
        s.start_worker(i);
    }
    println!("chaos: queue prefix {prefix}, the workers' logs and the followers' output in {}", s.dir.path().display());
    drop(s);
    (soak, heard)
}

/// Waits until every deployment has an outcome on the wire and every follower has exited, or
/// [`DRAIN`] has passed.
async fn drain(soak: &Shared, heard: &std::sync::Mutex<wire::Heard>, began: Instant) {
    let drain = Instant::now();
    loop {
        let mut s = soak.lock().await;
        let open = {
            let heard = heard.lock().unwrap();
            s.tracked.iter().filter(|t| heard.terminal(&t.op).is_empty()).count()
        };
        let mut followers = 0;
        for t in s.tracked.iter_mut().filter(|t| !t.follower_killed && t.follower_exit.is_none()) {
            match t.follower.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => t.follower_exit = Some(status.code().unwrap_or(-1)),
                Some(_) => followers += 1,
                None => {}
            }
        }
        drop(s);
        if open == 0 && followers == 0 {
            return;
        }
        if drain.elapsed() > DRAIN {
            say(
                began,
                &format!("drain over: {open} deployments without an outcome, {followers} followers still waiting"),
            );
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Prints every finding and the last line; whether the soak failed.
fn report(found: &Findings, n: usize, injected: &[FaultKind], seed: u64) -> bool {
    for (what, list) in [
        ("lost", &found.lost),
        ("duplicated", &found.duplicated),
        ("stuck", &found.stuck),
        ("incomplete", &found.incomplete),
        ("wrong", &found.wrong),
    ] {
        for line in list {
            println!("chaos: {what}: {line}");
        }
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for k in injected {
        *kinds.entry(k.name()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, c)| format!("{k} {c}")).collect();
    let window = if found.duplicated.is_empty() {
        String::new()
    } else {
        format!(" ({} in the documented window)", found.in_window)
    };
    println!(
        "chaos: {n} deployments, {} faults ({}), lost {}, duplicated {}{window}, stuck {}, incomplete {}, wrong {}, seed {seed}",
        injected.len(),
        kinds.join(", "),
        found.lost.len(),
        found.duplicated.len(),
        found.stuck.len(),
        found.incomplete.len(),
        found.wrong.len()
    );
    !(found.lost.is_empty()
        && found.duplicated.len() == found.in_window
        && found.stuck.is_empty()
        && found.incomplete.is_empty()
        && found.wrong.is_empty())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let Args { minutes, seed } = args();
    let (planned, faults) = plan::schedule(seed, minutes);
    println!("chaos: seed {seed}, {minutes} minutes: {} deployments, {} faults planned", planned.len(), faults.len());
    for f in &faults {
        println!("chaos: plan {:6.1}s {} (node {}, {:?})", f.at.as_secs_f64(), f.kind.name(), f.node, f.lasts);
    }
    let (soak, heard) = set_up(seed, minutes).await;
    let began = Instant::now();
    let stream = {
        let soak = soak.clone();
        tokio::spawn(async move {
            for p in planned {
                tokio::time::sleep(p.at.saturating_sub(began.elapsed())).await;
                deploy(&soak, p, began).await;
            }
        })
    };
    let injected = {
        let (soak, heard) = (soak.clone(), heard.clone());
        tokio::spawn(async move {
            let mut rng = plan::Rng::new(seed ^ 0xFA17);
            let mut done = Vec::new();
            for f in faults {
                tokio::time::sleep(f.at.saturating_sub(began.elapsed())).await;
                if inject(&soak, &heard, &f, &mut rng, began).await {
                    done.push(f.kind);
                }
            }
            done
        })
    };
    stream.await.unwrap();
    let injected = injected.await.unwrap();
    say(began, "every deployment submitted, every fault over; draining");
    drain(&soak, &heard, began).await;
    // Long enough for a repeat to show.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let snapshot = {
        let heard = heard.lock().unwrap();
        wire::Heard { events: heard.events.clone(), logs: heard.logs.clone(), consumer_ended: heard.consumer_ended }
    };
    let found = check(&soak, &snapshot, &wire::Registry::new("127.0.0.1:5000")).await;
    let n = soak.lock().await.tracked.len();
    let failed = report(&found, n, &injected, seed);
    // The workers and the cluster go; the temporary directory (the workers' logs, each
    // follower's output) stays for reading.
    let cluster = {
        let mut s = soak.lock().await;
        for i in 0..3 {
            s.kill_worker(i).await;
        }
        s.cluster.clone()
    };
    tokio::task::spawn_blocking(move || cluster.nodes.iter().for_each(cluster::Node::stop)).await.unwrap();
    std::process::exit(i32::from(failed));
}
