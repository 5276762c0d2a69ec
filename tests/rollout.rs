//! A runtime roll-out through the queue, against a real `RabbitMQ`, `BuildKit` and registry:
//! services rebased where the registry can move them, rebuilt at their commit where not, left
//! with a reason otherwise; a second roll-out finds nothing to do.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used, clippy::format_push_string)]

mod common;
use apprunner_build::queue::wire::job::*;
use common::queue::*;
use common::*;
use std::time::Duration;

/// A git repository of a small Node.js app (no packages) with this `run:` section's extra lines.
fn node_repo(run_extra: &str) -> (tempfile::TempDir, String) {
    let yaml = format!(
        "version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - echo built > built.txt\nrun:\n{run_extra}  command: node app.js\n  network:\n    port: 8080\n"
    );
    let js = "require('http').createServer((q, s) => s.end(process.version)).listen(8080);\n";
    let dir = committed(&[("apprunner.yaml", &yaml), ("app.js", js)]);
    let url = format!("file://{}", dir.path().display());
    (dir, url)
}

async fn roll_out(prefix: &str, services: &[&str], extra: &[&str]) -> (i32, String) {
    let mut args = vec!["roll-out", "--runtime", "nodejs18", "--to-version", "18.20.8", "--queue-prefix", prefix];
    for s in services {
        args.extend(["--service", s]);
    }
    args.extend(extra);
    let out = tokio::process::Command::new(BIN).args(&args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("roll-out {extra:?}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout)
}

/// #12: services built while the fleet held nodejs18 at 18.20.6 are rolled out to 18.20.8
/// through the queue: the one the registry can move is rebased, the one with pre-run rebuilt at
/// its commit, the one whose configuration pins a version and the one on another runtime left;
/// each outcome is an event, and a second roll-out finds nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn a_roll_out_rebases_what_it_can_rebuilds_the_rest_and_is_idempotent() {
    let QueueTest { prefix, topology, mut events, cleanup: _cleanup } = QueueTest::new().await;
    let sfx = &prefix[5..];
    let names: Vec<String> = ["copy", "prerun", "pinned", "python"].iter().map(|n| format!("ro-{n}-{sfx}")).collect();
    let repos = [
        node_repo(""),
        node_repo("  pre-run:\n    - echo ready > ready.txt\n"),
        node_repo("  runtime-version: 18.20.6\n"),
        repo("echo trivial build"),
    ];
    let jobs: Vec<BuildJob> = repos.iter().zip(&names).map(|((_, url), name)| job(url, name)).collect();
    let mut held = Worker::start(&prefix, "held", &["--concurrency", "4", "--hold-runtime", "nodejs18=18.20.6"]);
    for j in &jobs {
        submit(&topology, j).await;
    }
    events.until(Duration::from_secs(600), |seen| jobs.iter().all(|j| terminal(seen, &j.job_id).is_some())).await;
    // Stopped, not killed: a worker killed between a job's event and its ack leaves a redelivery.
    held.stop();
    for j in &jobs[..3] {
        let ev = terminal(&events.seen, &j.job_id).unwrap();
        assert_eq!(ev.runtime_version.as_deref(), Some("18.20.6"), "{ev:?}");
    }
    let _w = Worker::start(&prefix, "current", &["--concurrency", "2"]);
    let services: Vec<&str> = names.iter().map(String::as_str).collect();

    // A service whose image is on a registry that is gone is left with the reason; the others
    // still move (the whole roll-out once failed on one such record).
    let gone = format!("ro-gone-{sfx}");
    let mut lost = job(&repos[0].1, &gone);
    lost.image.repository = "127.0.0.1:9/apps/gone".into();
    let lost = apprunner_build::queue::wire::checked::CheckedJob::parse(&serde_json::to_vec(&lost).unwrap()).unwrap();
    let registry = apprunner_build::edge::registry::Registry::new(Default::default(), vec![]);
    let ledger = apprunner_build::queue::ledger::Ledger::new(&registry, "127.0.0.1:5000");
    ledger
        .record_service(
            &lost,
            "127.0.0.1:9/apps/gone@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            None,
            None,
        )
        .await
        .unwrap();
    let (code, with_gone) = roll_out(&prefix, &[&gone, &names[0]], &["--dry-run"]).await;
    assert_eq!(code, 0, "{with_gone}");
    assert!(with_gone.contains(&format!("{gone}: skipped, its image 127.0.0.1:9/apps/gone@sha256:")), "{with_gone}");
    assert!(with_gone.contains("could not be read"), "{with_gone}");
    assert!(with_gone.contains(&format!("{}: nodejs18 18.20.6 -> 18.20.8, rebase", names[0])), "{with_gone}");

    let (code, dry) = roll_out(&prefix, &services, &["--dry-run"]).await;
    assert_eq!(code, 0);
    assert!(dry.contains(&format!("{}: nodejs18 18.20.6 -> 18.20.8, rebase (job rollout-", names[0])), "{dry}");
    assert!(dry.contains(&format!("{}: nodejs18 18.20.6 -> 18.20.8, rebuild: pre-run ran on the run image", names[1])));
    assert!(dry
        .contains(&format!("{}: nodejs18 18.20.6, skipped: its configuration sets runtime-version 18.20.6", names[2])));
    assert!(dry.contains(&format!("{}: skipped, it is on runtime python3", names[3])));
    assert!(dry.contains("1 to rebase, 1 to rebuild, 0 up to date, 1 left as they are, 1 on other runtimes (dry run"));

    // Each roll-out outcome goes over the wire twice, the second (same id) saying FAILED: the
    // roll-out shows the first alone.
    let echo = echo_outcomes(&topology, |e| e.job_id.starts_with("rollout-")).await;
    let (code, out) = roll_out(&prefix, &services, &["--wait", "--wait-timeout", "600"]).await;
    echo.abort();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("{}: SUCCEEDED, rebased on nodejs18 18.20.8", names[0])), "{out}");
    assert!(out.contains(&format!("{}: SUCCEEDED, built on nodejs18 18.20.8", names[1])), "{out}");
    for name in &names[..2] {
        assert_eq!(out.matches(&format!("{name}: ")).count(), 2, "a plan line and one outcome: {out}");
    }
    assert!(!out.contains("FAILED"), "{out}");
    events.settle(Duration::from_secs(2)).await;
    let rollout_event = |service: &str| {
        let done: Vec<&JobEvent> = events
            .seen
            .iter()
            .filter(|e| {
                e.service.name == service && e.job_id.starts_with("rollout-") && e.status == JobStatus::Succeeded
            })
            .collect();
        assert_eq!(done.len(), 1, "one outcome for {service}: {done:#?}");
        done[0].clone()
    };
    let rebased = rollout_event(&names[0]);
    assert!(rebased.rebased_from.is_some());
    assert_eq!(rebased.runtime_version.as_deref(), Some("18.20.8"));
    let rebuilt = rollout_event(&names[1]);
    assert!(rebuilt.rebased_from.is_none());
    assert_eq!(rebuilt.commit, terminal(&events.seen, &jobs[1].job_id).unwrap().commit, "the same commit, rebuilt");
    for ev in [&rebased, &rebuilt] {
        let image = ev.image.as_deref().unwrap();
        assert_eq!(in_image(image, "node --version"), "v18.20.8");
    }

    let (code, again) = roll_out(&prefix, &services, &[]).await;
    assert_eq!(code, 0);
    assert!(again.contains(&format!("{}: nodejs18 18.20.8, up to date", names[0])), "{again}");
    assert!(again.contains(&format!("{}: nodejs18 18.20.8, up to date", names[1])), "{again}");
    assert!(again.contains("0 to rebase, 0 to rebuild, 2 up to date"), "{again}");
}
