//! Helpers for the end-to-end tests: a real Docker Engine `BuildKit` and a real registry, as
//! docker/stack starts them. Nothing here is a stand-in for a service.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;
pub mod faults;
pub mod git_http;
pub mod published;
pub mod queue;

use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::core::request::{self, BuildRequest, ConfigInput, Revision};
use apprunner_build::core::result::BuildResult;
use apprunner_build::edge::source;
use apprunner_build::error::BuildError;
use apprunner_build::log::{DeploymentLog, MemorySink};
use apprunner_build::pipeline::{self, Settings};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

pub const DOCKER: &str = "/usr/bin/docker";

/// A Python app on python3: `pip install -r requirements.txt`, then `python server.py`.
pub const PY_CFG: &str =
    "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - pip install -r requirements.txt\nrun:\n  command: python server.py\n";

/// The local stack's settings (`docker/stack`), with a shorter time limit. The runtime images a
/// test needs are made the first time one needs them, as for any build on the local stack.
pub fn settings() -> Settings {
    Settings { timeout: Duration::from_secs(900), ..Settings::default() }
}

/// A directory with these files (mode 0755 for names ending in .sh).
pub fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
        if Path::new(name).extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    dir
}

/// `files` committed in a new git repository, on branch `main`.
pub fn committed(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = app(files);
    git(dir.path(), &["init", "-q", "-b", "main"]);
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "the app"]);
    dir
}

pub fn guide_app() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/python-guide")
}

pub struct Built {
    pub result: Result<BuildResult, BuildError>,
    pub log: Vec<String>,
}

impl Built {
    pub fn image(&self) -> &str {
        match &self.result {
            Ok(o) => &o.image,
            Err(e) => panic!("build failed: {e}\n{}", self.log.join("\n")),
        }
    }
    pub fn error(&self) -> &BuildError {
        match &self.result {
            Ok(o) => panic!("build succeeded unexpectedly: {}", o.image),
            Err(e) => e,
        }
    }
    pub fn has_line(&self, needle: &str) -> bool {
        self.log.iter().any(|l| l.contains(needle))
    }
}

pub fn request(
    source: &str,
    source_dir: &str,
    api: Option<serde_json::Value>,
    reference: Option<&str>,
) -> BuildRequest {
    let location = source::locate(source);
    let revision = Revision::for_source(reference, &location);
    let operation_id = request::new_operation_id();
    let target =
        ImageRef::parse(&format!("{}:{operation_id}", request::default_repository("127.0.0.1:5000", "e2e"))).unwrap();
    BuildRequest {
        location,
        revision,
        source_dir: source_dir.into(),
        config: api.map_or(ConfigInput::Repository, ConfigInput::Api),
        target,
        operation_id,
        trigger: "SERVICE_CREATE".into(),
        current_image: None,
        prior: None,
    }
}

/// A deployment of branch `main` of `url` as the worker makes one: a tag of its own in
/// `repository`, and the record's image and build when the service has a `current` one.
pub fn deployment(url: &str, repository: &str, current: Option<&Built>) -> BuildRequest {
    let mut req = request(url, "/", None, Some("main"));
    req.target = ImageRef::parse(&format!("{repository}:{}", req.operation_id)).unwrap();
    if let Some(built) = current {
        req.current_image = Some(ImageRef::parse(built.image()).unwrap());
        req.prior.clone_from(&built.result.as_ref().unwrap().prior);
    }
    req
}

pub async fn build_with(settings: &Settings, req: BuildRequest) -> Built {
    let sink = MemorySink::default();
    let log = DeploymentLog::new(&req.operation_id, vec![Arc::new(sink.clone())]);
    let result = pipeline::run(settings, &req, &log).await;
    let log = sink.rendered();
    for l in &log {
        eprintln!("{l}");
    }
    Built { result, log }
}

pub async fn build(source: &Path, source_dir: &str, api: Option<serde_json::Value>) -> Built {
    build_with(&settings(), request(source.to_str().unwrap(), source_dir, api, None)).await
}

fn docker(args: &[&str]) -> String {
    let out = Command::new(DOCKER).args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a shell command in the image (as its entrypoint would not), returning stdout.
pub fn in_image(image: &str, script: &str) -> String {
    // Detached, its log read once it has exited: the attached output of a container that exits
    // at once is sometimes lost (moby/moby#45689 and its kin; seen here as an empty answer).
    let id = docker(&["run", "-d", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", script]);
    let status = docker(&["wait", &id]);
    let out = docker(&["logs", &id]);
    docker(&["rm", "-f", &id]);
    assert_eq!(status, "0", "`{script}` in {image} exited with {status}: {out}");
    out
}

/// A container of the image, started with its own command; removed when dropped.
pub struct Running {
    pub id: String,
    pub port: u16,
}

impl Running {
    pub fn start(image: &str, container_port: u16, extra: &[&str]) -> Self {
        let mut args = vec!["run", "-d", "-p", "127.0.0.1::0"];
        let publish = format!("127.0.0.1::{container_port}");
        args[3] = &publish;
        args.extend_from_slice(extra);
        args.push(image);
        let id = docker(&args);
        let mapping = docker(&["port", &id, &container_port.to_string()]);
        let port = mapping.lines().next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
        Self { id, port }
    }

    /// GET / until it answers (the app needs a moment to start), or panic with its logs. A
    /// gateway's 502, 503 or 504 is its backend still starting (Apache before php-fpm): asked
    /// again, and returned only if it is the last answer.
    pub async fn get(&self, path: &str) -> String {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut last = None;
        for _ in 0..60 {
            if let Ok(r) = reqwest::get(&url).await {
                let starting = matches!(r.status().as_u16(), 502..=504);
                if let Ok(body) = r.text().await {
                    if !starting {
                        return body;
                    }
                    last = Some(body);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Some(body) = last {
            return body;
        }
        let logs = Command::new(DOCKER).args(["logs", &self.id]).output().unwrap();
        panic!(
            "{url} never answered; container log:\n{}{}",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new(DOCKER).args(["rm", "-f", &self.id]).output();
    }
}

pub use git_http::git;

/// A new ECDSA P-256 key pair made with openssl, as an operator makes one: the private key
/// (PEM PKCS#8) and the public key, in a directory that goes with the value.
pub struct KeyPair {
    pub dir: tempfile::TempDir,
    pub private: PathBuf,
    pub public: PathBuf,
}

pub fn key_pair() -> KeyPair {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = (dir.path().join("signing.pem"), dir.path().join("signing.pub"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", private.to_str().unwrap()]);
    run(&["pkey", "-in", private.to_str().unwrap(), "-pubout", "-out", public.to_str().unwrap()]);
    KeyPair { dir, private, public }
}

/// What Debian 13's `cosign verify` says of `image` with the public key `public`: Ok, or its
/// error output.
pub fn cosign_verify(image: &str, public: &Path) -> Result<(), String> {
    let out = Command::new("cosign")
        .args([
            "verify",
            "--key",
            public.to_str().unwrap(),
            "--insecure-ignore-tlog=true",
            "--allow-http-registry",
            image,
        ])
        .output()
        .expect("cosign is installed by docker/stack");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// `cosign verify-attestation --type TYPE` of `image` with the public key: the statement of the
/// first attestation that verified, or cosign's error.
pub fn cosign_verify_attestation(image: &str, public: &Path, kind: &str) -> Result<serde_json::Value, String> {
    let out = Command::new("cosign")
        .args(["verify-attestation", "--key", public.to_str().unwrap(), "--type", kind])
        .args(["--insecure-ignore-tlog=true", "--allow-http-registry", image])
        .output()
        .expect("cosign is installed by docker/stack");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let first = String::from_utf8(out.stdout).unwrap().lines().next().unwrap().to_string();
    let envelope: serde_json::Value = serde_json::from_str(&first).unwrap();
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.decode(envelope["payload"].as_str().unwrap()).unwrap();
    Ok(serde_json::from_slice(&payload).unwrap())
}

/// The SPDX document of `image` as `docker buildx imagetools inspect` reads it (Docker's own
/// reader of SBOM attestations), and the purls it lists.
pub fn sbom_of(image: &str) -> (serde_json::Value, Vec<String>) {
    let out = Command::new(DOCKER)
        .args(["buildx", "imagetools", "inspect", image, "--format", "{{json .SBOM}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sbom: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let spdx = sbom["SPDX"].clone();
    let purls = spdx["packages"]
        .as_array()
        .map(|ps| {
            ps.iter().filter_map(|p| p["externalRefs"][0]["referenceLocator"].as_str().map(str::to_string)).collect()
        })
        .unwrap_or_default();
    (spdx, purls)
}
