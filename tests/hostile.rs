//! Builds against hostile sources and jobs, and at their limits, on the real `BuildKit` and
//! registry: what a build may not reach, read, show or overwrite, and when it must stop.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;

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

/// A private repository over smart HTTP with basic auth, its token in the job's URL: the build
/// authenticates, and the token shows in no log line, label or error.
#[tokio::test]
async fn a_token_in_a_git_url_never_shows() {
    use std::io::BufRead;
    let dir = committed(&[
        ("server.py", "print('private')\n"),
        ("apprunner.yaml", &PY_CFG.replace("pip install -r requirements.txt", "echo private build")),
    ]);
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
    let before = registry.manifest_of(&runtime).await.unwrap().unwrap();
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
    let after = registry.manifest_of(&runtime).await.unwrap().unwrap();
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
