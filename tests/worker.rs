//! The queue worker against a real `RabbitMQ`, a real `BuildKit` and a real registry: worker
//! processes of the built binary, each test on queues of its own prefix.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used, clippy::format_push_string)]

mod common;
use apprunner_build::queue::transport::{Outgoing, Publisher, Topology};
use apprunner_build::queue::wire::job::*;
use common::faults::*;
use common::queue::*;
use common::*;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

async fn publish_raw(topology: &Topology, payload: &[u8]) {
    let p = Publisher::new(&brokers(), "test-raw");
    p.publish(&Outgoing::new("", &topology.jobs(), payload)).await.unwrap();
    p.close().await;
}

/// Takes every entry of the failed-jobs queue.
async fn drain_failed(topology: &Topology) -> Vec<FailedJob> {
    let conn = brokers().connect("test-failed").await.unwrap();
    let ch = conn.channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(m) = ch.get(&topology.failed()).await.unwrap() {
        out.push(serde_json::from_slice(m.body()).unwrap());
        m.ack().await.unwrap();
    }
    out
}

async fn failed_count(topology: &Topology) -> u32 {
    let conn = brokers().connect("test-failed-count").await.unwrap();
    let ch = conn.channel().await.unwrap();
    ch.look(&topology.failed()).await.unwrap().ready
}

/// The failed queue's ready count once it is `n`, or what it is after 10 s: entries a client
/// left unacked come back a moment after its connection closes (a quorum queue's return goes
/// through its log).
async fn failed_count_becomes(topology: &Topology, n: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = failed_count(topology).await;
        if count == n || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn image_exists(reference: &str) -> bool {
    let r = apprunner_build::core::image_ref::ImageRef::parse(reference).unwrap();
    apprunner_build::edge::registry::Registry::new(Default::default(), Vec::new())
        .manifest_of(&r)
        .await
        .unwrap()
        .is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_jobs_on_two_workers_each_finish_exactly_once() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo("echo trivial build");
    let _a = Worker::start(&prefix, "a", &["--concurrency", "3"]);
    let _b = Worker::start(&prefix, "b", &["--concurrency", "3"]);
    let jobs: Vec<BuildJob> = (0..50).map(|i| job(&url, &format!("fifty-{i}"))).collect();
    for j in &jobs {
        submit(&topology, j).await;
    }
    events.until(Duration::from_secs(600), |seen| jobs.iter().all(|j| terminal(seen, &j.job_id).is_some())).await;
    events.settle(Duration::from_secs(3)).await;
    let mut by_worker: HashMap<String, usize> = HashMap::new();
    for j in &jobs {
        assert_eq!(events.count(&j.job_id, JobStatus::Succeeded), 1, "job {}", j.job_id);
        assert_eq!(events.count(&j.job_id, JobStatus::Failed), 0, "job {}", j.job_id);
        let ev = terminal(&events.seen, &j.job_id).unwrap();
        assert!(image_exists(ev.image.as_deref().unwrap()).await);
        *by_worker.entry(ev.worker.unwrap()).or_default() += 1;
    }
    assert_eq!(by_worker.len(), 2, "both workers took jobs: {by_worker:?}");
}

/// A worker killed mid-build (kill -9) loses nothing: another worker builds the job, and the
/// deployment's log reads as one deployment that resumed, with one start and one end.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_build_loses_nothing() {
    use apprunner_build::queue::subscription::{Interest, Subscription};
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo(&format!("echo {}; sleep 8", uuid::Uuid::new_v4()));
    let mut a = Worker::start(&prefix, "a", &["--concurrency", "1"]);
    let j = job(&url, "killed");
    let interest = Interest::Operation(&j.operation_id);
    let mut heard = Subscription::open(&brokers(), &topology, "test-killed", interest).await.unwrap();
    submit(&topology, &j).await;
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| e.job_id == j.job_id && e.status == JobStatus::InProgress)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill9();
    let _b = Worker::start(&prefix, "b", &["--concurrency", "1"]);
    let (_, lines) = follow_log(&mut heard, |_| {}).await;
    heard.close().await;
    let log = lines.join("\n");
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(&format!("Deployment with ID : {} started.", j.operation_id)), 1, "{log}");
    assert_eq!(count(&format!("Deployment with ID : {} resumed:", j.operation_id)), 1, "{log}");
    assert_eq!(count("completed successfully."), 1, "{log}");
    events.until(Duration::from_secs(120), |seen| terminal(seen, &j.job_id).is_some()).await;
    events.settle(Duration::from_secs(5)).await;
    assert_eq!(events.count(&j.job_id, JobStatus::Succeeded), 1);
    assert_eq!(terminal(&events.seen, &j.job_id).unwrap().worker.as_deref(), Some("b"));
    assert_eq!(failed_count(&topology).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_broker_connection_is_re_established() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo("echo reconnect");
    let id = format!("{prefix}-w");
    let _w = Worker::start(&prefix, &id, &[]);
    let first = job(&url, "reconnect");
    submit(&topology, &first).await;
    events.until(Duration::from_secs(120), |seen| terminal(seen, &first.job_id).is_some()).await;
    // Close the worker's consuming connection from the server side.
    close_consumer_connection(&id);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = job(&url, "reconnect");
    submit(&topology, &later).await;
    events.until(Duration::from_secs(120), |seen| terminal(seen, &later.job_id).is_some()).await;
    assert_eq!(terminal(&events.seen, &later.job_id).unwrap().status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_jobs_end_in_the_failed_queue_with_reasons() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let _w = Worker::start(&prefix, "w", &[]);
    let bad_yaml = committed(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo a: b\nrun:\n  command: x\n",
    )]);
    let yaml_job = job(&format!("file://{}", bad_yaml.path().display()), "badyaml");
    let (_d, failing_url) = repo("echo compiling; exit 7");
    let failing_job = job(&failing_url, "failing");
    submit(&topology, &yaml_job).await;
    submit(&topology, &failing_job).await;
    publish_raw(&topology, b"this is not json").await;
    let mut v2 = serde_json::to_value(job(&failing_url, "future")).unwrap();
    v2["version"] = 2.into();
    publish_raw(&topology, v2.to_string().as_bytes()).await;
    let (_g, good_url) = repo("echo fine");
    let good = job(&good_url, "good");
    submit(&topology, &good).await;
    events
        .until(Duration::from_secs(180), |seen| {
            [&yaml_job, &failing_job, &good].iter().all(|j| terminal(seen, &j.job_id).is_some())
        })
        .await;
    assert_eq!(terminal(&events.seen, &good.job_id).unwrap().status, JobStatus::Succeeded, "the worker keeps serving");
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed_count(&topology).await < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failed = drain_failed(&topology).await;
    let reason = |pred: &dyn Fn(&FailedJob) -> bool| {
        failed.iter().find(|f| pred(f)).map_or_else(|| panic!("{failed:#?}"), |f| f.reason.clone())
    };
    let r = reason(&|f| f.job.as_ref().is_some_and(|j| j.job_id == yaml_job.job_id));
    assert!(r.contains("build.commands.build[0]") && r.contains("quote the whole command"), "{r}");
    let r = reason(&|f| f.job.as_ref().is_some_and(|j| j.job_id == failing_job.job_id));
    assert!(r.contains("Failed to execute 'build' command") && r.contains("exit code 7"), "{r}");
    let r = reason(&|f| f.raw_message.as_deref() == Some("this is not json"));
    assert!(r.starts_with("the message is not JSON"), "{r}");
    let r = reason(&|f| f.raw_message.as_deref().is_some_and(|m| m.contains("\"version\":2")));
    assert_eq!(r, "job version 2 is not supported; this worker reads version 1");
    assert_eq!(failed.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn buildkit_down_jobs_retry_then_complete_or_fail_transient_and_rebuild_failed_resubmits() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let mut docker = FlakyDocker::new();
    assert!(!docker.path.exists());
    let (_dir, url) = repo("echo flaky");

    // Down while the job waits: it is retried, and completes once BuildKit is back.
    let w = Worker::start(&prefix, "w", &["--buildkit", &docker.addr(), "--max-attempts", "8"]);
    let waits = job(&url, "flaky");
    submit(&topology, &waits).await;
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| e.job_id == waits.job_id && e.status == JobStatus::Queued && e.attempt == Some(2))
        })
        .await;
    let retry = events.seen.iter().find(|e| e.job_id == waits.job_id && e.attempt == Some(2)).unwrap();
    assert_eq!(retry.error.as_ref().unwrap().class, apprunner_build::error::ErrorClass::Transient);
    docker.up();
    events.until(Duration::from_secs(120), |seen| terminal(seen, &waits.job_id).is_some()).await;
    assert_eq!(terminal(&events.seen, &waits.job_id).unwrap().status, JobStatus::Succeeded);
    drop(w);
    drop(docker);

    // Down for good: after the bounded attempts it fails with a transient-fault reason. (Another
    // service: a deployment of "flaky"'s inputs would take its current image, without BuildKit.)
    let docker = FlakyDocker::new();
    let w2 = Worker::start(&prefix, "w2", &["--buildkit", &docker.addr(), "--max-attempts", "2"]);
    let gives_up = job(&url, &format!("flaky-{}", &prefix[5..]));
    submit(&topology, &gives_up).await;
    events.until(Duration::from_secs(90), |seen| terminal(seen, &gives_up.job_id).is_some()).await;
    let ev = terminal(&events.seen, &gives_up.job_id).unwrap();
    assert_eq!(ev.status, JobStatus::Failed);
    assert!(ev.error.as_ref().unwrap().message.contains("BuildKit"), "{:?}", ev.error);

    // rebuild-failed: --dry-run lists and changes nothing; a filter that does not match takes nothing.
    let run = |args: &[&str]| {
        let out =
            Command::new(BIN).arg("rebuild-failed").args(["--queue-prefix", &prefix]).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let dry = run(&["--dry-run", "--error-class", "TRANSIENT"]);
    assert!(
        dry.contains(&format!("would resubmit {}", gives_up.job_id)) && dry.contains("1 of 1 failed jobs match"),
        "{dry}"
    );
    assert_eq!(failed_count_becomes(&topology, 1).await, 1);
    let none = run(&["--service", "someone-else"]);
    assert!(none.contains("0 of 1 failed jobs resubmitted"), "{none}");
    assert_eq!(failed_count_becomes(&topology, 1).await, 1);

    // With BuildKit reachable again, the resubmitted job builds.
    let _healthy = Worker::start(&prefix, "w3", &[]);
    drop(w2);
    let real = run(&["--error-class", "transient", "--newer-than", "1h"]);
    assert!(real.contains(&format!("resubmitted {}", gives_up.job_id)), "{real}");
    assert_eq!(failed_count_becomes(&topology, 0).await, 0);
    let new_id = real.split(" as ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    events.until(Duration::from_secs(120), |seen| terminal(seen, &new_id).is_some()).await;
    assert_eq!(terminal(&events.seen, &new_id).unwrap().status, JobStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_streams_the_log_and_returns_the_outcome() {
    let prefix = prefix();
    let _cleanup = Cleanup(Topology::new(&prefix));
    let _w = Worker::start(&prefix, "w", &[]);
    // A command of its own, so the step runs (and prints) rather than coming from the cache.
    let (dir, _) = repo(&format!("echo hello from the build {}", uuid::Uuid::new_v4()));
    let out = Command::new(BIN)
        .args(["submit", dir.path().to_str().unwrap(), "--queue-prefix", &prefix, "--wait"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("[Build] hello from the build"), "{stdout}");
    assert!(
        stdout.contains(&"completed successfully.".to_string()) && stdout.contains("[AppRunner] Deployment with ID : "),
        "{stdout}"
    );
    // The terminal shows App Runner's time prefix: `MM-DD-YYYY HH:MM:SS AM|PM [AppRunner] …`.
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("operation "), "the operation id first: {stdout}");
    let first = lines.next().unwrap();
    assert!(first.len() > 23 && &first[2..3] == "-" && (&first[20..22] == "AM" || &first[20..22] == "PM"), "{first}");
    let image = stdout.trim_end().lines().last().unwrap().to_string();
    assert!(image.contains("@sha256:"), "{stdout}");

    // The same inputs deployed again (a new operation, so a new tag): the service's current
    // image is taken again under a new index, nothing fetched or solved (its record says what
    // it was built from; the commit is asked of the repository).
    let out = Command::new(BIN)
        .args(["submit", dir.path().to_str().unwrap(), "--queue-prefix", &prefix, "--wait", "--no-timestamps"])
        .output()
        .unwrap();
    let again = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{again}\n{}", String::from_utf8_lossy(&out.stderr));
    let current = format!("The service's current image {image} was built from these exact inputs");
    assert!(again.contains(&current) && again.contains("nothing was fetched or solved"), "{again}");
    assert!(!again.contains("[Build] hello from the build") && !again.contains("Pulling source code"), "{again}");
    let redeployed = again.trim_end().lines().last().unwrap();
    assert_eq!(redeployed.split_once('@').unwrap().0, image.split_once('@').unwrap().0, "{again}");

    let (dir, _) = repo("echo broken >&2; exit 5");
    let out = Command::new(BIN)
        .args(["submit", dir.path().to_str().unwrap(), "--queue-prefix", &prefix, "--wait"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("[Build] broken"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("exit code 5"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_the_running_build_finish_then_exits() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo(&format!("echo {}; sleep 5", uuid::Uuid::new_v4()));
    let mut w = Worker::start(&prefix, "w", &["--grace", "120"]);
    let j = job(&url, "sigterm");
    submit(&topology, &j).await;
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| e.job_id == j.job_id && e.status == JobStatus::InProgress)
        })
        .await;
    let pid = w.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    // A job submitted now is not taken by the stopping worker.
    let after = job(&url, "sigterm");
    submit(&topology, &after).await;
    events.until(Duration::from_secs(120), |seen| terminal(seen, &j.job_id).is_some()).await;
    assert_eq!(terminal(&events.seen, &j.job_id).unwrap().status, JobStatus::Succeeded);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = w.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not exit after its build finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "{status:?}");
    events.settle(Duration::from_secs(2)).await;
    assert_eq!(events.count(&after.job_id, JobStatus::InProgress), 0, "the stopping worker took a new job");
}

/// #39: a worker told to stop (SIGTERM, as Kubernetes scales it down) while a build runs longer
/// than its grace hands the job back unbuilt when the grace ends and exits; another worker builds
/// it, and the deployment ends once, with one start and one end in its log. (A build shorter than
/// the grace finishes on the stopping worker: the test above.)
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_past_the_grace_hands_the_job_back_and_the_deployment_ends_once() {
    use apprunner_build::queue::subscription::{Interest, Subscription};
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo(&format!("echo {}; sleep 15", uuid::Uuid::new_v4()));
    let j = job(&url, "past-grace");
    let interest = Interest::Operation(&j.operation_id);
    let mut heard = Subscription::open(&brokers(), &topology, "test-past-grace", interest).await.unwrap();
    let mut a = Worker::start(&prefix, "a", &["--grace", "2"]);
    submit(&topology, &j).await;
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| e.job_id == j.job_id && e.status == JobStatus::InProgress)
        })
        .await;
    let stopped = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &a.child.id().to_string()]).status().unwrap().success());
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(30), "the worker did not exit after its grace");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(terminal(&events.seen, &j.job_id).is_none(), "the stopping worker ended the deployment");
    let _b = Worker::start(&prefix, "b", &[]);
    let (outcome, lines) = follow_log(&mut heard, |_| {}).await;
    heard.close().await;
    let log = lines.join("\n");
    assert_eq!(outcome.status, JobStatus::Succeeded, "{log}");
    assert_eq!(outcome.worker.as_deref(), Some("b"), "{log}");
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(&format!("Deployment with ID : {} started.", j.operation_id)), 1, "{log}");
    assert_eq!(
        count(&format!("Deployment with ID : {} resumed: the worker building it stopped", j.operation_id)),
        1,
        "{log}"
    );
    assert_eq!(count("completed successfully."), 1, "{log}");
    assert_eq!(count(" failed. Failure reason"), 0, "{log}");
    events.settle(Duration::from_secs(3)).await;
    assert_eq!(events.count(&j.job_id, JobStatus::Succeeded), 1);
    assert_eq!(events.count(&j.job_id, JobStatus::Failed), 0);
    assert_eq!(failed_count(&topology).await, 0);
}

/// A job whose every delivery ends with its worker gone is failed, with a reason and a FAILED
/// event, on the last delivery the broker allows; nothing is dead-lettered unreported.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_past_the_delivery_limit_is_reported_failed() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo(&format!("echo {}; sleep 60", uuid::Uuid::new_v4()));
    let j = job(&url, "doomed");
    submit(&topology, &j).await;
    let limit = usize::try_from(apprunner_build::queue::transport::DELIVERY_LIMIT).unwrap();
    for round in 1..limit {
        let mut w = Worker::start(&prefix, &format!("w{round}"), &["--concurrency", "1"]);
        events
            .until(Duration::from_secs(60), |seen| {
                seen.iter().filter(|e| e.job_id == j.job_id && e.status == JobStatus::InProgress).count() == round
            })
            .await;
        w.kill9();
    }
    let _last = Worker::start(&prefix, "last", &["--concurrency", "1"]);
    events.until(Duration::from_secs(60), |seen| terminal(seen, &j.job_id).is_some()).await;
    let ev = terminal(&events.seen, &j.job_id).unwrap();
    assert_eq!(ev.status, JobStatus::Failed);
    let error = ev.error.unwrap();
    assert_eq!(error.class, apprunner_build::error::ErrorClass::Internal);
    assert!(error.message.contains(&format!("delivered {limit} times without finishing")), "{}", error.message);
    let failed = drain_failed(&topology).await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].job.as_ref().unwrap().job_id, j.job_id);
    assert!(!failed[0].failed_at.is_empty() && failed[0].reason.contains("without finishing"));
}

/// The consuming connection lost mid-build: the broker redelivers the job (to the same worker
/// here) while the first build still runs. The lease keeps the copy waiting, and it finds the
/// operation built and reported: one SUCCEEDED, no FAILED.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_lost_mid_build_gives_one_success() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo(&format!("echo {}; sleep 8", uuid::Uuid::new_v4()));
    let id = format!("{prefix}-w");
    let _w = Worker::start(&prefix, &id, &["--concurrency", "2"]);
    let j = job(&url, "lost");
    submit(&topology, &j).await;
    events
        .until(Duration::from_secs(60), |seen| {
            seen.iter().any(|e| e.job_id == j.job_id && e.status == JobStatus::InProgress)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    close_consumer_connection(&id);
    events.until(Duration::from_secs(120), |seen| terminal(seen, &j.job_id).is_some()).await;
    events.settle(Duration::from_secs(15)).await;
    assert_eq!(
        events.count(&j.job_id, JobStatus::Succeeded),
        1,
        "{:#?}",
        events.seen.iter().map(|e| (e.status, &e.worker)).collect::<Vec<_>>()
    );
    assert_eq!(events.count(&j.job_id, JobStatus::Failed), 0);
    assert_eq!(failed_count(&topology).await, 0);
}

/// A few hundred bytes of apprunner.yaml that would expand to gigabytes: the job fails with the
/// limit named, and the same worker goes on to build the next job.
#[tokio::test(flavor = "multi_thread")]
async fn a_yaml_bomb_fails_its_job_and_the_worker_survives() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let mut bomb = String::from("version: 1.0\nruntime: python3\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..10 {
        bomb.push_str(&format!("x{i}: &x{i} [{}]\n", vec![format!("*x{}", i - 1); 10].join(", ")));
    }
    let dir = committed(&[("apprunner.yaml", &bomb)]);
    let bomb_job = job(&format!("file://{}", dir.path().display()), "bomb");
    let (_d, good_url) = repo("echo after the bomb");
    let good = job(&good_url, "good");
    let mut w = Worker::start(&prefix, "w", &["--concurrency", "1"]);
    submit(&topology, &bomb_job).await;
    submit(&topology, &good).await;
    events
        .until(Duration::from_secs(120), |seen| {
            terminal(seen, &bomb_job.job_id).is_some() && terminal(seen, &good.job_id).is_some()
        })
        .await;
    let ev = terminal(&events.seen, &bomb_job.job_id).unwrap();
    assert_eq!(ev.status, JobStatus::Failed);
    assert!(ev.error.unwrap().message.contains("more than 20000 values once its aliases are expanded"));
    assert_eq!(terminal(&events.seen, &good.job_id).unwrap().status, JobStatus::Succeeded);
    assert!(w.child.try_wait().unwrap().is_none(), "the worker is still running");
}

/// Follows one deployment's log to its end: every line as rendered, each shown to `on_line`
/// first (where a test brings its fault back), and the terminal event.
async fn follow_log(
    heard: &mut apprunner_build::queue::subscription::Subscription,
    mut on_line: impl FnMut(&str),
) -> (JobEvent, Vec<String>) {
    use apprunner_build::queue::subscription::Heard;
    let mut lines: Vec<String> = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(180), heard.next()).await {
            Ok(Some(Ok(Heard::Line(line)))) => {
                let text = line.render();
                on_line(&text);
                lines.push(text);
            }
            Ok(Some(Ok(Heard::Event(e)))) if e.status.is_terminal() => return (*e, lines),
            Ok(Some(Ok(Heard::Event(_)))) => {}
            other => panic!("the deployment did not end: {other:?}\n{}", lines.join("\n")),
        }
    }
}

/// The log of one deployment that succeeded on attempt 2 of 6: one start line, one end line,
/// no failure lines, and the line that says attempt 2 started. Returns the line of attempt 1.
fn assert_one_deployment_in_two_attempts(outcome: &JobEvent, lines: &[String], operation_id: &str) -> String {
    let log = lines.join("\n");
    assert_eq!(outcome.status, JobStatus::Succeeded, "{log}");
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(&format!("Deployment with ID : {operation_id} started.")), 1, "{log}");
    assert_eq!(count("completed successfully."), 1, "{log}");
    assert_eq!(count(" failed. Failure reason"), 0, "{log}");
    assert_eq!(count("Failed to build your application source code"), 0, "{log}");
    assert_eq!(count("Attempt 2 of 6 started."), 1, "{log}");
    let first: Vec<&String> = lines.iter().filter(|l| l.contains("Attempt 1 of 6 ")).collect();
    assert_eq!(first.len(), 1, "{log}");
    first[0].clone()
}

/// A deployment that meets a transient fault (BuildKit down) and succeeds on a later attempt
/// reads as one deployment: one start line, one end line, and a line for each attempt between.
#[tokio::test(flavor = "multi_thread")]
async fn a_retried_deployment_logs_one_start_and_one_end() {
    use apprunner_build::queue::subscription::{Interest, Subscription};
    let QueueTest { prefix, topology, cleanup: _cleanup, .. } = QueueTest::new().await;
    let mut docker = FlakyDocker::new();
    let (_dir, url) = repo(&format!("echo {}", uuid::Uuid::new_v4()));
    let j = job(&url, "retried-log");
    let interest = Interest::Operation(&j.operation_id);
    let mut heard = Subscription::open(&brokers(), &topology, "test-retried-log", interest).await.unwrap();
    let _w = Worker::start(&prefix, "w", &["--buildkit", &docker.addr(), "--max-attempts", "6"]);
    submit(&topology, &j).await;
    // BuildKit comes back once the first attempt has failed.
    let (outcome, lines) = follow_log(&mut heard, |line| {
        if line.contains("Attempt 1 of 6 ") {
            docker.up();
        }
    })
    .await;
    heard.close().await;
    let first = assert_one_deployment_in_two_attempts(&outcome, &lines, &j.operation_id);
    assert!(first.contains("BuildKit") && first.contains("; trying again in 1 s."), "{first}");
}

/// The registry goes away while a deployment's image is pushed and comes back: the log reads as
/// one deployment that took two attempts, and names the registry as unreachable.
#[tokio::test(flavor = "multi_thread")]
async fn a_registry_lost_during_the_push_is_one_deployment_in_two_attempts() {
    use apprunner_build::queue::subscription::{Interest, Subscription};
    let QueueTest { prefix, topology, cleanup: _cleanup, .. } = QueueTest::new().await;
    let mut registry = FlakyPort::to("127.0.0.1:5000");
    registry.up();
    let (_dir, url) = repo(&format!("sleep 4; echo {}", uuid::Uuid::new_v4()));
    let mut j = job(&url, "registry-lost");
    j.image.repository = format!("127.0.0.1:{}/apprunner-tests/registry-lost", registry.port);
    let interest = Interest::Operation(&j.operation_id);
    let mut heard = Subscription::open(&brokers(), &topology, "test-registry-lost", interest).await.unwrap();
    let _w = Worker::start(&prefix, "w", &["--max-attempts", "6"]);
    submit(&topology, &j).await;
    // Down while the build command runs, so the push after it finds no registry; back once
    // the attempt has failed.
    let mut cut = false;
    let (outcome, lines) = follow_log(&mut heard, |line| {
        if line.contains("build command 1/1") && !cut {
            registry.down();
            cut = true;
        }
        if line.contains("Attempt 1 of 6 ") {
            registry.up();
        }
    })
    .await;
    heard.close().await;
    let first = assert_one_deployment_in_two_attempts(&outcome, &lines, &j.operation_id);
    let port = registry.port;
    assert_eq!(
        first,
        format!("[AppRunner] Attempt 1 of 6 could not push the image: registry 127.0.0.1:{port} unreachable; trying again in 1 s.")
    );
    let log = lines.join("\n");
    assert!(!log.contains("https://"), "no URL of BuildKit's first try: {log}");
}

/// A follower that stops waiting while a message is on its way (a timeout around `next_event`,
/// as `submit --wait` and the benchmarks poll) loses nothing: every event published is heard
/// once. (Found by `queue_load`, which waited forever for an outcome the follower had acked
/// and dropped.)
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_that_stops_waiting_mid_message_loses_nothing() {
    use apprunner_build::queue::subscription::{Interest, Subscription};
    use apprunner_build::queue::wire::event::JobEvent;
    let QueueTest { topology, cleanup: _cleanup, .. } = QueueTest::new().await;
    let mut heard = Subscription::open(&brokers(), &topology, "test-impatient", Interest::AllEvents).await.unwrap();
    let p = Publisher::new(&brokers(), "test-impatient-events");
    let (n, events) = (300, topology.events());
    let mut published = std::collections::BTreeSet::new();
    for i in 0..n {
        let j = job("file:///nowhere", &format!("impatient-{i}"));
        let ev = JobEvent::new(&j, JobStatus::Queued);
        let payload = serde_json::to_vec(&ev).unwrap();
        let key = Topology::event_key(&j.operation_id, JobStatus::Queued.key());
        let id = ev.new_message_id();
        let mut out = Outgoing::new(&events, &key, &payload);
        out.message_id = Some(&id);
        p.publish(&out).await.unwrap();
        published.insert(j.operation_id);
    }
    p.close().await;
    let mut got = std::collections::BTreeSet::new();
    let until = Instant::now() + Duration::from_secs(60);
    while got.len() < n && Instant::now() < until {
        // A very short wait: many are given up while the ack is on its way.
        if let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_micros(200), heard.next_event()).await {
            assert!(got.insert(ev.operation_id), "heard twice");
        }
    }
    heard.close().await;
    assert_eq!(got, published, "{} of {n} heard", got.len());
}

/// Two services deploying the same app at once on one worker (the same source, other image
/// repositories and package caches): their builds take turns, since two exports of one content
/// at once wait on each other inside the daemon (docs/builds.md). Both succeed with the same
/// image config and layers; exactly one log says its build waited, before it started.
#[tokio::test(flavor = "multi_thread")]
async fn builds_of_the_same_content_on_one_worker_take_turns() {
    use apprunner_build::queue::subscription::{Interest, Subscription};
    let QueueTest { prefix, topology, cleanup: _cleanup, .. } = QueueTest::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    // Never cached before this test, and long enough that the two overlap.
    let (_dir, url) = repo(&format!("echo {tag}; sleep 3"));
    let jobs = [job(&url, &format!("turns-a-{}", &tag[..8])), job(&url, &format!("turns-b-{}", &tag[..8]))];
    let mut heard = Vec::new();
    for j in &jobs {
        let interest = Interest::Operation(&j.operation_id);
        heard.push(Subscription::open(&brokers(), &topology, "test-turns", interest).await.unwrap());
    }
    let _w = Worker::start(&prefix, "w", &["--concurrency", "2"]);
    for j in &jobs {
        submit(&topology, j).await;
    }
    let [mut ha, mut hb] = <[_; 2]>::try_from(heard).ok().unwrap();
    let ((ea, la), (eb, lb)) = tokio::join!(follow_log(&mut ha, |_| {}), follow_log(&mut hb, |_| {}));
    let waiting = "Another build of the same content is running on this worker";
    let mut waited = 0;
    for (event, lines) in [(&ea, &la), (&eb, &lb)] {
        let log = lines.join("\n");
        assert_eq!(event.status, JobStatus::Succeeded, "{log}");
        if let Some(at) = lines.iter().position(|l| l.contains(waiting)) {
            waited += 1;
            let started = lines.iter().position(|l| l.contains("Starting source code build.")).unwrap();
            assert!(at < started, "the wait is said before the build starts:\n{log}");
        }
    }
    assert_eq!(waited, 1, "one build waited for the other:\n{}\n---\n{}", la.join("\n"), lb.join("\n"));
    // One content: the same config and layers under both services' images (their manifests
    // differ only in the title annotation, each its repository's name).
    let registry = apprunner_build::edge::registry::Registry::new(Default::default(), vec![]);
    let mut contents = Vec::new();
    for e in [&ea, &eb] {
        let image = apprunner_build::core::image_ref::ImageRef::parse(e.image.as_deref().unwrap()).unwrap();
        let index = registry.manifest_of(&image).await.unwrap().unwrap();
        let arch = apprunner_build::edge::buildkit::export::oci_architecture();
        let digest = index.platform_manifest("linux", arch).unwrap();
        let manifest = registry.manifest(&image.repo(), &digest).await.unwrap().unwrap().image().unwrap();
        contents.push((manifest.config.digest, manifest.layers.into_iter().map(|l| l.digest).collect::<Vec<_>>()));
    }
    assert_eq!(contents[0], contents[1]);
    for h in [ha, hb] {
        h.close().await;
    }
}
