//! End-to-end builds on Docker Engine's `BuildKit` and the local registry (docker/stack), run and
//! checked the way a user would: over HTTP, and by what is and is not in the image.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn guide_python_app_from_api_values_serves_hello() {
    let api = json!({"Runtime": "PYTHON_3", "BuildCommand": "pip install -r requirements.txt", "StartCommand": "python server.py", "Port": "8080"});
    let built = build(&guide_app(), "/", Some(api)).await;
    let image = built.image();
    assert!(built.has_line("[AppRunner] Runtime python3 3.8.20 (original build)"));
    // pip's output reaches the log as [Build] lines (installing, or finding what the dependency
    // warm-up installed), unless an earlier run left the step cached.
    assert!(
        built.has_line("[Build] Successfully installed")
            || built.has_line("[Build] Requirement already satisfied: pyramid==2.0")
            || built.has_line("build command 1/1: pip install -r requirements.txt cached."),
        "{:#?}",
        built.log
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
        let at_tag = registry.manifest_of(&target).await.unwrap();
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
    let dir = committed(&[
        ("server.py", "print('cache')\n"),
        (
            "apprunner.yaml",
            &PY_CFG.replace("pip install -r requirements.txt", "echo building $(date +%s%N) > /app/stamp"),
        ),
    ]);
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
async fn git_branch_sources_build_at_that_branch() {
    let dir = committed(&[
        ("server.py", "print('main')\n"),
        (
            "apprunner.yaml",
            &PY_CFG.replace("pip install -r requirements.txt", "git --version >/dev/null; cat server.py > /app/which"),
        ),
    ]);
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.path().join("server.py"), "print('feature')\n").unwrap();
    git(dir.path(), &["commit", "-q", "-am", "feature"]);
    let url = format!("file://{}", dir.path().display());
    let built = build_with(&settings(), request(&url, "/", None, Some("main"))).await;
    assert_eq!(in_image(built.image(), "cat /app/which"), "print('main')");
    assert!(built.has_line("[Repo Type: GIT]") && built.has_line("(branch main)"));
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
