//! The Docker Engine API call the Docker backend needs: push the image the `moby` exporter
//! stored. HTTP/1.1 over the Engine's unix socket.

use crate::edge::registry::Credentials;
use crate::error::{Classified, ErrorClass};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio::net::UnixStream;

/// The Engine's push failing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("Docker Engine at {socket} unreachable: {detail}")]
    EngineUnreachable { socket: String, detail: String },
    /// The registry refused the credentials: a person must fix them.
    #[error("pushing {image}: {detail}")]
    Refused { image: String, detail: String },
    #[error("pushing {image}: {detail}")]
    Failed { image: String, detail: String },
}

impl Classified for PushError {
    fn class(&self) -> ErrorClass {
        match self {
            PushError::Refused { .. } => ErrorClass::User,
            PushError::EngineUnreachable { .. } | PushError::Failed { .. } => ErrorClass::Transient,
        }
    }
}
crate::error::classified_into_build_error!(PushError);

async fn request(socket: &Path, method: &str, path: &str, auth: Option<&str>) -> Result<(u16, Vec<u8>), PushError> {
    let unreachable = |e: String| PushError::EngineUnreachable { socket: socket.display().to_string(), detail: e };
    let stream = UnixStream::connect(socket).await.map_err(|e| unreachable(e.to_string()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder().method(method).uri(path).header("Host", "docker");
    if let Some(a) = auth {
        req = req.header("X-Registry-Auth", a);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| unreachable(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes().to_vec();
    Ok((status, body))
}

/// Pushes `repo:tag` from the Engine's store to its registry, with the registry credentials if
/// the worker has them. The Engine streams JSON progress; an `error` in it is the push failing.
pub async fn push(
    socket: &Path,
    repository: &str,
    tag: &str,
    credentials: Option<&Credentials>,
) -> Result<(), PushError> {
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
        let detail = format!("Docker Engine answered {status}: {}", text.trim());
        return Err(PushError::Failed { image: format!("{repository}:{tag}"), detail });
    }
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
                // Refused credentials are for a person to fix; anything else may pass.
                let refused =
                    err.contains("unauthorized") || err.contains("authentication required") || err.contains("denied");
                let (image, detail) = (format!("{repository}:{tag}"), err.to_string());
                return Err(if refused {
                    PushError::Refused { image, detail }
                } else {
                    PushError::Failed { image, detail }
                });
            }
        }
    }
    Ok(())
}

/// Removes `repo:tag` from the Engine's store: the image the `moby` exporter left there lacks
/// the final config the registry's has, and nobody should run it by that name.
pub async fn remove(socket: &Path, repository: &str, tag: &str) -> Result<(), PushError> {
    let (status, body) =
        request(socket, "DELETE", &format!("/v1.41/images/{repository}:{tag}?noprune=false"), None).await?;
    if status == 200 || status == 404 {
        return Ok(());
    }
    let detail = format!("Docker Engine answered {status}: {}", String::from_utf8_lossy(&body).trim());
    Err(PushError::Failed { image: format!("{repository}:{tag}"), detail })
}

/// The Engine's own version (`26.1.5+dfsg1`), as `GET /version` says it.
pub async fn engine_version(socket: &Path) -> Option<String> {
    let (status, body) = request(socket, "GET", "/v1.41/version", None).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&body).ok().filter(|_| status == 200)?;
    v["Version"].as_str().map(str::to_string)
}
