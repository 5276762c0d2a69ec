//! Automatic deployment against the real services: watchers follow a repository whose app is in
//! a subfolder, and workers build what they submit. A commit outside the source directory
//! deploys nothing, one inside deploys once; two watchers at once and a restarted one deploy no
//! commit twice; a bad services file stops a start, and keeps the last good set on a reload.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;

use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::core::watch::decision::operation_id;
use apprunner_build::edge::registry::Registry;
use apprunner_build::queue::wire::job::{JobEvent, JobStatus};
use common::queue::*;
use common::{committed, git};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const YAML: &str = "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo building\nrun:\n  command: python -m http.server 8080\n";

fn commit(repo: &Path, file: &str, text: &str) -> String {
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", file]);
    let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(repo).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn head_of(repo: &Path) -> String {
    let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(repo).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn events_of<'a>(events: &'a [JobEvent], op: &str) -> impl Iterator<Item = &'a JobEvent> + 'a {
    let op = op.to_string();
    events.iter().filter(move |e| e.operation_id == op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_deploy_each_commit_that_changes_the_source_directory_once() {
    let mut t = QueueTest::new().await;
    let _worker = Worker::start(&t.prefix, "w", &[]);
    let repo = committed(&[("app/apprunner.yaml", YAML), ("app/index.html", "v1\n"), ("README.md", "docs\n")]);
    let service = format!("watched-{}", &t.prefix[5..]);
    let image = format!("127.0.0.1:5000/apprunner-tests/{service}:live");
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.yaml");
    let file = format!(
        "services:\n  - name: {service}\n    repository: file://{}\n    branch: main\n    source-directory: /app\n    image: {image}\n",
        repo.path().display()
    );
    std::fs::write(&services, &file).unwrap();
    let state = dir.path().join("state");
    let mut first = Watch::start(&t.prefix, "watch-1", &services, &state);

    // A service with no deployment on record gets one for its head, as App Runner deploys a
    // service when it is created.
    let c1 = head_of(repo.path());
    let op1 = operation_id(&service, &c1);
    let ended = |op: &str| {
        let op = op.to_string();
        move |seen: &[JobEvent]| events_of(seen, &op).any(|e| e.status.is_terminal())
    };
    t.events.until(Duration::from_secs(180), ended(&op1)).await;
    let done = events_of(&t.events.seen, &op1).find(|e| e.status.is_terminal()).unwrap().clone();
    assert_eq!(done.status, JobStatus::Succeeded, "{done:?}\n{}", Watch::log(&t.prefix, "watch-1"));
    assert_eq!(done.trigger.as_deref(), Some("SERVICE_CREATE"));
    assert_eq!(done.commit.as_deref(), Some(c1.as_str()));

    // A commit outside the source directory deploys nothing.
    let c2 = commit(repo.path(), "README.md", "more docs\n");
    let looked = format!("nothing under /app changed from {} to {}", &c1[..12], &c2[..12]);
    wait_for_log(&t.prefix, "watch-1", &looked).await;
    assert_eq!(events_of(&t.events.seen, &operation_id(&service, &c2)).count(), 0);

    // One inside deploys once, its image's revision that commit; the log names the trigger.
    let c3 = commit(repo.path(), "app/index.html", "v3\n");
    let op3 = operation_id(&service, &c3);
    t.events.until(Duration::from_secs(180), ended(&op3)).await;
    let done = events_of(&t.events.seen, &op3).find(|e| e.status.is_terminal()).unwrap().clone();
    assert_eq!((done.status, done.trigger.as_deref()), (JobStatus::Succeeded, Some("SOURCE_CODE_CHANGE")), "{done:?}");
    let target = ImageRef::parse(&image).unwrap();
    let (_, labels) = apprunner_build::edge::image::existing(&Registry::new(Default::default(), vec![]), &target)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], c3);
    let lines = t.events.published_lines(&op3).concat();
    let started = format!("Deployment with ID : {op3} started. Triggering event : SOURCE_CODE_CHANGE");
    assert!(lines.iter().any(|l| l.contains(&started)), "{lines:#?}");

    // Two watchers at once, and one restarted: no commit deploys twice.
    let _second = Watch::start(&t.prefix, "watch-2", &services, &state.with_extension("2"));
    let c4 = commit(repo.path(), "app/index.html", "v4\n");
    let op4 = operation_id(&service, &c4);
    t.events.until(Duration::from_secs(180), ended(&op4)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let _again = Watch::start(&t.prefix, "watch-1b", &services, &state);
    wait_for_log(&t.prefix, "watch-1b", &format!("the head is the last deployed commit ({})", &c4[..12])).await;
    t.events.settle(Duration::from_secs(3)).await;
    for (c, op) in [(&c1, &op1), (&c3, &op3), (&c4, &op4)] {
        let outcomes = events_of(&t.events.seen, op).filter(|e| e.status.is_terminal()).count();
        assert_eq!(outcomes, 1, "commit {c}: {:#?}", events_of(&t.events.seen, op).collect::<Vec<_>>());
    }
    let ops: std::collections::BTreeSet<&str> =
        t.events.seen.iter().filter(|e| e.service.name == service).map(|e| e.operation_id.as_str()).collect();
    assert_eq!(ops.len(), 3, "one deployment per commit that changed /app: {ops:?}");

    // A reload with a bad file keeps the last good set and says why.
    std::fs::write(&services, "services:\n  - name: x\n").unwrap();
    wait_for_log(&t.prefix, "watch-1b", "has problems; the last good set is kept").await;
    wait_for_log(&t.prefix, "watch-1b", "services[0].name: `x` is not a service name").await;
    let c5 = commit(repo.path(), "app/index.html", "v5\n");
    t.events.until(Duration::from_secs(180), ended(&operation_id(&service, &c5))).await;

    // A force push: a new history whose head has the same files as the last deployed commit.
    // Nothing under /app differs, but the last deployment is not in the head's history: it deploys.
    git(repo.path(), &["checkout", "-q", "--orphan", "rewritten"]);
    git(repo.path(), &["commit", "-q", "-m", "history rewritten"]);
    git(repo.path(), &["branch", "-q", "-M", "rewritten", "main"]);
    let c6 = head_of(repo.path());
    t.events.until(Duration::from_secs(180), ended(&operation_id(&service, &c6))).await;
    let rewritten = format!("the branch was rewritten: {} is not in the history of {}", &c5[..12], &c6[..12]);
    let said = |id: &str| Watch::log(&t.prefix, id).contains(&rewritten);
    assert!(said("watch-1b") || said("watch-2"), "{}", Watch::log(&t.prefix, "watch-1b"));
}

/// Watchers that see a commit at the same moment each submit it: the same operation, which the
/// workers build once and end once, whether the copies come one after another or together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_submitted_by_several_watchers_is_one_deployment() {
    let mut t = QueueTest::new().await;
    let _worker = Worker::start(&t.prefix, "w", &[]);
    let repo = committed(&[("apprunner.yaml", YAML), ("index.html", "v1\n")]);
    let service = format!("copies-{}", &t.prefix[5..]);
    let file = format!(
        "services:\n  - name: {service}\n    repository: file://{}\n    image: 127.0.0.1:5000/apprunner-tests/{service}:live\n",
        repo.path().display()
    );
    let watched = apprunner_build::core::watch::read_services(
        &file,
        "s.yaml",
        apprunner_build::core::catalog::RuntimeCatalog::builtin(),
    )
    .unwrap();
    let ended = |op: String| move |seen: &[JobEvent]| events_of(seen, &op).any(|e| e.status.is_terminal());
    let job_at = |commit: &str| apprunner_build::watch::watched_job(&watched[0], commit, "SOURCE_CODE_CHANGE");
    let said = |line: String| {
        let (prefix, began) = (t.prefix.clone(), Instant::now());
        async move {
            while !Worker::log(&prefix, "w").contains(&line) {
                assert!(began.elapsed() < Duration::from_secs(120), "no {line:?}:\n{}", Worker::log(&prefix, "w"));
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    // One after another, the tag still the first's: the second finds the image and its outcome.
    let c1 = head_of(repo.path());
    let first = job_at(&c1);
    submit(&t.topology, &first).await;
    t.events.until(Duration::from_secs(180), ended(first.operation_id.clone())).await;
    let again = job_at(&c1);
    assert_eq!((again.operation_id == first.operation_id, again.job_id == first.job_id), (true, false));
    submit(&t.topology, &again).await;
    said(format!("job {} was built and reported already", again.job_id)).await;
    // Together: one builds, the other waits for it and ends nothing.
    let c2 = commit(repo.path(), "index.html", "v2\n");
    let (a, b) = (job_at(&c2), job_at(&c2));
    submit(&t.topology, &a).await;
    submit(&t.topology, &b).await;
    t.events.until(Duration::from_secs(180), ended(a.operation_id.clone())).await;
    let acked = |job: &str| {
        let log = Worker::log(&t.prefix, "w");
        log.contains(&format!("job {job} was built and reported already"))
            || log.contains(&format!("job {job}: a copy of an operation that ended; acked, not built"))
    };
    let began = Instant::now();
    while !(acked(&a.job_id) || acked(&b.job_id)) {
        assert!(began.elapsed() < Duration::from_secs(120), "{}", Worker::log(&t.prefix, "w"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A late copy of the first, after the second's image went to the tag: acked, not built
    // (built, it would put the first commit's image back at the tag).
    let late = job_at(&c1);
    submit(&t.topology, &late).await;
    said(format!("job {}: a copy of an operation that ended; acked, not built", late.job_id)).await;
    t.events.settle(Duration::from_secs(3)).await;
    for op in [&first.operation_id, &a.operation_id] {
        let outcomes: Vec<_> = events_of(&t.events.seen, op).filter(|e| e.status.is_terminal()).collect();
        assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
        assert_eq!(outcomes[0].status, JobStatus::Succeeded);
    }
    // No copy put an older image back: the tag holds the last commit's.
    let live = ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/{service}:live")).unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let (_, labels) = apprunner_build::edge::image::existing(&registry, &live).await.unwrap().unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], c2, "{}", Worker::log(&t.prefix, "w"));
}

/// Webhooks of each provider make a watcher look now (its interval is an hour here); a wrong
/// signature or token gets 401 and does nothing, a body over 1 MiB 413, a repository no service
/// follows 202 and nothing; the metrics count each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_webhooks_of_each_provider_make_the_watcher_look_now() {
    let mut t = QueueTest::new().await;
    let _worker = Worker::start(&t.prefix, "w", &[]);
    let repo = committed(&[("apprunner.yaml", YAML), ("index.html", "v1\n")]);
    let url = format!("file://{}", repo.path().display());
    let service = format!("hooked-{}", &t.prefix[5..]);
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.yaml");
    let file = format!("services:\n  - name: {service}\n    repository: {url}\n    branch: main\n    image: 127.0.0.1:5000/apprunner-tests/{service}:live\n");
    std::fs::write(&services, file).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (hooks, metrics) = (free(), free());
    let secret_arg = secret.to_string_lossy().to_string();
    let args = [
        "--poll-interval",
        "3600",
        "--webhook-addr",
        &hooks,
        "--webhook-secret-file",
        &secret_arg,
        "--metrics-addr",
        &metrics,
    ];
    let _watch = Watch::with(&t.prefix, "hooks", &services, &dir.path().join("state"), &args);
    let http = reqwest::Client::new();
    let began = Instant::now();
    while http.get(format!("http://{hooks}/healthz")).send().await.is_err() {
        assert!(began.elapsed() < Duration::from_secs(30), "{}", Watch::log(&t.prefix, "hooks"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sign = |body: &str| {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        format!("sha256={}", hex::encode(ring::hmac::sign(&key, body.as_bytes()).as_ref()))
    };
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req = http.post(format!("http://{hooks}/webhook")).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let github = format!(r#"{{"ref":"refs/heads/main","repository":{{"clone_url":"{url}"}}}}"#);
    let gh = |sig: String| vec![("x-github-event", "push".to_string()), ("x-hub-signature-256", sig)];

    assert_eq!(post(gh(sign("other")), github.clone()).await.0, 401);
    assert_eq!(post(vec![("x-github-event", "push".into())], github.clone()).await.0, 401, "no signature");
    let huge = "x".repeat(2 << 20);
    assert_eq!(post(gh(sign(&huge)), huge).await.0, 413);
    let ping = r#"{"zen":"hi"}"#.to_string();
    assert_eq!(post(vec![("x-github-event", "ping".into()), ("x-hub-signature-256", sign(&ping))], ping).await.0, 200);
    let elsewhere =
        r#"{"ref":"refs/heads/main","repository":{"clone_url":"https://git.example.com/other.git"}}"#.to_string();
    assert_eq!(
        post(gh(sign(&elsewhere)), elsewhere).await,
        (202, "no service follows that repository and branch\n".into())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(t.events.seen.iter().all(|e| e.service.name != service), "nothing deployed before a genuine push");
    t.events.settle(Duration::from_millis(500)).await;
    assert!(t.events.seen.iter().all(|e| e.service.name != service), "nothing deployed before a genuine push");

    assert_eq!(post(gh(sign(&github)), github).await, (202, "looking at 1 services now\n".into()));
    let c1 = head_of(repo.path());
    let op1 = operation_id(&service, &c1);
    let ended = |op: String| move |seen: &[JobEvent]| events_of(seen, &op).any(|e| e.status.is_terminal());
    t.events.until(Duration::from_secs(180), ended(op1)).await;

    // GitLab's token, and Bitbucket's signature, each start a look that deploys the new commit.
    let c2 = commit(repo.path(), "index.html", "v2\n");
    let gitlab = format!(r#"{{"ref":"refs/heads/main","project":{{"git_http_url":"{url}"}}}}"#);
    let gl = vec![("x-gitlab-event", "Push Hook".to_string()), ("x-gitlab-token", "wrong".to_string())];
    assert_eq!(post(gl, gitlab.clone()).await.0, 401);
    let gl = vec![("x-gitlab-event", "Push Hook".to_string()), ("x-gitlab-token", "s3cret".to_string())];
    assert_eq!(post(gl, gitlab).await.0, 202);
    t.events.until(Duration::from_secs(180), ended(operation_id(&service, &c2))).await;
    let c3 = commit(repo.path(), "index.html", "v3\n");
    let bitbucket = format!(
        r#"{{"repository":{{"links":{{"html":{{"href":"{url}"}}}}}},"push":{{"changes":[{{"new":{{"type":"branch","name":"main"}}}}]}}}}"#
    );
    let bb = vec![("x-event-key", "repo:push".to_string()), ("x-hub-signature", sign(&bitbucket))];
    assert_eq!(post(bb, bitbucket).await.0, 202);
    t.events.until(Duration::from_secs(180), ended(operation_id(&service, &c3))).await;

    let said = http.get(format!("http://{metrics}/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "apprunner_watch_webhooks_total{provider=\"github\",outcome=\"refused\"} 2",
        "apprunner_watch_webhooks_total{provider=\"github\",outcome=\"too-large\"} 1",
        "apprunner_watch_webhooks_total{provider=\"github\",outcome=\"accepted\"} 1",
        "apprunner_watch_webhooks_total{provider=\"gitlab\",outcome=\"refused\"} 1",
        "apprunner_watch_webhooks_total{provider=\"bitbucket\",outcome=\"accepted\"} 1",
        "apprunner_watch_deployments_total{trigger=\"SERVICE_CREATE\"} 1",
        "apprunner_watch_deployments_total{trigger=\"SOURCE_CODE_CHANGE\"} 2",
        "apprunner_watch_looks_total{host=\"file\"} 3",
    ] {
        assert!(said.lines().any(|l| l == line), "no line {line:?} in:\n{said}");
    }
    assert_eq!(http.get(format!("http://{metrics}/webhook")).send().await.unwrap().status().as_u16(), 404);
}

/// A service whose branch the repository does not have is its own problem: the watcher says so
/// at each look, and its host is not backed off for the other services on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_branch_is_the_service_s_problem_not_its_host_s() {
    let mut t = QueueTest::new().await;
    let _worker = Worker::start(&t.prefix, "w", &[]);
    let repo = committed(&[("apprunner.yaml", YAML), ("index.html", "v1\n")]);
    let (good, bad) = (format!("good-{}", &t.prefix[5..]), format!("bad-{}", &t.prefix[5..]));
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.yaml");
    let url = format!("file://{}", repo.path().display());
    let file = format!(
        "services:\n  - name: {bad}\n    repository: {url}\n    branch: nope\n    image: 127.0.0.1:5000/apprunner-tests/{bad}\n  - name: {good}\n    repository: {url}\n    image: 127.0.0.1:5000/apprunner-tests/{good}:live\n"
    );
    std::fs::write(&services, file).unwrap();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let args = ["--poll-interval", "1", "--metrics-addr", &metrics];
    let _watch = Watch::with(&t.prefix, "missing", &services, &dir.path().join("state"), &args);
    let op = operation_id(&good, &head_of(repo.path()));
    t.events.until(Duration::from_secs(180), move |seen| events_of(seen, &op).any(|e| e.status.is_terminal())).await;
    wait_for_log(&t.prefix, "missing", &format!("service {bad}: {url} has no branch nope")).await;
    let said = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    assert!(said.lines().any(|l| l == "apprunner_watch_look_failures_total{host=\"file\"} 0"), "{said}");
}

/// Waits until the watcher `id` has logged `needle` (a minute at most).
async fn wait_for_log(prefix: &str, id: &str, needle: &str) {
    let began = Instant::now();
    while !Watch::log(prefix, id).contains(needle) {
        assert!(began.elapsed() < Duration::from_secs(60), "{id} did not log {needle:?}:\n{}", Watch::log(prefix, id));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_start_with_a_bad_services_file_fails_with_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services.yaml");
    std::fs::write(&services, "services:\n  - name: ab\n    repository: ftp://x\n  - image: 127.0.0.1:5000/a/b\n")
        .unwrap();
    let out = Command::new(BIN).args(["watch", "--services"]).arg(&services).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    let shown = services.display();
    for line in [
        "error: 5 problems, one per line:".to_string(),
        format!("{shown}:2:11: services[0].name: `ab` is not a service name"),
        format!("{shown}:3:17: services[0].repository: `ftp://x` is not a repository URL"),
        format!("{shown}:2:5: services[0].image is missing"),
        format!("{shown}:4:5: services[1].name is missing"),
        format!("{shown}:4:5: services[1].repository is missing"),
    ] {
        assert!(said.lines().any(|l| l.starts_with(&line)), "no line starts {line:?}:\n{said}");
    }
}
