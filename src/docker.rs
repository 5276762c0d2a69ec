//! The Docker Engine API call the Docker backend needs: push the image the `moby` exporter
//! stored. HTTP/1.1 over the Engine's unix socket.

use crate::error::BuildError;
use crate::registry::Credentials;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio::net::UnixStream;

async fn request(socket: &Path, method: &str, path: &str, auth: Option<&str>) -> Result<(u16, Vec<u8>), BuildError> {
    let unreachable = |e: String| BuildError::transient(format!("Docker Engine at {} unreachable: {e}", socket.display()));
    let stream = UnixStream::connect(socket).await.map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("Host", "docker");
    if let Some(a) = auth {
        req = req.header("X-Registry-Auth", a);
    }
    let resp = sender.send_request(req.body(Empty::<Bytes>::new()).expect("request")).await.map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes().to_vec();
    Ok((status, body))
}

/// Pushes `repo:tag` from the Engine's store to its registry, with the registry credentials if
/// the worker has them. The Engine streams JSON progress; an `error` in it is the push failing.
pub async fn push(socket: &Path, repository: &str, tag: &str, credentials: Option<&Credentials>) -> Result<(), BuildError> {
    use base64::Engine as _;
    let server = repository.split('/').next().unwrap_or_default();
    let auth = match credentials {
        Some(c) => serde_json::json!({"username": c.username, "password": c.password, "serveraddress": server}),
        None => serde_json::json!({}),
    };
    let auth = base64::engine::general_purpose::URL_SAFE.encode(auth.to_string());
    let path = format!("/v1.41/images/{repository}/push?tag={tag}");
    let (status, body) = request(socket, "POST", &path, Some(&auth)).await?;
    let text = String::from_utf8_lossy(&body);
    if status != 200 {
        return Err(BuildError::transient(format!("pushing {repository}:{tag}: Docker Engine answered {status}: {}", text.trim())));
    }
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                // Refused credentials are for a person to fix; anything else may pass.
                let refused = err.contains("unauthorized") || err.contains("authentication required") || err.contains("denied");
                let msg = format!("pushing {repository}:{tag}: {err}");
                return Err(if refused { BuildError::user(msg) } else { BuildError::transient(msg) });
            }
        }
    }
    Ok(())
}
