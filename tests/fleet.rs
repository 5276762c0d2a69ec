//! Running the fleet: cancelling a deployment (running or queued), and asking what became of
//! deployments (`status`, `history`) from the history the broker keeps, after the workers that
//! built them are gone. Against the machine's RabbitMQ, BuildKit and registry.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::edge::registry::Registry;
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

/// A running deployment, followed by `submit --wait`, is cancelled: it ends within seconds in
/// one CANCELLED event, its follower exits 4 saying so, nothing is at its target and its clone
/// is gone; `status` says CANCELLED; a second cancel changes nothing and says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_deployment_cancelled_ends_in_seconds_with_nothing_pushed() {
    let QueueTest { prefix, topology: _, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let tmp = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(std::env::temp_dir().join(format!("{prefix}-w.log"))).unwrap();
    // A worker with a temporary directory of its own, so its clones can be counted.
    let _worker = Worker {
        child: Command::new(BIN)
            .args(["worker", "--queue-prefix", &prefix, "--worker-id", "w", "--metrics-addr", "off"])
            .env("TMPDIR", tmp.path())
            .stderr(log)
            .spawn()
            .unwrap(),
    };
    let marker = uuid::Uuid::new_v4().to_string();
    let (dir, _) = repo(&format!("echo {marker}; sleep 120"));
    let op = uuid::Uuid::new_v4().simple().to_string();
    let image = format!("127.0.0.1:5000/apprunner-tests/cancel-{op}");
    let follower = Command::new(BIN)
        .args(["submit", dir.path().to_str().unwrap(), "--queue-prefix", &prefix, "--wait"])
        .args(["--operation-id", &op, "--image", &image, "--no-timestamps"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    events
        .until(Duration::from_secs(120), |seen| {
            seen.iter().any(|e| e.operation_id == op && e.status == JobStatus::InProgress)
        })
        .await;
    // Until the step runs (a first build on a fresh machine fetches its runtime image first).
    let building = Instant::now();
    while !running_step(&marker) {
        assert!(building.elapsed() < Duration::from_secs(120), "the step runs before the cancel");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let asked = Instant::now();
    let out = cli(&prefix, &["cancel", &op]);
    let took = asked.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("cancelled (it was IN_PROGRESS)"), "{}", text(&out));
    assert!(took < Duration::from_secs(10), "cancel took {took:?}");
    let followed = follower.wait_with_output().unwrap();
    assert_eq!(followed.status.code(), Some(4), "{}", text(&followed));
    // BuildKit stopped the step (the worker's connection to it, shared by its builds, stays).
    let stopped = Instant::now();
    while running_step(&marker) {
        assert!(stopped.elapsed() < Duration::from_secs(15), "the cancelled build's step still runs");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let said = text(&followed);
    assert!(said.lines().next().unwrap() == format!("operation {op}"), "{said}");
    assert!(said.contains("Cancel requested: the build was stopped; nothing was pushed."), "{said}");
    assert!(said.contains(&format!("deployment {op} was cancelled")), "{said}");
    events.settle(Duration::from_secs(2)).await;
    let terminal: Vec<_> = events.seen.iter().filter(|e| e.operation_id == op && e.status.is_terminal()).collect();
    assert_eq!(terminal.len(), 1, "{terminal:#?}");
    assert_eq!(terminal[0].status, JobStatus::Cancelled);
    let registry = Registry::new(Default::default(), vec![]);
    let target = ImageRef::parse(&format!("{image}:{op}")).unwrap();
    assert!(registry.manifest_of(&target).await.unwrap().is_none(), "nothing pushed to {target}");
    let clones = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("apprunner-src-"));
    assert_eq!(clones.count(), 0, "the clone is removed");

    let status = cli(&prefix, &["status", &op]);
    assert!(status.status.success() && text(&status).contains("status: CANCELLED (cancelled)"), "{}", text(&status));
    let again = cli(&prefix, &["cancel", &op]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("had ended already; nothing changed"), "{}", text(&again));
    let unknown = cli(&prefix, &["status", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no operation 0123456789abcdef0123456789abcdef in the history"),
        "{}",
        text(&unknown)
    );
}

/// Whether a process on this machine (a build step in BuildKit's sandbox included) has `marker`
/// in its command line.
fn running_step(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|p| std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker)))
}

/// A deployment cancelled while queued ends at once and is never built; `status` and
/// `history` answer for deployments built by workers that have since stopped.
#[tokio::test(flavor = "multi_thread")]
async fn a_queued_deployment_is_never_built_and_history_outlives_the_workers() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let (_dir, url) = repo(&format!("echo {}", uuid::Uuid::new_v4()));
    let (_bad_dir, bad_url) = repo("echo broken >&2; exit 7");
    let service = format!("history-{}", &prefix[5..]);
    let good = job(&url, &service);
    let bad = job(&bad_url, &service);
    let queued = job(&url, &service);
    for j in [&good, &bad, &queued] {
        submit(&topology, j).await;
    }
    // No worker yet: the third is cancelled where it waits.
    let out = cli(&prefix, &["cancel", &queued.operation_id]);
    assert!(out.status.success() && text(&out).contains("cancelled (it was QUEUED)"), "{}", text(&out));
    let mut w = Worker::start(&prefix, "w", &[]);
    events
        .until(Duration::from_secs(180), |seen| [&good, &bad].iter().all(|j| terminal(seen, &j.job_id).is_some()))
        .await;
    events.settle(Duration::from_secs(3)).await;
    w.stop();
    assert!(
        !events.seen.iter().any(|e| e.job_id == queued.job_id && e.status == JobStatus::InProgress),
        "the cancelled job was not built: {:#?}",
        events.seen
    );
    let _other = Worker::start(&prefix, "w2", &[]);
    let history = cli(&prefix, &["history", "--service", &service]);
    let said = text(&history);
    assert!(history.status.success(), "{said}");
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert!(
        lines[0].contains(&good.operation_id) && lines[0].contains("SUCCEEDED") && lines[0].contains("@sha256:"),
        "{said}"
    );
    assert!(
        lines[1].contains(&bad.operation_id) && lines[1].contains("FAILED") && lines[1].contains("USER: "),
        "{said}"
    );
    assert!(lines[2].contains(&queued.operation_id) && lines[2].contains("CANCELLED"), "{said}");
    let status = cli(&prefix, &["status", &bad.operation_id]);
    assert!(
        text(&status).contains("status: FAILED (failed)") && text(&status).contains("reason (USER): "),
        "{}",
        text(&status)
    );
    assert!(text(&status).contains("exit code 7"), "{}", text(&status));
}

fn started_at(events: &[JobEvent], job: &BuildJob) -> Option<time::OffsetDateTime> {
    let e = events.iter().find(|e| e.job_id == job.job_id && e.status == JobStatus::InProgress)?;
    time::OffsetDateTime::parse(&e.at, &time::format_description::well_known::Rfc3339).ok()
}

/// With both of a worker's slots busy with batch work and five batch jobs waiting, a user's
/// deployment is the next one started; the batch jobs all run after.
#[tokio::test(flavor = "multi_thread")]
async fn a_users_deployment_goes_before_waiting_batch_work() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let batch: Vec<(tempfile::TempDir, BuildJob)> = (0..7)
        .map(|i| {
            let (dir, url) = repo(&format!("sleep 5; echo {tag} batch {i}"));
            (dir, job(&url, &format!("batch-{i}")))
        })
        .collect();
    for (_, j) in &batch {
        apprunner_build::queue::client::submit(
            &brokers(),
            &topology,
            j,
            apprunner_build::queue::transport::Lane::Batch,
            None,
        )
        .await
        .unwrap();
    }
    let _w = Worker::start(&prefix, "w", &["--concurrency", "2"]);
    let running = |seen: &[JobEvent]| batch.iter().filter(|(_, j)| started_at(seen, j).is_some()).count();
    events.until(Duration::from_secs(120), |seen| running(seen) == 2).await;
    let (_user_dir, url) = repo(&format!("echo {tag} user"));
    let user = job(&url, "user");
    let submitted = time::OffsetDateTime::now_utc();
    submit(&topology, &user).await;
    events.until(Duration::from_secs(300), |seen| batch.iter().all(|(_, j)| terminal(seen, &j.job_id).is_some())).await;
    let user_started = started_at(&events.seen, &user).expect("the user's deployment ran");
    let after: Vec<_> =
        batch.iter().filter_map(|(_, j)| started_at(&events.seen, j)).filter(|t| *t > submitted).collect();
    assert_eq!(after.len(), 5, "five batch jobs started after the user's submission");
    assert!(after.iter().all(|t| *t > user_started), "the user's deployment started first: {:#?}", events.seen);
    assert_eq!(terminal(&events.seen, &user.job_id).unwrap().status, JobStatus::Succeeded);
}

/// Where on the wire (the raw listener's arrival order) an event of `job` with `status` came.
fn place(events: &[JobEvent], job: &BuildJob, status: JobStatus) -> usize {
    events.iter().position(|e| e.job_id == job.job_id && e.status == status).unwrap_or_else(|| panic!("{events:#?}"))
}

/// Deployments of one service run one at a time in the order they were submitted, and the
/// later submission's outcome is the service's record, however the race goes: (1) the first
/// submitted reaches the service first (back to back, to a worker with free slots); (2) the
/// second does: the first waits out the service's lease (held by the test) when the lease frees
/// and the second is submitted, so the second reaches it while the first is away.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_deploys_in_submission_order_whichever_deployment_reaches_it_first() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (_d1, u1) = repo(&format!("sleep 2; echo {tag} first"));
    let (_d2, u2) = repo(&format!("echo {tag} second"));
    let _w = Worker::start(&prefix, "w", &["--concurrency", "2"]);
    let registry = Registry::new(Default::default(), vec![]);
    let ledger = apprunner_build::queue::ledger::Ledger::new(&registry, "127.0.0.1:5000");
    let record_of = |service: String| {
        let ledger = &ledger;
        async move { ledger.services(&[service]).await.unwrap().pop().unwrap().unwrap().job.operation_id }
    };
    for way in ["first-reaches-first", "second-reaches-first"] {
        let service = format!("in-order-{way}-{}", &tag[..8]);
        let (first, second) = (job(&u1, &service), job(&u2, &service));
        if way == "first-reaches-first" {
            submit(&topology, &first).await;
            submit(&topology, &second).await;
        } else {
            // The service's lease, held as a worker holds it: an exclusive queue of its name.
            let conn = lapin::Connection::connect(AMQP, Default::default()).await.unwrap();
            let ch = conn.create_channel().await.unwrap();
            let exclusive = lapin::options::QueueDeclareOptions { exclusive: true, ..Default::default() };
            let lease = topology.service_lease(&service);
            ch.queue_declare(lease.as_str().into(), exclusive, Default::default()).await.unwrap();
            submit(&topology, &first).await;
            let waits = format!("job {}: another deployment of service {service} is running", first.job_id);
            let began = Instant::now();
            while !Worker::log(&prefix, "w").contains(&waits) {
                assert!(began.elapsed() < Duration::from_secs(60), "{}", Worker::log(&prefix, "w"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            conn.close(200, "the service is free".into()).await.unwrap();
            submit(&topology, &second).await;
            let lets_first_go = format!(
                "job {}: deployment {} of service {service} was submitted before it",
                second.job_id, first.operation_id
            );
            let began = Instant::now();
            while !Worker::log(&prefix, "w").contains(&lets_first_go) {
                assert!(began.elapsed() < Duration::from_secs(60), "{}", Worker::log(&prefix, "w"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        events
            .until(Duration::from_secs(180), |seen| {
                [&first, &second].iter().all(|j| terminal(seen, &j.job_id).is_some())
            })
            .await;
        for j in [&first, &second] {
            assert_eq!(terminal(&events.seen, &j.job_id).unwrap().status, JobStatus::Succeeded);
        }
        let (seen, ended) = (&events.seen, terminal(&events.seen, &first.job_id).unwrap().status);
        assert!(
            place(seen, &first, ended) < place(seen, &second, JobStatus::InProgress),
            "{way}: the second started before the first ended: {seen:#?}"
        );
        assert_eq!(record_of(service).await, second.operation_id, "{way}: the record is the last submitted's");
    }
}

/// As a new user would: one worker with two slots, five `submit --batch --wait` deployments of
/// six-second builds, then, three seconds later, a user's one-second deployment of another
/// service (`submit --wait`). The user's deployment starts before every batch job that was not
/// already running, a batch build giving way to it, and every batch job still ends, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_users_deployment_from_the_cli_starts_before_batch_work_it_finds_running() {
    let QueueTest { prefix, topology: _, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let _w = Worker::start(&prefix, "w", &["--concurrency", "2"]);
    let follow = |dir: &std::path::Path, service: &str, batch: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["submit", dir.to_str().unwrap(), "--queue-prefix", &prefix, "--wait", "--no-timestamps"]);
        cmd.args(["--service", service]);
        if batch {
            cmd.arg("--batch");
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let batch_dirs: Vec<_> = (0..5).map(|i| repo(&format!("sleep 6; echo {tag} batch {i}")).0).collect();
    let batch: Vec<_> = batch_dirs
        .iter()
        .enumerate()
        .map(|(i, d)| follow(d.path(), &format!("batch-{i}-{}", &tag[..8]), true))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (user_dir, _) = repo(&format!("sleep 1; echo {tag} user"));
    let user_service = format!("user-{}", &tag[..8]);
    let user = follow(user_dir.path(), &user_service, false);
    let user_out = user.wait_with_output().unwrap();
    assert!(user_out.status.success(), "{}", text(&user_out));
    let batch_out: Vec<Output> = batch.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for out in &batch_out {
        assert!(out.status.success(), "{}", text(out));
    }
    events.settle(Duration::from_secs(2)).await;
    let seen = &events.seen;
    let user_started = seen
        .iter()
        .position(|e| e.service.name == user_service && e.status == JobStatus::InProgress)
        .unwrap_or_else(|| panic!("{seen:#?}"));
    let user_queued = seen.iter().position(|e| e.service.name == user_service).unwrap();
    for i in 0..5 {
        let service = format!("batch-{i}-{}", &tag[..8]);
        let starts: Vec<usize> = seen
            .iter()
            .enumerate()
            .filter(|(_, e)| e.service.name == service && e.status == JobStatus::InProgress)
            .map(|(k, _)| k)
            .collect();
        // A batch job that had not started when the user's was queued starts after it.
        let first = *starts.first().unwrap_or_else(|| panic!("{seen:#?}"));
        if first > user_queued {
            assert!(first > user_started, "batch {i} started before the user's deployment: {seen:#?}");
        }
        let outcomes = seen.iter().filter(|e| e.service.name == service && e.status.is_terminal()).count();
        assert_eq!(outcomes, 1, "batch {i}: {seen:#?}");
    }
    // Both slots were busy with batch work when the user's deployment came: one gave way.
    let log = Worker::log(&prefix, "w");
    assert!(log.contains("gave its slot to a user's deployment"), "{log}");
    let yielded = batch_out.iter().filter(|o| text(o).contains("this batch build stops here")).count();
    assert_eq!(yielded, 1, "{}", batch_out.iter().map(text).collect::<String>());
}
