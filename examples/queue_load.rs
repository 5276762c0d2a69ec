//! Load benchmark of the queue path: `cargo run --release --example queue_load [JOBS [distinct]]`.
//!
//! Needs docker/stack. Starts two workers of the release binary on fresh queues, submits JOBS
//! trivial jobs (a cached one-command build, so the queue, the registry writes and the
//! worker's own overhead are what is measured; with `distinct`, each service's source one file
//! apart from the others', so each build runs its steps, as a fleet's services differ), and
//! prints jobs per second through the queue against a reference measured in the same run: the
//! same kind of build done by `apprunner-build build` one after another, without a queue. Memory: each worker's RSS idle and at its peak.
//! Cost: the core-seconds the whole machine spends per job (every process: the workers or the
//! CLI, BuildKit's daemons, the registry, RabbitMQ, git) on each side, and on a redeploy of a
//! service's unchanged inputs through the queue (the mean of thirty, and of each ten), with how
//! many were solved.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use apprunner_build::core::config::ConfigSource;
use apprunner_build::queue::subscription::{Interest, Subscription};
use apprunner_build::queue::transport::{self as queue, Topology};
use apprunner_build::queue::wire::job::{
    BuildJob, Configuration, ImageTarget, JobEvent, JobStatus, Repository, Service, JOB_VERSION,
};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn brokers() -> queue::Brokers {
    queue::Brokers::parse(AMQP).unwrap()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Core-seconds every process on this machine has spent so far: the busy columns of
/// `/proc/stat`'s `cpu` line (user, nice, system, irq, softirq, steal), in Linux's 100 ticks a
/// second. Processes that ended (git) are in it; idle and I/O wait are not.
fn machine_core_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let ticks: Vec<u64> = stat.lines().next().unwrap().split_whitespace().skip(1).map(|x| x.parse().unwrap()).collect();
    // user, nice, system, irq, softirq: not steal, the time the hypervisor gave another machine.
    let busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6];
    busy as f64 / 100.0
}

/// Seconds a fixed piece of work (hashing 256 MiB on one thread) takes now, on this otherwise
/// idle machine: its speed varies between runs by half (a neighbour's load), and every process's
/// cost with it, so the redeploy's figure is also given against this.
fn calibration_seconds() -> f64 {
    use sha2::Digest;
    let block = vec![7u8; 1 << 20];
    let t = Instant::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..256 {
        h.update(&block);
    }
    std::hint::black_box(h.finalize());
    t.elapsed().as_secs_f64()
}

/// Each live process's ticks so far (its own and its reaped children's: a worker's git processes
/// count as the worker's), by pid, with its name and start time.
fn process_ticks() -> std::collections::HashMap<u32, (String, u64, u64)> {
    let mut all = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state …`: the name may hold spaces, so the fields start after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let fields: Vec<u64> = stat[close + 2..].split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
        // Fields 14-17 of stat (utime, stime, cutime, cstime), counted from `state`, field 3.
        let ticks = fields.get(11..15).map_or(0, |t| t.iter().sum());
        // Field 22, starttime: a pid used again is another process. A kernel worker's name says
        // what it does this moment (`kworker/0:2-events`), so kernel workers count as one.
        let started = fields.get(19).copied().unwrap_or(0);
        let name = &stat[open + 1..close];
        let name = if name.starts_with("kworker/") { "kworker" } else { name };
        all.insert(pid, (name.to_string(), started, ticks));
    }
    all
}

/// Core-seconds per job by process name between two snapshots, largest first, the rest summed:
/// `registry 0.081, containerd 0.062, …`.
fn where_it_went(
    before: &std::collections::HashMap<u32, (String, u64, u64)>,
    after: &std::collections::HashMap<u32, (String, u64, u64)>,
    jobs: usize,
) -> String {
    let mut by_name: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (pid, (name, started, ticks)) in after {
        let was = before.get(pid).filter(|(_, s, _)| s == started).map_or(0, |(_, _, t)| *t);
        *by_name.entry(name.clone()).or_default() += ticks.saturating_sub(was);
    }
    let mut named: Vec<(String, u64)> = by_name.into_iter().filter(|(_, t)| *t > 0).collect();
    named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let per_job = |t: u64| t as f64 / 100.0 / jobs as f64;
    let mut shown: Vec<String> = named.iter().take(8).map(|(n, t)| format!("{n} {:.3}", per_job(*t))).collect();
    let rest: u64 = named.iter().skip(8).map(|(_, t)| t).sum();
    if rest > 0 {
        shown.push(format!("others {:.3}", per_job(rest)));
    }
    shown.join(", ")
}

/// Submits `job` and waits (at most `limit`) for its terminal event.
async fn submit_and_wait(topology: &Topology, events: &mut Subscription, job: &BuildJob, limit: Duration) -> JobEvent {
    let lane = apprunner_build::queue::transport::Lane::User;
    apprunner_build::queue::client::submit(&brokers(), topology, job, lane, None).await.unwrap();
    loop {
        match tokio::time::timeout(limit, events.next_event()).await {
            Ok(Some(Ok(ev))) if ev.operation_id == job.operation_id && ev.status.is_terminal() => return ev,
            Ok(Some(Ok(_))) => {}
            other => panic!("no outcome for {}: {:?}", job.job_id, other.map(|o| o.map(|r| r.map(|e| e.status)))),
        }
    }
}

// A benchmark script, read top to bottom.
#[allow(clippy::too_many_lines)]
#[tokio::main]
async fn main() {
    let jobs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    // `distinct`: each service (and each direct build) has a source directory of its own, one
    // file apart, as a fleet's services differ; otherwise every build is of one app.
    let distinct = std::env::args().nth(2).as_deref() == Some("distinct");
    let n_direct = 10;
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("apprunner-build");
    assert!(bin.exists(), "build the binary first: cargo build --release");
    let dir = tempfile::tempdir().unwrap();
    let yaml = "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo load\nrun:\n  command: python -m http.server 8080\n";
    let source_dir = |i: usize| if distinct { format!("/svc-{i}") } else { "/".to_string() };
    for i in 0..if distinct { jobs + n_direct + 2 } else { 1 } {
        let at = dir.path().join(source_dir(i).trim_start_matches('/'));
        std::fs::create_dir_all(&at).unwrap();
        std::fs::write(at.join("apprunner.yaml"), yaml).unwrap();
        std::fs::write(at.join("service.txt"), format!("{i}\n")).unwrap();
    }
    let git = |args: &[&str]| {
        assert!(Command::new("git")
            .args(["-c", "user.name=b", "-c", "user.email=b@b"])
            .args(args)
            .current_dir(dir.path())
            .status()
            .unwrap()
            .success());
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "load"]);
    let url = format!("file://{}", dir.path().display());

    // Reference: direct builds, one after another (the first warms the cache).
    let direct = |i: usize| {
        let out = Command::new(&bin)
            .args(["build", &url, "--ref", "main", "--image", &format!("127.0.0.1:5000/apprunner-bench/direct:{i}")])
            .args(["--source-dir", &source_dir(jobs + i)])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    };
    direct(0);
    let t = Instant::now();
    let cpu = machine_core_seconds();
    let processes = process_ticks();
    for i in 1..=n_direct {
        direct(i);
    }
    let direct_cost = (machine_core_seconds() - cpu) / n_direct as f64;
    // The CLI processes ended: their time is in this benchmark's children's.
    let direct_went = where_it_went(&processes, &process_ticks(), n_direct);
    let direct_rate = n_direct as f64 / t.elapsed().as_secs_f64();

    let prefix = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let topology = Topology::new(&prefix);
    let mut events = Subscription::open(&brokers(), &topology, "bench", Interest::Outcomes).await.unwrap();

    let workers: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| {
            Command::new(&bin)
                .args([
                    "worker",
                    "--queue-prefix",
                    &prefix,
                    "--worker-id",
                    id,
                    "--concurrency",
                    "4",
                    "--metrics-addr",
                    "off",
                ])
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle: Vec<u64> = workers.iter().map(|w| rss_kib(w.id())).collect();

    let job = |i: usize| {
        let op = uuid::Uuid::new_v4().simple().to_string();
        BuildJob {
            version: JOB_VERSION,
            job_id: format!("load-{i}"),
            operation_id: op,
            // A service each: one service's deployments run one at a time.
            service: Service { name: format!("load-{i}"), id: None },
            repository: Repository {
                url: url.clone(),
                branch: Some("main".into()),
                commit: None,
                source_directory: source_dir(i),
            },
            configuration: Configuration { source: ConfigSource::Repository, values: None },
            image: ImageTarget { repository: "127.0.0.1:5000/apprunner-bench/queued".into(), tag: None },
            deadline: None,
            trigger: None,
            rollout: None,
            submitted_at: None,
        }
    };
    // One queued build first, unmeasured, as the direct side has: the target repository's first
    // push and its fleet cache's first export are a repository's once, not every job's.
    let warm = job(if distinct { jobs + n_direct + 1 } else { jobs });
    let warmed = submit_and_wait(&topology, &mut events, &warm, Duration::from_secs(300)).await;
    assert_eq!(warmed.status, JobStatus::Succeeded, "the warm-up job: {:?}", warmed.error);

    let t = Instant::now();
    let cpu = machine_core_seconds();
    let processes = process_ticks();
    let all: Vec<BuildJob> = (0..jobs).map(job).collect();
    for j in &all {
        apprunner_build::queue::client::submit(
            &brokers(),
            &topology,
            j,
            apprunner_build::queue::transport::Lane::User,
            None,
        )
        .await
        .unwrap();
    }
    let mut peak = idle.clone();
    let (mut ok, mut failed) = (0, 0);
    // Summed over the successful jobs: fetch, plan, solve, export, and the whole job as the
    // event's consumer sees it (from submission).
    let mut phases = [0.0f64; 4];
    while ok + failed < jobs {
        match tokio::time::timeout(Duration::from_millis(200), events.next_event()).await {
            Ok(Some(Ok(ev))) => {
                if ev.status == JobStatus::Succeeded {
                    ok += 1;
                    if let Some(p) = ev.phases {
                        for (sum, v) in phases.iter_mut().zip([p.fetch, p.plan, p.solve, p.export]) {
                            *sum += v;
                        }
                    }
                } else {
                    failed += 1;
                    eprintln!("{} failed: {:?}", ev.job_id, ev.error);
                }
            }
            Ok(_) => panic!("event stream ended"),
            Err(_) => {}
        }
        for (i, w) in workers.iter().enumerate() {
            peak[i] = peak[i].max(rss_kib(w.id()));
        }
    }
    let queue_rate = jobs as f64 / t.elapsed().as_secs_f64();
    let queue_cost = (machine_core_seconds() - cpu) / jobs as f64;
    let queue_went = where_it_went(&processes, &process_ticks(), jobs);

    // Redeploys of services' unchanged inputs, one at a time once the machine has settled: the
    // mean of thirty, for one costs a few of /proc/stat's hundredths of a second and a burst
    // of the machine's other work moves the mean of a few; each ten's mean is shown too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let redeploys = jobs.min(30);
    let again: Vec<BuildJob> = all[..redeploys]
        .iter()
        .map(|j| BuildJob {
            job_id: format!("{}-again", j.job_id),
            operation_id: uuid::Uuid::new_v4().simple().to_string(),
            ..j.clone()
        })
        .collect();
    // What the machine spends doing nothing for as long, to read the redeploy's figure against.
    let (cpu, settle) = (machine_core_seconds(), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rate = (machine_core_seconds() - cpu) / settle.elapsed().as_secs_f64();
    let calibrated_before = calibration_seconds();
    let cpu = machine_core_seconds();
    let processes = process_ticks();
    let redeploying = Instant::now();
    let mut solved = 0;
    let mut tens = Vec::new();
    for ten in again.chunks(10) {
        let at = machine_core_seconds();
        for j in ten {
            let redeploy = submit_and_wait(&topology, &mut events, j, Duration::from_secs(120)).await;
            assert_eq!(redeploy.status, JobStatus::Succeeded, "redeploy {}: {:?}", j.job_id, redeploy.error);
            solved += usize::from(redeploy.phases.is_some_and(|p| p.solve > 0.0));
        }
        tens.push(format!("{:.3}", (machine_core_seconds() - at) / ten.len() as f64));
    }
    let redeploy_cost = (machine_core_seconds() - cpu) / redeploys as f64;
    let redeploy_wall = redeploying.elapsed().as_secs_f64() / redeploys as f64;
    let redeploy_went = where_it_went(&processes, &process_ticks(), redeploys);
    let calibrated = f64::midpoint(calibrated_before, calibration_seconds());
    for mut w in workers {
        let _ = w.kill();
    }
    events.close().await;
    // Everything the workers declared: a quorum queue left behind costs the broker in every
    // later run.
    let conn = brokers().connect("bench-cleanup").await.unwrap();
    // The workers run on the default retry policy.
    topology.remove(&conn, apprunner_build::queue::outcome::RetryPolicy::default().waits()).await;
    conn.close("cleaned").await;
    println!("direct builds (reference, sequential): {direct_rate:.2} builds/s over {n_direct}");
    println!(
        "queue, 2 workers x 4 concurrent:       {queue_rate:.2} jobs/s over {jobs} ({ok} succeeded, {failed} failed)"
    );
    println!("ratio queue/direct:                     {:.2}", queue_rate / direct_rate);
    println!(
        "core-seconds per job: queue {queue_cost:.3}, direct {direct_cost:.3}, ratio {:.2}",
        queue_cost / direct_cost
    );
    println!("  queue, by process:  {queue_went}");
    println!("  direct, by process: {direct_went}");
    println!(
        "redeploy of unchanged inputs: {redeploy_cost:.3} core-seconds, solved {solved} times (mean of {redeploys}, one after another)"
    );
    println!("  redeploy, mean of each ten in turn: {}", tens.join(", "));
    println!(
        "  redeploy against a fixed workload run around it: {:.3} of its seconds ({calibrated:.3} s, the machine's speed then)",
        redeploy_cost / calibrated
    );
    // The machine's speed drifts between runs (the direct builds' cost with it): the same
    // figure against the reference measured in this run.
    println!("  redeploy against a direct build of this run: {:.2} of its core-seconds", redeploy_cost / direct_cost);
    println!(
        "  redeploy, by process: {redeploy_went}; {redeploy_wall:.3} s each from submission, the idle machine spends {:.3} core-seconds in as long",
        idle_rate * redeploy_wall
    );
    let per_job = |v: f64| v / f64::from(u32::try_from(ok.max(1)).unwrap_or(u32::MAX));
    println!(
        "mean seconds per job in the queue:      fetch {:.2}, plan {:.2}, solve {:.2}, export {:.2}; {:.2} slot-seconds per job in all",
        per_job(phases[0]),
        per_job(phases[1]),
        per_job(phases[2]),
        per_job(phases[3]),
        8.0 / queue_rate
    );
    for (i, id) in ["a", "b"].iter().enumerate() {
        println!(
            "worker {id}: RSS idle {} KiB, busy peak {} KiB (ratio {:.2})",
            idle[i],
            peak[i],
            peak[i] as f64 / idle[i].max(1) as f64
        );
    }
}
