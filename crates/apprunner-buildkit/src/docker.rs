//! The Docker Engine API calls the worker makes beside `BuildKit`: what the Engine is and how it
//! keeps images. HTTP/1.1 over the Engine's unix socket.

use super::connect::DOCKER_API;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio::net::UnixStream;

async fn get(socket: &Path, path: &str) -> Option<serde_json::Value> {
    let stream = UnixStream::connect(socket).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri(format!("{DOCKER_API}{path}"))
        .header("Host", "docker")
        .body(Empty::<Bytes>::new())
        .ok()?;
    let resp = sender.send_request(req).await.ok()?;
    if resp.status() != 200 {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    serde_json::from_slice(&body).ok()
}

/// The Engine's own version (`26.1.5+dfsg1`), as `GET /version` says it.
pub async fn engine_version(socket: &Path) -> Option<String> {
    get(socket, "/version").await?["Version"].as_str().map(str::to_string)
}

/// Whether the Engine keeps images in containerd (`"features": {"containerd-snapshotter": true}`):
/// only then does its `BuildKit` have the `image` exporter and the registry cache. None when the
/// Engine does not answer.
pub async fn uses_containerd_store(socket: &Path) -> Option<bool> {
    let info = get(socket, "/info").await?;
    let status = info["DriverStatus"].as_array().cloned().unwrap_or_default();
    Some(status.iter().any(|pair| pair[0] == "driver-type" && pair[1] == "io.containerd.snapshotter.v1"))
}
