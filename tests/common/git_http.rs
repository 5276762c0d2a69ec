//! A git host over smart HTTP(S) for the tests: git's own `git http-backend`, run as a CGI
//! program for each request by a small HTTP server on loopback, which notes every request it
//! answers; optionally over TLS and asking for Basic credentials, as a private host does.
#![allow(dead_code, clippy::unwrap_used)]

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A request the host answered: method, path with query, the client's `User-Agent`, and
/// whether it carried the credentials the host asks for (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub method: String,
    pub path: String,
    pub agent: String,
    pub authorized: bool,
}

/// How the host is reached and what it asks of a client.
#[derive(Clone, Default)]
pub struct HostOptions {
    /// Whether the backend is told the client's `Git-Protocol` (false: it speaks v0 only).
    pub v2: bool,
    /// HTTPS with this certificate chain and key (PEM files), else plain HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Answers 401 to any request without these Basic credentials.
    pub basic_auth: Option<(String, String)>,
}

pub struct GitHost {
    pub port: u16,
    scheme: &'static str,
    /// The repositories' parent directory (`GIT_PROJECT_ROOT`).
    pub root: tempfile::TempDir,
    asked: Arc<Mutex<Vec<Asked>>>,
    task: tokio::task::JoinHandle<()>,
}

impl GitHost {
    /// Serves bare copies of repositories put under `root`. With `v2` false the backend is not
    /// told the client's `Git-Protocol`, so it speaks protocol v0 as an older host would.
    pub async fn start(v2: bool) -> Self {
        Self::start_with(HostOptions { v2, ..HostOptions::default() }).await
    }

    pub async fn start_with(options: HostOptions) -> Self {
        let root = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let acceptor = options.tls.as_ref().map(|(chain, key)| tls_acceptor(chain, key));
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let project_root = root.path().to_path_buf();
        let log = asked.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (project_root, log, options, acceptor) =
                    (project_root.clone(), log.clone(), options.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (project_root, log, options) = (project_root.clone(), log.clone(), options.clone());
                        async move { Ok::<_, std::convert::Infallible>(cgi(&project_root, &options, &log, req).await) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else { return };
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(tls), service).await;
                        }
                        None => {
                            let _ = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self { port, scheme, root, asked, task }
    }

    /// Publishes the repository at `dir` as `<name>.git` (a bare clone); its URL.
    pub fn publish(&self, dir: &Path, name: &str) -> String {
        let bare = self.root.path().join(format!("{name}.git"));
        git(self.root.path(), &["clone", "-q", "--bare", &dir.to_string_lossy(), &bare.to_string_lossy()]);
        format!("{}://127.0.0.1:{}/{name}.git", self.scheme, self.port)
    }

    /// Pushes `dir`'s `main` to the published `<name>.git`.
    pub fn push(&self, dir: &Path, name: &str) {
        let bare: PathBuf = self.root.path().join(format!("{name}.git"));
        git(dir, &["push", "-q", &bare.to_string_lossy(), "main"]);
    }

    /// The requests answered since the last call.
    pub fn take_asked(&self) -> Vec<Asked> {
        std::mem::take(&mut *self.asked.lock().unwrap())
    }
}

impl Drop for GitHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A TLS acceptor for the PEM certificate chain and key.
fn tls_acceptor(chain: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<_> = CertificateDer::pem_file_iter(chain).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn cgi(
    project_root: &Path,
    options: &HostOptions,
    log: &Mutex<Vec<Asked>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let (agent, protocol) = (header("user-agent"), header("git-protocol"));
    let (content_type, encoding) = (header("content-type"), header("content-encoding"));
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let shown = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
    log.lock().unwrap().push(Asked { method: method.clone(), path: shown, agent, authorized: true });
    if let Some((user, password)) = &options.basic_auth {
        use base64::Engine;
        let expected =
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        if header("authorization") != expected {
            log.lock().unwrap().last_mut().unwrap().authorized = false;
            return hyper::Response::builder()
                .status(401)
                .header("WWW-Authenticate", "Basic realm=\"git\"")
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
    }
    let body = req.into_body().collect().await.map(http_body_util::Collected::to_bytes).unwrap_or_default();

    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", project_root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", &encoding)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    if options.v2 {
        cmd.env("GIT_PROTOCOL", &protocol);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writing = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    });
    let out = child.wait_with_output().await.unwrap().stdout;
    let _ = writing.await;

    // CGI: headers, a blank line, the body; `Status:` sets the code.
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4));
    let split = split.or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, i + 2)));
    let (head_end, body_start) = split.unwrap_or((0, 0));
    let mut response = hyper::Response::builder();
    for line in String::from_utf8_lossy(&out[..head_end]).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("status") {
            let code: u16 = value.trim().split(' ').next().unwrap().parse().unwrap();
            response = response.status(code);
        } else {
            response = response.header(name.trim(), value.trim());
        }
    }
    response.body(Full::new(Bytes::copy_from_slice(&out[body_start..]))).unwrap()
}

/// A CA and a certificate for 127.0.0.1 it signed, made with openssl; the system's bundle with
/// the CA added.
pub fn certificates(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test git host CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "host.key",
        "-out",
        "host.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "host.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "host.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
    let mut bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    bundle.extend(std::fs::read(dir.join("ca.pem")).unwrap());
    std::fs::write(dir.join("bundle.pem"), bundle).unwrap();
    (dir.join("host.pem"), dir.join("host.key"), dir.join("bundle.pem"))
}

/// Runs git in `dir` as a test's author; its output, or a panic saying what git said.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
