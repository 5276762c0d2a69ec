//! A watcher following a private repository on an HTTPS host, its token in the watcher's and
//! the worker's git-credentials file: the branch's head is asked with it (protocol v2 `ls-refs`
//! on the watcher's own client), the deployment builds, and no log line shows the token. Its
//! own test binary: the test CA is trusted through `SSL_CERT_FILE` and `GIT_SSL_CAINFO`, which
//! the watcher and the worker inherit.
#![allow(clippy::unwrap_used)]

mod common;

use apprunner_build::core::watch::decision::operation_id;
use apprunner_build::queue::wire::job::{JobEvent, JobStatus};
use common::git_http::{certificates, GitHost, HostOptions};
use common::queue::*;
use common::*;
use std::process::Command;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_polls_a_private_https_host_with_its_credentials_and_never_shows_them() {
    let certs = tempfile::tempdir().unwrap();
    let (chain, key, bundle) = certificates(certs.path());
    std::env::set_var("SSL_CERT_FILE", &bundle);
    std::env::set_var("GIT_SSL_CAINFO", &bundle);
    let token = format!("tok{}", uuid::Uuid::new_v4().simple());
    let host = GitHost::start_with(HostOptions {
        v2: true,
        tls: Some((chain, key)),
        basic_auth: Some(("deploy".into(), token.clone())),
    })
    .await;
    let app = committed(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  command: python -m http.server 8080\n"),
        ("index.html", "v1\n"),
    ]);
    let url = host.publish(app.path(), "private");
    let store = certs.path().join("git-credentials");
    std::fs::write(&store, format!("https://deploy:{token}@127.0.0.1:{}\n", host.port)).unwrap();
    let store_arg = store.to_string_lossy().to_string();

    let mut t = QueueTest::new().await;
    let _worker = Worker::start(&t.prefix, "w", &["--git-credentials", &store_arg]);
    let service = format!("private-{}", &t.prefix[5..]);
    let services = certs.path().join("services.yaml");
    let file = format!("services:\n  - name: {service}\n    repository: {url}\n    image: 127.0.0.1:5000/apprunner-tests/{service}:live\n");
    std::fs::write(&services, file).unwrap();
    let args = ["--poll-interval", "1", "--metrics-addr", "off", "--git-credentials", &store_arg];
    let mut watcher = Watch::with(&t.prefix, "watch", &services, &certs.path().join("state"), &args);

    let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(app.path()).output().unwrap();
    let head = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let op = operation_id(&service, &head);
    let ended = |seen: &[JobEvent]| seen.iter().any(|e| e.operation_id == op && e.status.is_terminal());
    t.events.until(Duration::from_secs(180), ended).await;
    let _ = watcher.child.kill();
    let _ = watcher.child.wait();
    let said = Watch::log(&t.prefix, "watch");
    let done = t.events.seen.iter().find(|e| e.operation_id == op && e.status.is_terminal()).unwrap();
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}\n{said}\n{}", Worker::log(&t.prefix, "w"));
    let asked = host.take_asked();
    let looks: Vec<_> = asked.iter().filter(|a| a.agent.starts_with("apprunner-build/")).collect();
    assert!(!looks.is_empty() && looks.iter().all(|a| a.authorized), "the watcher asked with the token: {asked:?}");
    for text in [&said, &Worker::log(&t.prefix, "w")] {
        assert!(!text.contains(&token), "a log line shows the token");
    }
    assert!(t.events.published_lines(&op).concat().iter().all(|l| !l.contains(&token)));
}
