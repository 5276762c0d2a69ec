//! Every runtime builds a real sample app (tests/apps/<runtime>) on the real pipeline, and the
//! image answers HTTP on its configured port; each platform's own rules hold.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps").join(name)
}

/// Builds a sample, runs its image and returns what GET / answers.
async fn serve(name: &str, port: u16) -> (Built, String) {
    let built = build(&sample(name), "/", None).await;
    let app = Running::start(built.image(), port, &[]);
    let body = app.get("/").await;
    (built, body)
}

#[tokio::test]
async fn python311_with_pre_run() {
    let (built, body) = serve("python311", 8000).await;
    assert_eq!(body, "Hello, python311!\n");
    assert!(built.has_line("Runtime python311 3.11.14 (revised build)"));
}

#[tokio::test]
async fn nodejs12() {
    let (_, body) = serve("nodejs12", 3000).await;
    assert_eq!(body, "Hello from Node.js v12.22.12; is-number(42) is true\n");
}

#[tokio::test]
async fn nodejs14() {
    let (_, body) = serve("nodejs14", 3000).await;
    assert_eq!(body, "Hello from Node.js v14.21.3; is-number(42) is true\n");
}

#[tokio::test]
async fn nodejs16_runs_exactly_the_resolved_version() {
    let (built, body) = serve("nodejs16", 3000).await;
    assert_eq!(body, "Hello from Node.js v16.20.2; is-number(42) is true\n");
    assert_eq!(in_image(built.image(), "node --version"), "v16.20.2");
}

#[tokio::test]
async fn nodejs18() {
    let (_, body) = serve("nodejs18", 3000).await;
    assert_eq!(body, "Hello from Node.js v18.20.8; is-number(42) is true\n");
}

#[tokio::test]
async fn nodejs20() {
    let (built, body) = serve("nodejs20", 3000).await;
    assert!(built.has_line("Warning: nodejs20 is an extension runtime: App Runner has no such managed runtime"));
    let version = built.result.as_ref().unwrap().runtime_version.clone();
    assert_eq!(body, format!("Hello from Node.js v{version}; is-number(42) is true\n"));
    assert!(version.starts_with("20."));
}

#[tokio::test]
async fn nodejs22() {
    let (built, body) = serve("nodejs22", 3000).await;
    let version = built.result.as_ref().unwrap().runtime_version.clone();
    assert_eq!(body, format!("Hello from Node.js v{version}; is-number(42) is true\n"));
    assert!(version.starts_with("22."));
}

#[tokio::test]
async fn corretto8() {
    let (built, body) = serve("corretto8", 8080).await;
    assert!(body.starts_with("Hello from Java 17"), "{body}");
    assert!(built.has_line("Runtime corretto8 8.402.08.1 (original build)"));
}

#[tokio::test]
async fn corretto11() {
    let (built, body) = serve("corretto11", 8080).await;
    assert!(body.starts_with("Hello from Java 17"), "{body}");
    assert!(built.has_line("Runtime corretto11 11.0.22.7.1 (original build)"));
}

#[tokio::test]
async fn php81_apache_with_supervisord() {
    let (_, body) = serve("php81-apache", 8080).await;
    assert!(body.starts_with("Hello from PHP 8.2") && body.contains("Apache"), "{body}");
}

#[tokio::test]
async fn php81_nginx_with_a_start_script() {
    let (_, body) = serve("php81-nginx", 8080).await;
    assert!(body.starts_with("Hello from PHP 8.2") && body.contains("nginx"), "{body}");
}

#[tokio::test]
async fn ruby31() {
    let (_, body) = serve("ruby31", 4567).await;
    assert_eq!(body, "Hello from Ruby 3.1.2\n");
}

#[tokio::test]
async fn go1() {
    let (_, body) = serve("go1", 3000).await;
    assert!(body.starts_with("Hello from Go go1.19"), "{body}");
}

#[tokio::test]
async fn php_source_directory_needs_8_1_22() {
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc");
    copy_dir(&sample("php81-nginx"), &svc);
    let yaml = std::fs::read_to_string(svc.join("apprunner.yaml")).unwrap();
    std::fs::write(svc.join("apprunner.yaml"), yaml.replace("runtime-version: 8.1", "runtime-version: 8.1.21"))
        .unwrap();
    let built = build(dir.path(), "/svc", None).await;
    let e = built.error();
    assert!(
        e.message.contains("php81 8.1.21 cannot build from source directory /svc")
            && e.message.contains("8.1.22 or later"),
        "{e}"
    );
    assert!(!built.has_line("Starting source code build"));

    std::fs::write(svc.join("apprunner.yaml"), yaml).unwrap();
    let built = build(dir.path(), "/svc", None).await;
    built.image();
    assert!(built.has_line("Runtime php81 8.1.33"));
}

#[tokio::test]
async fn node_engines_conflict_fails_before_any_step() {
    let dir = app(&[
        ("package.json", r#"{"name":"x","engines":{"node":"12.21.0"}}"#),
        ("apprunner.yaml", "version: 1.0\nruntime: nodejs14\nbuild:\n  commands:\n    build:\n      - npm install\nrun:\n  command: node app.js\n"),
    ]);
    let built = build(dir.path(), "/", None).await;
    let e = built.error();
    assert!(e.message.contains("engines.node `12.21.0`") && e.message.contains("nodejs14 14.21.3"), "{e}");
    assert!(!built.has_line("Starting source code build"));
}

#[tokio::test]
async fn php_start_script_must_be_executable() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&sample("php81-nginx"), dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path().join("startup.sh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let built = build(dir.path(), "/", None).await;
    assert!(built.error().message.contains("./startup.sh, which is not executable"), "{}", built.error());
}

#[tokio::test]
async fn dotnet6_without_its_image_says_which_is_missing() {
    let dir = app(&[("apprunner.yaml", "version: 1.0\nruntime: dotnet6\nbuild:\n  commands:\n    build:\n      - dotnet publish -c Release -o out\nrun:\n  command: dotnet out/HelloWorldDotNetApp.dll\n")]);
    let built = build(dir.path(), "/", None).await;
    let e = built.error();
    assert_eq!(e.class, apprunner_build::error::ErrorClass::User);
    assert!(e.message.contains("the build image 127.0.0.1:5000/apprunner-runtimes/dotnet6:6.0.36-build is missing from registry 127.0.0.1:5000"), "{e}");
    assert!(e.message.contains("push that runtime's image under this name"), "{e}");
}

#[tokio::test]
async fn python311_installing_outside_app_without_pre_run_is_warned_about() {
    let dir = app(&[
        ("server.py", "print('x')\n"),
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - pip3 install six\nrun:\n  command: python3 server.py\n"),
    ]);
    let built = build(dir.path(), "/", None).await;
    built.image();
    assert!(built.has_line("[AppRunner] Warning: python311 uses the revised build: only /app is copied into the run image, so what `pip3 install six` installs outside /app will be missing from the image"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// docs/configuration.md B7: a missing runtime image is the environment's, not the configuration's:
/// `plan` prints the plan with a warning and exits 0; a bad configuration exits 2.
#[test]
fn plan_without_the_runtime_image_prints_the_plan_with_a_warning() {
    let dir = app(&[(
        "apprunner.yaml",
        "version: 1.0\nruntime: dotnet6\nbuild:\n  commands:\n    build:\n      - dotnet publish -c Release -o out\nrun:\n  command: dotnet out/App.dll\n",
    )]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apprunner-build"))
        .args(["plan", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["runtime"], "dotnet6");
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("dotnet6:6.0.36-build is missing from registry 127.0.0.1:5000")
            && warnings.contains("a build fails until it is there"),
        "{warnings}"
    );
    std::fs::write(dir.path().join("apprunner.yaml"), "version: 1.0\nruntime: dotnet6\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_apprunner-build"))
        .args(["plan", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
