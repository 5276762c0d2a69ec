//! A registry that wants credentials: Debian's docker-registry with htpasswd (basic) auth, run
//! by the test on a port of its own, as the target of a real build.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::core::image_ref::Repo;
use apprunner_build::edge::registry::{Registry, RegistryAuth};
use common::*;
use std::process::{Child, Command, Stdio};

struct AuthRegistry {
    child: Child,
    host: String,
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", "ci", "s3cret"])
            .output()
            .expect("htpasswd is installed by docker/stack");
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {0}/data\nhttp:\n  addr: {host}\nauth:\n  htpasswd:\n    realm: apprunner-build-test\n    path: {0}/htpasswd\n",
            dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", dir.path().join("config.yml").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&host).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Self { child, host, _dir: dir }
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn creds(host: &str, password: &str) -> RegistryAuth {
    RegistryAuth::for_host(host, "ci", password)
}

#[tokio::test]
async fn registry_credentials_are_asked_for_used_and_checked() {
    let reg = AuthRegistry::start().await;
    let layer = apprunner_build::edge::source::pack_file("hello", b"hi", 0o644).unwrap();
    let e = apprunner_build::edge::image::push_content(
        &Registry::new(RegistryAuth::default(), vec![]),
        &Repo::new(&reg.host, "t/content"),
        &layer,
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().contains("requires credentials; set APPRUNNER_REGISTRY_USERNAME and APPRUNNER_REGISTRY_PASSWORD"),
        "{e}"
    );
    let e = apprunner_build::edge::image::push_content(
        &Registry::new(creds(&reg.host, "wrong"), vec![]),
        &Repo::new(&reg.host, "t/content"),
        &layer,
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("refused access"), "{e}");
    let pushed = apprunner_build::edge::image::push_content(
        &Registry::new(creds(&reg.host, "s3cret"), vec![]),
        &Repo::new(&reg.host, "t/content"),
        &layer,
    )
    .await
    .unwrap();
    assert!(pushed.uploaded);
}

#[tokio::test]
async fn a_build_pushes_to_a_registry_that_wants_credentials() {
    let reg = AuthRegistry::start().await;
    let mut settings = settings();
    settings.registry_auth = creds(&reg.host, "s3cret");
    let mut req = request(guide_app().to_str().unwrap(), "/", None, None);
    req.target = ImageRef::parse(&format!("{}/apps/authed:1", reg.host)).unwrap();
    let built = build_with(&settings, req).await;
    let image = built.image().to_string();
    assert!(image.starts_with(&format!("{}/apps/authed@sha256:", reg.host)));
    let r = ImageRef::parse(&image).unwrap();
    let m = Registry::new(creds(&reg.host, "s3cret"), vec![]).manifest_of(&r).await.unwrap();
    assert!(m.is_some());
}

/// The worker's registry credentials go to its registry and nowhere else: a build whose
/// target is another registry never sends them there.
#[tokio::test]
async fn credentials_are_sent_only_to_their_own_registry() {
    use std::io::{Read, Write};
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", fake.local_addr().unwrap().port());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for mut s in fake.incoming().flatten() {
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap_or(0);
            record.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).to_string());
            let _ = s.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"fake\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let mut settings = settings();
    // Credentials for the worker's own registry (which does not ask for them).
    settings.registry_auth = creds("127.0.0.1:5000", "worker-s3cret");
    let mut req = request(guide_app().to_str().unwrap(), "/", None, None);
    req.target = ImageRef::parse(&format!("{host}/apps/elsewhere:1")).unwrap();
    let built = build_with(&settings, req).await;
    assert!(built.result.is_err());
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "the fake registry was asked");
    assert!(requests.iter().all(|r| !r.to_ascii_lowercase().contains("authorization:")), "{requests:#?}");
}
