//! One outcome per deployment, counted on the wire: a worker that dies between its outcome and
//! its marker (the window a redelivery could report again) leaves one terminal event, and every
//! reader the project ships shows one outcome when the wire carries two under one id. Against
//! the machine's `RabbitMQ`, `BuildKit` and registry.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::queue::transport::{Outgoing, Publisher, Topology};
use apprunner_build::queue::wire::job::*;
use common::queue::*;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn cli(prefix: &str, args: &[&str]) -> Output {
    Command::new(BIN).args(args).args(["--queue-prefix", prefix]).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Waits (bounded) until the worker `id` has said `needle`.
async fn logged(prefix: &str, id: &str, needle: &str, limit: Duration) {
    let began = Instant::now();
    while !Worker::log(prefix, id).contains(needle) {
        assert!(began.elapsed() < limit, "worker {id} did not say `{needle}`:\n{}", Worker::log(prefix, id));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A worker dies right after the broker confirmed its deployment's outcome, before it marks the
/// success reported or acks the job (the failpoint `after-outcome`), for a success and for a
/// failure. The next worker takes the job again, finds the outcome in the history, and
/// publishes nothing: one terminal event on the wire, one failed entry, nothing left queued.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_dying_between_its_outcome_and_its_marker_leaves_one_outcome_on_the_wire() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (_ok_dir, ok_url) = repo(&format!("echo {tag} fine"));
    let (_bad_dir, bad_url) = repo(&format!("echo {tag} broken; exit 3"));
    let (good, bad) = (job(&ok_url, "dies-after-success"), job(&bad_url, "dies-after-failure"));
    // One at a time: a dying worker must not take the other's job again.
    for (j, id) in [(&good, "a"), (&bad, "b")] {
        let mut dying = Worker::with_env(&prefix, id, &[], &[("APPRUNNER_FAILPOINTS", "after-outcome")]);
        submit(&topology, j).await;
        events.until(Duration::from_secs(180), |seen| terminal(seen, &j.job_id).is_some()).await;
        let began = Instant::now();
        let code = loop {
            if let Some(status) = dying.child.try_wait().unwrap() {
                break status.code();
            }
            assert!(began.elapsed() < Duration::from_secs(30), "the worker did not die at its failpoint");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(code, Some(137), "{}", Worker::log(&prefix, id));
        // The job is back in the queue, unacked by its dead worker: the next worker takes it.
        let next = format!("{id}-next");
        let mut w = Worker::start(&prefix, &next, &[]);
        let ended = terminal(&events.seen, &j.job_id).unwrap().status;
        let said = format!("job {}: its operation ended {} already; nothing more is published", j.job_id, ended.key());
        logged(&prefix, &next, &said, Duration::from_secs(120)).await;
        w.stop();
    }
    events.settle(Duration::from_secs(3)).await;
    assert_eq!(terminal(&events.seen, &good.job_id).unwrap().status, JobStatus::Succeeded);
    assert_eq!(terminal(&events.seen, &bad.job_id).unwrap().status, JobStatus::Failed);
    for j in [&good, &bad] {
        assert_eq!(events.outcomes_of(&j.operation_id), 1, "{:#?}", events.seen);
    }
    assert_eq!(ready_in(&topology.jobs()).await, 0);
    assert_eq!(ready_in(&topology.failed()).await, 1, "one failed entry, the failure's");
}

/// The wire carries a deployment's outcome twice under one id, the second saying the opposite:
/// `submit --wait`, `status` and `history` show the first alone; two failed entries of one
/// deployment are resubmitted once by `rebuild-failed`. (`roll-out --wait`: tests/rollout.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn every_reader_shows_one_outcome_when_the_wire_carries_two() {
    let QueueTest { prefix, topology, cleanup: _cleanup, .. } = QueueTest::new().await;
    let (dir, _) = repo("echo never built");
    let op = uuid::Uuid::new_v4().simple().to_string();
    let service = format!("twice-{}", &prefix[5..]);
    // No worker: the test publishes what a worker would, and the second outcome.
    let follower = Command::new(BIN)
        .args(["submit", dir.path().to_str().unwrap(), "--queue-prefix", &prefix, "--wait", "--no-timestamps"])
        .args(["--operation-id", &op, "--service", &service, "--wait-timeout", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let began = Instant::now();
    while ready_in(&topology.jobs()).await == 0 {
        assert!(began.elapsed() < Duration::from_secs(60), "the follower did not submit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queued = apprunner_build::queue::history::read(&brokers(), &topology).await.unwrap();
    let queued = queued.into_iter().find(|e| e.operation_id == op).unwrap();
    let p = Publisher::new(&brokers(), "test-twice");
    let publish_event = |status: JobStatus, id: String| {
        let mut e = queued.clone();
        e.status = status;
        if status == JobStatus::Succeeded {
            e.image = Some(format!("127.0.0.1:5000/apprunner-apps/{service}@sha256:{}", "a".repeat(64)));
        }
        if status == JobStatus::Failed {
            e.error =
                Some(FailureInfo { class: apprunner_build::error::ErrorClass::User, message: "the second".into() });
        }
        (serde_json::to_vec(&e).unwrap(), Topology::event_key(&op, status.key()), id)
    };
    let line = r#"[{"stream":"deployment/OP","timestamp_ms":1,"source":"Build","text":"hello from the build"}]"#
        .replace("OP", &op);
    let log_key = Topology::log_key(&op);
    let logs = topology.logs();
    p.publish(&Outgoing { message_id: Some("b.1"), ..Outgoing::new(&logs, &log_key, line.as_bytes()) }).await.unwrap();
    for (status, id) in [
        (JobStatus::InProgress, format!("{op}.started")),
        (JobStatus::Succeeded, format!("{op}.outcome")),
        (JobStatus::Failed, format!("{op}.outcome")),
    ] {
        let (payload, key, id) = publish_event(status, id);
        let events = topology.events();
        p.publish(&Outgoing { message_id: Some(&id), ..Outgoing::new(&events, &key, &payload) }).await.unwrap();
    }
    let followed = follower.wait_with_output().unwrap();
    let said = text(&followed);
    assert_eq!(followed.status.code(), Some(0), "{said}");
    assert!(said.contains("[Build] hello from the build"), "{said}");
    assert!(String::from_utf8_lossy(&followed.stdout).lines().last().unwrap().ends_with(&"a".repeat(64)), "{said}");
    assert!(!said.contains("the second"), "{said}");

    let status = cli(&prefix, &["status", &op]);
    assert!(text(&status).contains("status: SUCCEEDED (succeeded)"), "{}", text(&status));
    assert!(!text(&status).contains("the second"), "{}", text(&status));
    let history = cli(&prefix, &["history", "--service", &service]);
    let lines: Vec<String> = text(&history).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains(&op) && lines[0].contains("SUCCEEDED"), "{lines:#?}");

    // A deployment's failure recorded twice (an entry published again when its confirm was
    // lost): one new deployment, both entries gone.
    let (_bad, bad_url) = repo("exit 1");
    let failed = job(&bad_url, &format!("failed-twice-{}", &prefix[5..]));
    let error = apprunner_build::error::BuildError::user("Failed to execute 'build' command: exit code 1");
    let entry = serde_json::to_vec(&FailedJob::of_job(&failed, &error, 1, "w")).unwrap();
    let failed_queue = topology.failed();
    for _ in 0..2 {
        p.publish(&Outgoing::new("", &failed_queue, &entry)).await.unwrap();
    }
    p.close().await;
    let rebuilt = cli(&prefix, &["rebuild-failed"]);
    let said = text(&rebuilt);
    assert!(rebuilt.status.success(), "{said}");
    assert_eq!(said.matches(&format!("resubmitted {} ", failed.job_id)).count(), 1, "{said}");
    assert!(said.contains(&format!("removed a second failed entry of {}", failed.job_id)), "{said}");
    assert_eq!(ready_in(&topology.batch()).await, 1, "{said}");
    assert_eq!(ready_in(&topology.failed()).await, 0, "{said}");
}
