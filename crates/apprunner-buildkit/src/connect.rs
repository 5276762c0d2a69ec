//! Reaching a `BuildKit` daemon: Docker Engine's `/grpc` endpoint (an HTTP/1.1 upgrade to h2c on
//! the Engine socket), or a standalone buildkitd on `unix://` or `tcp://`.

use hyper_util::rt::TokioIo;
use std::io;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Where `BuildKit` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildkitAddr {
    /// `docker-unix:///var/run/docker.sock`: Docker Engine's embedded `BuildKit`.
    Docker(PathBuf),
    /// `unix:///run/buildkit/buildkitd.sock`
    Unix(PathBuf),
    /// `tcp://host:1234` (plain h2c)
    Tcp(String),
}

impl std::str::FromStr for BuildkitAddr {
    type Err = super::ConnectError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("docker-unix://") {
            Ok(BuildkitAddr::Docker(p.into()))
        } else if let Some(p) = s.strip_prefix("unix://") {
            Ok(BuildkitAddr::Unix(p.into()))
        } else if let Some(h) = s.strip_prefix("tcp://") {
            Ok(BuildkitAddr::Tcp(h.into()))
        } else {
            Err(super::ConnectError::BadAddress(s.to_string()))
        }
    }
}

impl std::fmt::Display for BuildkitAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildkitAddr::Docker(p) => write!(f, "docker-unix://{}", p.display()),
            BuildkitAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            BuildkitAddr::Tcp(h) => write!(f, "tcp://{h}"),
        }
    }
}

/// The Engine API version the worker speaks: its `/grpc` and `/session` endpoints are served by
/// every Engine from 20.10 on.
pub const DOCKER_API: &str = "/v1.41";
const DOCKER_GRPC_PATH: &str = "/v1.41/grpc";

/// Reads an HTTP/1.1 reply head byte by byte, so not one byte of the HTTP/2 stream an upgrade
/// starts is swallowed.
pub async fn read_upgrade_head(s: &mut UnixStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "Docker Engine closed the upgraded connection"));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// Opens the Engine socket and upgrades it to h2c.
async fn docker_upgrade(socket: PathBuf) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(&socket).await?;
    let req = format!("POST {DOCKER_GRPC_PATH} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let head = read_upgrade_head(&mut s).await?;
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
        return Err(io::Error::other(format!(
            "Docker Engine refused the BuildKit upgrade on {DOCKER_GRPC_PATH}: {line}"
        )));
    }
    Ok(s)
}

pub async fn channel(addr: &BuildkitAddr) -> Result<Channel, tonic::transport::Error> {
    // The URI is a placeholder for the unix connectors; h2c with prior knowledge either way.
    match addr.clone() {
        BuildkitAddr::Tcp(host) => Endpoint::from_shared(format!("http://{host}"))?.connect().await,
        BuildkitAddr::Docker(sock) => {
            Endpoint::from_static("http://docker.invalid")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let sock = sock.clone();
                    async move { docker_upgrade(sock).await.map(TokioIo::new) }
                }))
                .await
        }
        BuildkitAddr::Unix(sock) => {
            Endpoint::from_static("http://buildkitd.invalid")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let sock = sock.clone();
                    async move { UnixStream::connect(sock).await.map(TokioIo::new) }
                }))
                .await
        }
    }
}
