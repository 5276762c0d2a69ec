//! End-to-end builds on Docker Engine's `BuildKit` and the local registry (docker/stack), run and
//! checked the way a user would: over HTTP, and by what is and is not in the image.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::build::Settings;
use common::*;
use serde_json::json;

const PY_CFG: &str =
    "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - pip install -r requirements.txt\nrun:\n  command: python server.py\n";

#[tokio::test]
async fn guide_python_app_from_api_values_serves_hello() {
    let api = json!({"Runtime": "PYTHON_3", "BuildCommand": "pip install -r requirements.txt", "StartCommand": "python server.py", "Port": "8080"});
    let built = build(&guide_app(), "/", Some(api)).await;
    let image = built.image();
    assert!(built.has_line("[AppRunner] Runtime python3 3.8.20 (original build)"));
    // pip's output reaches the log as [Build] lines, unless an earlier run left the step cached.
    assert!(
        built.has_line("[Build] Successfully installed")
            || built.has_line("build command 1/1: pip install -r requirements.txt cached.")
    );
    let app = Running::start(image, 8080, &[]);
    assert_eq!(app.get("/").await, "Hello, world!\n");
    // The CA bundle build steps trusted is not part of the image.
    assert_eq!(in_image(image, "cat /run/apprunner-build/ca-certificates.crt 2>/dev/null | wc -c"), "0");

    let api = json!({"Runtime": "PYTHON_3", "BuildCommand": "pip install -r requirements.txt", "StartCommand": "python server.py", "Port": "8080",
                     "RuntimeEnvironmentVariables": {"NAME": "Jane"}});
    let built = build(&guide_app(), "/", Some(api)).await;
    let app = Running::start(built.image(), 8080, &[]);
    assert_eq!(app.get("/").await, "Hello, Jane!\n");
}

#[tokio::test]
async fn revised_build_keeps_pre_run_and_drops_build_and_post_build_effects() {
    let dir = app(&[
        ("server.py", "import os, http.server\nhttp.server.HTTPServer(('', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n"),
        (
            "apprunner.yaml",
            "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built > /opt/from-build\n      - echo app > /app/from-build\n    post-build:\n      - echo post > /app/from-post-build\n      - echo post > /opt/from-post-build\n  env:\n    - name: BUILD_ONLY\n      value: b\nrun:\n  runtime-version: 3.11\n  pre-run:\n    - echo \"build=$BUILD_ONLY run=$RUN_ONLY\" > /opt/from-pre-run\n  command: python3 server.py\n  network:\n    port: 8000\n    env: APP_PORT\n  env:\n    - name: RUN_ONLY\n      value: r\n",
        ),
    ]);
    let built = build(dir.path(), "/", None).await;
    let image = built.image();
    let seen = in_image(image, "for f in /opt/from-build /app/from-build /opt/from-pre-run /app/from-post-build /opt/from-post-build; do test -e $f && echo \"$f: $(cat $f)\"; done; echo \"env PORT=$PORT APP_PORT=$APP_PORT RUN_ONLY=$RUN_ONLY BUILD_ONLY=$BUILD_ONLY\"");
    assert_eq!(
        seen,
        "/app/from-build: app\n/opt/from-pre-run: build=b run=\nenv PORT=8000 APP_PORT=8000 RUN_ONLY=r BUILD_ONLY="
    );
    assert!(built.has_line("Stage post-build started"));
    // The build stage is shared by the image's and the post-build solve: each step shows once.
    for step in ["[build] copy source directory / to /app", "[build] build command 1/2: echo built > /opt/from-build"] {
        let ends = built
            .log
            .iter()
            .filter(|l| {
                l.starts_with(&format!("[AppRunner] {step}"))
                    && (l.contains(" finished in ") || l.ends_with(" cached."))
            })
            .count();
        assert_eq!(ends, 1, "{step}: {:#?}", built.log);
    }
    assert_eq!(built.log.iter().filter(|l| l.starts_with("[AppRunner] Stage build started")).count(), 1);
    let server = Running::start(image, 8000, &[]);
    assert!(server.get("/").await.contains("from-build"), "the app serves /app");

    // A failing post-build fails the build, pushes nothing to the target tag, and fails the same
    // way when the same inputs are built to that tag again (nothing there to reuse).
    std::fs::write(dir.path().join("apprunner.yaml"), "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo ok\n    post-build:\n      - echo tests failed >&2; exit 4\nrun:\n  command: python3 server.py\n").unwrap();
    let target = apprunner_build::core::image_ref::ImageRef::parse(&format!(
        "127.0.0.1:5000/apprunner-tests/checked-{}:1",
        uuid::Uuid::new_v4().simple()
    ))
    .unwrap();
    for _ in 0..2 {
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = target.clone();
        let built = build_with(&settings(), req).await;
        let e = built.error();
        assert!(
            e.message.contains("Failed to execute 'post-build' command") && e.message.contains("exit code 4"),
            "{e}"
        );
        assert!(built.has_line("[Build] tests failed") || built.has_line("post-build command 1/1"));
        assert!(!built.has_line("Image exported and pushed"), "{:#?}", built.log);
        let registry = apprunner_build::edge::registry::Registry::new(Default::default(), vec![]);
        let at_tag = registry.manifest(&target.registry, &target.repository, &target.reference()).await.unwrap();
        assert!(at_tag.is_none(), "nothing pushed to {target}");
    }
}

#[tokio::test]
async fn original_build_runs_build_commands_twice() {
    let dir = app(&[
        ("server.py", "print('x')\n"),
        (
            "apprunner.yaml",
            "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    pre-build:\n      - echo pre > /opt/from-pre-build\n    build:\n      - echo run >> /app/runs.txt\n      - echo built > /opt/from-build\nrun:\n  command: python server.py\n",
        ),
    ]);
    let built = build(dir.path(), "/", None).await;
    let seen = in_image(
        built.image(),
        "cat /app/runs.txt; test -e /opt/from-build && echo outside-app-kept; test -e /opt/from-pre-build || echo pre-build-outside-app-gone",
    );
    assert_eq!(seen, "run\nrun\noutside-app-kept\npre-build-outside-app-gone");
}

#[tokio::test]
async fn nodejs18_app_serves_http() {
    let dir = app(&[
        ("package.json", r#"{"name":"hello","version":"1.0.0","engines":{"node":">=18"},"scripts":{"start":"node app.js"},"dependencies":{"is-number":"7.0.0"}}"#),
        ("app.js", "const isNumber = require('is-number');\nrequire('http').createServer((q, s) => s.end(`node ${process.version} ${isNumber(5)}`)).listen(process.env.PORT);\n"),
        ("apprunner.yaml", "version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - npm install --omit=dev\nrun:\n  runtime-version: 18.20.7\n  command: npm start\n  network:\n    port: 3000\n"),
    ]);
    let built = build(dir.path(), "/", None).await;
    let app = Running::start(built.image(), 3000, &[]);
    assert_eq!(app.get("/").await, "node v18.20.7 true");
}

#[tokio::test]
async fn monorepo_source_directory_builds_only_that_directory() {
    let dir = app(&[
        ("README.md", "top\n"),
        ("services/web/index.html", "web\n"),
        ("services/api/server.py", "print('api')\n"),
        (
            "services/api/apprunner.yaml",
            "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - ls -A /app > /app/listing.txt\nrun:\n  command: python server.py\n",
        ),
    ]);
    let built = build(dir.path(), "/services/api", None).await;
    // The build runs twice (original build): the second listing sees the first one.
    assert_eq!(in_image(built.image(), "cat /app/listing.txt"), "apprunner.yaml\nlisting.txt\nserver.py");
    assert!(built.has_line("[SourceDirectory: /services/api]"));
}

#[tokio::test]
async fn failing_build_command_names_step_and_exit_code() {
    let dir = app(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo compiling\n      - \"echo 'error: missing module' >&2; exit 3\"\nrun:\n  command: python server.py\n",
    )]);
    let built = build(dir.path(), "/", None).await;
    let e = built.error();
    assert_eq!(e.class, apprunner_build::error::ErrorClass::User);
    assert!(built.has_line("[Build] error: missing module"), "stderr reaches the log");
    assert!(built.has_line("[AppRunner] Failed to build your application source code. Reason: Failed to execute 'build' command: [build] build command 2/2: echo 'error: missing module' >&2; exit 3 failed with exit code 3"), "{e}");
    // App Runner's phrasing, line by line: reading the file, each command with its outcome,
    // and the failure line with the deployment ID and reason.
    assert!(built.has_line("[AppRunner] Reading apprunner.yaml config file."));
    assert!(built.has_line("[AppRunner] [build] build command 1/2: echo compiling finished in "));
    assert!(built.has_line("[AppRunner] [build] build command 2/2: echo 'error: missing module' >&2; exit 3 started."));
    let last = built.log.last().unwrap();
    assert!(
        last.starts_with("[AppRunner] Deployment with ID : ")
            && last.contains(" failed. Failure reason : Failed to execute 'build' command"),
        "{last}"
    );
}

#[tokio::test]
async fn bad_configuration_is_rejected_before_buildkit() {
    // No BuildKit at this address: a rejection that comes first never notices.
    let mut settings = settings();
    settings.buildkit = "unix:///nonexistent/buildkitd.sock".parse().unwrap();
    let dir = app(&[("apprunner.yaml", &PY_CFG.replace("  command:", "  pre-run:\n    - echo x\n  command:"))]);
    let built = build_with(&settings, request(dir.path().to_str().unwrap(), "/", None, None)).await;
    assert!(
        built.error().message.contains("run.pre-run: pre-run is only for runtimes with the revised build"),
        "{}",
        built.error()
    );
    assert!(!built.has_line("Starting source code build"));

    let dir = app(&[("apprunner.yml", PY_CFG)]);
    let built = build_with(&settings, request(dir.path().to_str().unwrap(), "/", None, None)).await;
    assert!(
        built.error().message.contains("apprunner.yaml not found: looked for /apprunner.yaml")
            && built.error().message.contains("found apprunner.yml"),
        "{}",
        built.error()
    );

    let dir = app(&[
        ("package.json", r#"{"engines":{"node":"12.21.0"}}"#),
        ("apprunner.yaml", "version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - npm install\nrun:\n  command: node app.js\n"),
    ]);
    let built = build_with(&settings, request(dir.path().to_str().unwrap(), "/", None, None)).await;
    assert!(
        built.error().message.contains("engines.node `12.21.0`") && built.error().message.contains("nodejs18 18.20.8"),
        "{}",
        built.error()
    );
}

#[tokio::test]
async fn same_commit_twice_uploads_nothing_and_hits_the_cache() {
    let dir = app(&[
        ("server.py", "print('cache')\n"),
        (
            "apprunner.yaml",
            &PY_CFG.replace("pip install -r requirements.txt", "echo building $(date +%s%N) > /app/stamp"),
        ),
    ]);
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "first"]);
    let commit = git(dir.path(), &["rev-parse", "HEAD"]);
    let url = format!("file://{}", dir.path().display());
    let first = build_with(&settings(), request(&url, "/", None, Some(&commit))).await;
    first.image();
    assert!(first.has_line(&format!("Source at commit {commit}")));
    let second = build_with(&settings(), request(&url, "/", None, Some(&commit))).await;
    let outcome = second.result.as_ref().unwrap();
    assert!(!outcome.source_uploaded);
    assert!(second.has_line("unchanged since an earlier build"));
    assert!(outcome.stages.iter().all(|s| s.cached), "{:?}", outcome.stages);
    assert!(second.has_line("[build] build command 1/1: echo building $(date +%s%N) > /app/stamp cached."));
    assert!(!second.log.iter().any(|l| l.starts_with("[Build]")), "a cached step prints nothing");
    assert_eq!(in_image(first.image(), "cat /app/stamp"), in_image(outcome.image.as_str(), "cat /app/stamp"));
}

#[tokio::test]
async fn build_steps_cannot_reach_the_hosts_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!("if curl -s --max-time 3 http://127.0.0.1:{port}/ >/dev/null; then echo REACHED-HOST; else echo HOST-UNREACHABLE; fi; python3 -c \"import urllib.request; print('internet', urllib.request.urlopen('https://pypi.org/simple/pip/').status)\"");
    let dir = app(&[("apprunner.yaml", &format!("version: 1.0\nruntime: python3\nbuild:\n  commands:\n    pre-build:\n      - \"{}\"\n    build:\n      - echo ok\nrun:\n  command: python -m http.server\n", probe.replace('"', "\\\"")))]);
    let built = build(dir.path(), "/", None).await;
    built.image();
    assert!(built.has_line("[Build] HOST-UNREACHABLE"));
    assert!(
        built.has_line("[Build] internet 200"),
        "build steps reach package registries through the trusted CA bundle"
    );
    drop(listener);
}

#[tokio::test]
async fn host_network_is_an_explicit_opt_in() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::Write;
        for mut s in listener.incoming().flatten() {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nhost");
        }
    });
    let dir = app(&[("apprunner.yaml", &format!("version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo got-$(curl -s --max-time 3 http://127.0.0.1:{port}/)\nrun:\n  command: python -m http.server\n"))]);
    let mut host = settings();
    host.network = apprunner_build::core::plan::StepNetwork::Host;
    let built = build_with(&host, request(dir.path().to_str().unwrap(), "/", None, None)).await;
    built.image();
    assert!(built.has_line("[Build] got-host"));
}

#[tokio::test]
async fn time_limit_cancels_the_build() {
    let dir = app(&[("apprunner.yaml", &PY_CFG.replace("pip install -r requirements.txt", "echo start; sleep 120"))]);
    let mut quick = settings();
    quick.timeout = std::time::Duration::from_secs(4);
    let started = std::time::Instant::now();
    let built = build_with(&quick, request(dir.path().to_str().unwrap(), "/", None, None)).await;
    assert!(built.error().message.contains("time limit of 4 seconds"), "{}", built.error());
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[tokio::test]
async fn git_branch_sources_build_at_that_branch() {
    let dir = app(&[
        ("server.py", "print('main')\n"),
        (
            "apprunner.yaml",
            &PY_CFG.replace("pip install -r requirements.txt", "git --version >/dev/null; cat server.py > /app/which"),
        ),
    ]);
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "main"]);
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.path().join("server.py"), "print('feature')\n").unwrap();
    git(dir.path(), &["commit", "-q", "-am", "feature"]);
    let url = format!("file://{}", dir.path().display());
    let built = build_with(&settings(), request(&url, "/", None, Some("main"))).await;
    assert_eq!(in_image(built.image(), "cat /app/which"), "print('main')");
    assert!(built.has_line("[Repo Type: GIT]") && built.has_line("(branch main)"));
}

/// A private repository over smart HTTP with basic auth, its token in the job's URL: the build
/// authenticates, and the token shows in no log line, label or error.
#[tokio::test]
async fn a_token_in_a_git_url_never_shows() {
    use std::io::BufRead;
    let dir = app(&[
        ("server.py", "print('private')\n"),
        ("apprunner.yaml", &PY_CFG.replace("pip install -r requirements.txt", "echo private build")),
    ]);
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "private"]);
    let root = tempfile::tempdir().unwrap();
    git(root.path(), &["clone", "-q", "--bare", dir.path().to_str().unwrap(), "repo.git"]);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/git-http/server.py");
    let mut server = std::process::Command::new("python3")
        .args([script.to_str().unwrap(), &port.to_string(), root.path().to_str().unwrap(), "ci", "s3cret-T0KEN"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufReader::new(server.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");

    let url = format!("http://ci:s3cret-T0KEN@127.0.0.1:{port}/repo.git");
    let built = build_with(&settings(), request(&url, "/", None, Some("main"))).await;
    let image = built.image().to_string();
    assert!(built.has_line("[Build] private build") || built.has_line("cached."));
    assert!(!built.log.iter().any(|l| l.contains("s3cret")), "a log line shows the token");
    let r = apprunner_build::core::image_ref::ImageRef::parse(&image).unwrap();
    let registry = apprunner_build::edge::registry::Registry::new(Default::default(), vec![]);
    let (_, labels) = apprunner_build::edge::image::existing(&registry, &r).await.unwrap().unwrap();
    assert_eq!(labels["org.opencontainers.image.source"], format!("http://127.0.0.1:{port}/repo.git"));

    let wrong = format!("http://ci:wr0ng-T0KEN@127.0.0.1:{port}/repo.git");
    let built = build_with(&settings(), request(&wrong, "/", None, Some("main"))).await;
    let e = built.error();
    assert!(!e.message.contains("wr0ng") && !built.log.iter().any(|l| l.contains("wr0ng")), "{e}");
    assert!(e.message.contains(&format!("http://127.0.0.1:{port}/repo.git")), "{e}");
    let _ = server.kill();
    let _ = server.wait();
}

/// A job cannot push into the build service's own repositories: not over a runtime image
/// every service builds on, not over another operation's "reported" marker.
#[tokio::test]
async fn the_services_own_repositories_are_never_a_target() {
    use apprunner_build::core::image_ref::ImageRef;
    let registry = apprunner_build::edge::registry::Registry::new(Default::default(), vec![]);
    let runtime = ImageRef::parse("127.0.0.1:5000/apprunner-runtimes/python3:3.8.20-run").unwrap();
    let before =
        registry.manifest(&runtime.registry, &runtime.repository, &runtime.reference()).await.unwrap().unwrap();
    for target in
        ["127.0.0.1:5000/apprunner-runtimes/python3:3.8.20-run", "127.0.0.1:5000/apprunner-build/reported:someone-else"]
    {
        let mut req = request(guide_app().to_str().unwrap(), "/", None, None);
        req.target = ImageRef::parse(target).unwrap();
        let built = build_with(&settings(), req).await;
        let e = built.error();
        assert_eq!(e.class, apprunner_build::error::ErrorClass::User);
        assert!(e.message.contains("holds the build service's own images"), "{e}");
        assert!(!built.has_line("Starting source code build"));
    }
    let after = registry.manifest(&runtime.registry, &runtime.repository, &runtime.reference()).await.unwrap().unwrap();
    assert_eq!(before.digest, after.digest);
    let mut confined = settings();
    confined.allowed_targets = vec!["127.0.0.1:5000/apprunner-tests".into()];
    let built = build_with(&confined, request(guide_app().to_str().unwrap(), "/", None, None)).await;
    assert!(built
        .error()
        .message
        .contains("outside the repositories jobs may push to: 127.0.0.1:5000/apprunner-tests"));
}

/// The time limit bounds the whole build, the fetch included: a git host that accepts and never
/// answers fails the build at the limit, and no git process is left behind.
#[tokio::test]
async fn a_git_host_that_never_answers_ends_at_the_time_limit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            keep.lock().unwrap().push(s); // accepted, never answered
        }
    });
    let mut quick = settings();
    quick.timeout = std::time::Duration::from_secs(4);
    let url = format!("http://127.0.0.1:{port}/silent.git");
    let started = std::time::Instant::now();
    let built = build_with(&quick, request(&url, "/", None, Some("main"))).await;
    assert!(built.error().message.contains("time limit of 4 seconds"), "{}", built.error());
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "{:?}", started.elapsed());
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ps =
        std::process::Command::new("pgrep").args(["-f", &format!("127.0.0.1:{port}/silent.git")]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).trim().is_empty(),
        "git processes left: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}

/// Hostile sources: an apprunner.yaml that links out of the tree is never read; the source
/// layer drops setuid bits and foreign owners.
#[tokio::test]
async fn links_out_of_the_source_are_refused_and_the_layer_is_normalised() {
    use std::os::unix::fs::PermissionsExt;
    let outside = app(&[("apprunner.yaml", PY_CFG)]);
    let dir = app(&[("server.py", "print('x')\n")]);
    std::os::unix::fs::symlink(outside.path().join("apprunner.yaml"), dir.path().join("apprunner.yaml")).unwrap();
    let built = build(dir.path(), "/", None).await;
    assert!(
        built.error().message.contains("apprunner.yaml is a link to a file outside the source directory"),
        "{}",
        built.error()
    );

    let dir = app(&[
        ("apprunner.yaml", &PY_CFG.replace("pip install -r requirements.txt", "echo modes")),
        ("tool.sh", "#!/bin/sh\necho tool\n"),
    ]);
    // chown clears setuid bits, so it comes first.
    std::os::unix::fs::chown(dir.path().join("tool.sh"), Some(4242), Some(4242)).unwrap();
    std::fs::set_permissions(dir.path().join("tool.sh"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    let built = build(dir.path(), "/", None).await;
    assert!(built.has_line("setuid and setgid bits dropped from 1 files"));
    assert_eq!(in_image(built.image(), "stat -c '%a %u:%g' /app/tool.sh"), "755 0:0");
}

/// No local image under the final name that differs from the pushed one: `docker run` of the
/// name on the build machine pulls the finished image.
#[tokio::test]
async fn no_unfinished_local_image_under_the_final_name() {
    let target = format!("127.0.0.1:5000/apprunner-tests/local-copy:{}", uuid::Uuid::new_v4().simple());
    let mut req = request(guide_app().to_str().unwrap(), "/", None, None);
    req.target = apprunner_build::core::image_ref::ImageRef::parse(&target).unwrap();
    let built = build_with(&settings(), req).await;
    built.image();
    let local = std::process::Command::new(DOCKER).args(["image", "inspect", &target]).output().unwrap();
    assert!(!local.status.success(), "the Engine keeps {target}");
    assert_eq!(in_image(&target, "cd /app && ls server.py"), "server.py");
}

/// docs/configuration.md B2: the commands of a phase share one shell, so `cd` and `export` carry to the
/// next command of the phase; the next phase starts in /app again; the log names each command.
#[tokio::test]
async fn a_cd_carries_to_the_next_command_of_its_phase() {
    let dir = app(&[
        ("client/index.html", "hi\n"),
        (
            "apprunner.yaml",
            &format!(
                "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    pre-build:\n      - cd client\n      - export WHERE=$(pwd)\n      - echo \"pre-build in $WHERE {}\" > /app/pre.txt\n    build:\n      - pwd > /app/build.txt\nrun:\n  command: python3 -m http.server 8080\n",
                uuid::Uuid::new_v4()
            ),
        ),
    ]);
    let built = build(dir.path(), "/", None).await;
    let image = built.image();
    let seen = in_image(image, "cut -d' ' -f1-3 /app/pre.txt; cat /app/build.txt");
    assert_eq!(seen, "pre-build in /app/client\n/app");
    for n in 1..=3 {
        assert!(built.has_line(&format!("[AppRunner] [build] pre-build command {n}/3: ")), "{n}: {:#?}", built.log);
    }
    assert!(built.has_line("[build] pre-build command 1/3: cd client finished in "));
}

/// The image is an OCI index holding the image for this platform and, beside it, a SLSA
/// provenance attestation (mode=max) that pins the runtime's build and run images by digest;
/// registry UIs see the annotations.
#[tokio::test]
async fn images_are_oci_indexes_with_a_provenance_attestation() {
    use apprunner_build::edge::registry::Registry;
    let built = build(&guide_app(), "/", None).await;
    let r = apprunner_build::core::image_ref::ImageRef::parse(built.image()).unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let index = registry.manifest(&r.registry, &r.repository, &r.reference()).await.unwrap().unwrap();
    assert_eq!(index.media_type, "application/vnd.oci.image.index.v1+json");
    let json = index.json().unwrap();
    assert_eq!(json["annotations"]["org.opencontainers.image.title"], "e2e", "{json:#}");
    let manifests = json["manifests"].as_array().unwrap();
    let image = manifests.iter().find(|m| m["platform"]["os"] == "linux").unwrap();
    assert_eq!(image["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    let attestation = manifests
        .iter()
        .find(|m| m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest")
        .expect("an attestation manifest beside the image");
    assert_eq!(attestation["annotations"]["vnd.docker.reference.digest"], image["digest"]);
    let digest = attestation["digest"].as_str().unwrap();
    let statements = registry.manifest(&r.registry, &r.repository, digest).await.unwrap().unwrap().json().unwrap();
    let layer = &statements["layers"][0];
    assert!(layer["annotations"]["in-toto.io/predicate-type"]
        .as_str()
        .unwrap()
        .starts_with("https://slsa.dev/provenance/"));
    let statement: serde_json::Value = serde_json::from_slice(
        &registry.blob(&r.registry, &r.repository, layer["digest"].as_str().unwrap()).await.unwrap(),
    )
    .unwrap();
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v0.2");
    let materials: Vec<&str> =
        statement["predicate"]["materials"].as_array().unwrap().iter().map(|m| m["uri"].as_str().unwrap()).collect();
    for runtime_image in [
        "apprunner-runtimes/python3@3.8.20-build?digest=sha256:",
        "apprunner-runtimes/python3@3.8.20-run?digest=sha256:",
    ] {
        assert!(materials.iter().any(|m| m.contains(runtime_image)), "{runtime_image} not in {materials:#?}");
    }
    assert!(statement["predicate"]["buildConfig"]["llbDefinition"].as_array().is_some_and(|d| !d.is_empty()));
    // What the provenance cannot record (a solve without a frontend has no parameters), the
    // image's labels say.
    let (_, labels) = apprunner_build::edge::image::existing(&registry, &r).await.unwrap().unwrap();
    for (key, value) in [
        ("dev.apprunner-build.runtime", "python3"),
        ("dev.apprunner-build.runtime-version", "3.8.20"),
        ("dev.apprunner-build.build-process", "original"),
        ("dev.apprunner-build.configuration-source", "REPOSITORY"),
    ] {
        assert_eq!(labels.get(key).map(String::as_str), Some(value), "{key}");
    }
}

/// #11: npm's download cache is a BuildKit cache mount of the service: the original build's run
/// stage finds what its build stage downloaded, a rebuild after a code change finds it too, and
/// no cache lands in the image. (pip's cache works the same way, but the proxy this machine
/// reaches `PyPI` through strips the headers pip's HTTP cache needs, so pip stores nothing here.)
#[tokio::test]
async fn package_downloads_are_cached_per_service_and_never_in_the_image() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let config = "version: 1.0\nruntime: nodejs16\nbuild:\n  commands:\n    build:\n      - echo \"npm cache files=$(find /root/.npm/_cacache -type f 2>/dev/null | wc -l)\"\n      - npm install --omit=dev\nrun:\n  command: node app.js\n";
    let package = r#"{"name":"cached","version":"1.0.0","dependencies":{"is-number":"7.0.0"}}"#;
    let service =
        apprunner_build::core::image_ref::ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/npm-{marker}:1"))
            .unwrap();
    let build_version = |version: &str| {
        let dir = app(&[
            ("apprunner.yaml", config),
            ("package.json", package),
            ("app.js", &format!("console.log('{marker} {version}')\n")),
        ]);
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = service.clone();
        async move { (build_with(&settings(), req).await, dir) }
    };
    // What each stage's first command saw: no cache file, or some.
    let seen = |b: &Built| -> Vec<bool> {
        b.log
            .iter()
            .filter(|l| l.starts_with("[Build]"))
            .filter_map(|l| l.split("npm cache files=").nth(1))
            .map(|n| n.trim().parse::<usize>().unwrap() > 0)
            .collect()
    };
    let (first, _dir) = build_version("v1").await;
    first.image();
    assert_eq!(seen(&first), [false, true], "build stage: empty; run stage: filled by it");
    let (second, _dir) = build_version("v2").await;
    assert_eq!(seen(&second), [true, true], "the rebuild finds the downloads");
    // node_modules is a layer of its own in the image: the code change left it as it was, so
    // only the layers above it are new.
    let (before, after) = (layers(first.image()).await, layers(second.image()).await);
    let run_image = layers(&format!("127.0.0.1:5000/{}", catalog_run_image("nodejs16"))).await;
    assert_eq!(before.len(), run_image.len() + 3, "node_modules, the rest of /app, the run stage's npm install");
    assert_eq!(before[..=run_image.len()], after[..=run_image.len()], "the node_modules layer is the same");
    assert_ne!(before[run_image.len() + 1], after[run_image.len() + 1], "the rest of /app changed");
    assert!(second.has_line("[run] copy /app/node_modules from the build stage cached."), "{:#?}", second.log);
    let inside = in_image(
        second.image(),
        "cat node_modules/is-number/package.json | grep -c '\"version\": \"7.0.0\"'; find /root/.npm/_cacache -type f 2>/dev/null | wc -l",
    );
    assert_eq!(inside, "1\n0");
}

/// #11: the dependency warm-up changes how long a rebuild takes, not what is built: the image's
/// files are the same with and without it (compiled bytecode aside: it embeds when it was
/// compiled); a code change leaves the warm-up cached, and the real install finds its packages.
#[tokio::test]
async fn the_warm_up_leaves_the_image_as_it_was() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let files = [
        ("apprunner.yaml", "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - pip install -r requirements.txt\nrun:\n  command: python server.py\n".to_string()),
        ("requirements.txt", "six==1.16.0\n".to_string()),
        ("server.py", format!("print('{marker}')\n")),
    ];
    let dir = app(&files.iter().map(|(n, b)| (*n, b.as_str())).collect::<Vec<_>>());
    let build_as = |warm: bool| {
        let mut settings = settings();
        settings.warm_steps = warm;
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = apprunner_build::core::image_ref::ImageRef::parse(&format!(
            "127.0.0.1:5000/apprunner-tests/warm-{warm}-{marker}:1"
        ))
        .unwrap();
        async move { build_with(&settings, req).await }
    };
    let warmed = build_as(true).await;
    // Finished, or cached from an earlier run: its cache key is the manifest's content.
    for stage in ["build", "run"] {
        let warm =
            format!("[{stage}] dependency warm-up: pip install -r requirements.txt (on requirements.txt alone) ");
        assert!(warmed.has_line(&format!("{warm}finished")) || warmed.has_line(&format!("{warm}cached")));
    }
    let plain = build_as(false).await;
    assert!(!plain.has_line("warm-up"));
    let files_of = |image: &str| {
        in_image(image, "find / -xdev -type f ! -path '/proc/*' ! -path '/sys/*' ! -name '*.pyc' ! -path '/etc/host*' ! -path '/etc/resolv.conf' -exec sha256sum {} + | sort -k2")
    };
    let (with, without) = (files_of(warmed.image()), files_of(plain.image()));
    assert!(with.contains("site-packages/six.py") || with.contains("dist-packages/six.py"), "six is installed");
    assert_eq!(with, without, "the same files with and without the warm-up");

    std::fs::write(dir.path().join("server.py"), format!("print('{marker} v2')\n")).unwrap();
    let changed = build_as(true).await;
    changed.image();
    assert!(changed
        .has_line("[build] dependency warm-up: pip install -r requirements.txt (on requirements.txt alone) cached."));
    assert!(changed.log.iter().any(|l| l.contains("Requirement already satisfied: six==1.16.0")), "{:#?}", changed.log);
}

/// #11: a warm-up that cannot work on the manifests alone (a requirements file that includes
/// another) is left out, and the build goes on as App Runner's steps say.
#[tokio::test]
async fn a_warm_up_that_fails_is_left_out() {
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - pip3 install -r requirements.txt\nrun:\n  command: python3 server.py\n"),
        ("requirements.txt", "-r base.txt\n"),
        ("base.txt", "six==1.16.0\n"),
        ("server.py", &format!("print('{marker}')\n")),
    ]);
    let built = build(dir.path(), "/", None).await;
    built.image();
    assert!(built.has_line("[build] dependency warm-up left out ("), "{:#?}", built.log);
    assert!(built.has_line("the build goes on without it."));
    assert!(built.has_line("[build] build command 1/1: pip3 install -r requirements.txt finished"));
}

/// #12: the image of a commit is the same whoever builds it and however the source is named:
/// two builds of one commit, one from a `file://` URL and one from the directory, push the same
/// image manifest; each build's index differs (its provenance, and the operation id, annotated
/// on the index, not in the image).
#[tokio::test]
async fn one_commit_gives_one_image_manifest() {
    use apprunner_build::edge::registry::Registry;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n"),
        ("marker.txt", &marker),
    ]);
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "one commit"]);
    let target =
        apprunner_build::core::image_ref::ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/same-{marker}:1"))
            .unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let mut manifests = Vec::new();
    let mut indexes = Vec::new();
    // The operation ids differ, so equal manifests also say the id is not in the image.
    let sources =
        [(format!("file://{}", dir.path().display()), Some("main")), (dir.path().display().to_string(), None)];
    for (source, reference) in sources {
        let mut req = request(&source, "/", None, reference);
        req.target = target.clone();
        // BuildKit solves both: the second would otherwise reuse the first's image.
        let built = build_with(&Settings { image_reuse: false, ..settings() }, req.clone()).await;
        let r = apprunner_build::core::image_ref::ImageRef::parse(built.image()).unwrap();
        let index =
            registry.manifest(&r.registry, &r.repository, &r.reference()).await.unwrap().unwrap().json().unwrap();
        assert_eq!(index["annotations"]["dev.apprunner-build.operation-id"], req.operation_id.as_str());
        manifests.push(index["manifests"][0]["digest"].as_str().unwrap().to_string());
        indexes.push(r.reference());
    }
    assert_eq!(manifests[0], manifests[1], "one commit, one image");
    assert_ne!(indexes[0], indexes[1], "each build has its own provenance");
}

/// #11: a build whose inputs are exactly those of the image at its target tag reuses it: the same
/// image manifest under a new index naming this deployment, and no solve. Any change of input,
/// or `image_reuse: false`, solves.
#[tokio::test]
async fn the_same_inputs_to_the_same_tag_reuse_the_image() {
    use apprunner_build::edge::registry::Registry;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = app(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - date +%s%N > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n"),
        ("marker.txt", &marker),
    ]);
    let target =
        apprunner_build::core::image_ref::ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/reuse-{marker}:1"))
            .unwrap();
    let registry = Registry::new(Default::default(), vec![]);
    let build_to = |settings: Settings| {
        let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
        req.target = target.clone();
        async move { (build_with(&settings, req.clone()).await, req.operation_id) }
    };
    let index_of = |built: &Built| {
        let r = apprunner_build::core::image_ref::ImageRef::parse(built.image()).unwrap();
        let registry = &registry;
        async move { registry.manifest(&r.registry, &r.repository, &r.reference()).await.unwrap().unwrap().json().unwrap() }
    };
    let (first, first_op) = build_to(settings()).await;
    assert!(!first.has_line("reused under a new index"));
    let (second, second_op) = build_to(settings()).await;
    assert!(
        second.has_line("holds the image of these exact inputs")
            && second.has_line(&format!("built by deployment {first_op}")),
        "{:#?}",
        second.log
    );
    assert!(!second.has_line("[build] build command 1/1"), "nothing was solved: {:#?}", second.log);
    assert!(second.has_line("Successfully built your application source code."));
    assert!(second.result.as_ref().unwrap().stages.is_empty());
    let (i1, i2) = (index_of(&first).await, index_of(&second).await);
    assert_eq!(i1["manifests"], i2["manifests"], "the same image and provenance");
    assert_eq!(i2["annotations"]["dev.apprunner-build.operation-id"], second_op.as_str());
    assert_ne!(first.image(), second.image(), "a new index for the new deployment");
    assert_eq!(in_image(first.image(), "cat /app/built.txt"), in_image(second.image(), "cat /app/built.txt"));

    // Asked not to reuse: BuildKit solves (its cache answers), and the index is BuildKit's.
    let (third, _) = build_to(Settings { image_reuse: false, ..settings() }).await;
    assert!(third.has_line("[build] build command 1/1: date +%s%N > /app/built.txt cached."), "{:#?}", third.log);
    assert!(!third.has_line("reused under a new index"));
    // Another input: the source changed, so the step runs again.
    std::fs::write(dir.path().join("marker.txt"), format!("{marker} v2")).unwrap();
    let (fourth, _) = build_to(settings()).await;
    assert!(!fourth.has_line("reused under a new index"));
    assert!(fourth.has_line("[build] build command 1/1: date +%s%N > /app/built.txt finished"), "{:#?}", fourth.log);
    assert_ne!(in_image(first.image(), "cat /app/built.txt"), in_image(fourth.image(), "cat /app/built.txt"));
}

/// The layer digests of an image (its platform's manifest, when it is an index).
async fn layers(image: &str) -> Vec<String> {
    use apprunner_build::edge::registry::Registry;
    let registry = Registry::new(Default::default(), vec![]);
    let r = apprunner_build::core::image_ref::ImageRef::parse(image).unwrap();
    let mut manifest = registry.manifest(&r.registry, &r.repository, &r.reference()).await.unwrap().unwrap();
    if manifest.is_index() {
        let digest = manifest.platform_manifest("linux", "amd64").unwrap();
        manifest = registry.manifest(&r.registry, &r.repository, &digest).await.unwrap().unwrap();
    }
    let json = manifest.json().unwrap();
    json["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

/// The run image of `runtime`'s newest version, as the catalog names it.
fn catalog_run_image(runtime: &str) -> String {
    use apprunner_build::core::catalog::RuntimeCatalog;
    let catalog = RuntimeCatalog::builtin();
    let rt = catalog.lookup(runtime).unwrap();
    let resolved = catalog.resolve_held(rt, None, None).unwrap();
    resolved.run_image
}
