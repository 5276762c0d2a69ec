//! The worker's side of a `BuildKit` session: the channel `BuildKit` calls back on during a
//! solve. Here it answers two services: `moby.filesync.v1.Auth`, so `BuildKit` pushes the image and
//! the fleet cache, and pulls from registries that want credentials, with the worker's
//! credentials (they never enter a build step, an LLB definition or a log); and
//! `grpc.health.v1.Health`, which `BuildKit` polls to know the session is alive.
//!
//! The roles are reversed: `BuildKit` is the gRPC client and the worker serves HTTP/2 on a
//! connection it opened itself. Docker Engine hands that connection over by an HTTP upgrade of
//! `POST /session`; a standalone buildkitd by `Control.Session`, a stream of byte messages.

use super::connect::{self, BuildkitAddr};
use super::control::{BytesMessage, ControlClient};
use super::ConnectError;
use apprunner_registry::{Credentials, Registry};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The methods the session serves, as `BuildKit` is told them: it calls nothing else.
const METHODS: &[&str] =
    &["/grpc.health.v1.Health/Check", "/moby.filesync.v1.Auth/Credentials", "/moby.filesync.v1.Auth/FetchToken"];

/// A request bigger than this is not one of ours.
const MAX_REQUEST: usize = 64 * 1024;

/// A session attached to `BuildKit`; it ends when dropped.
pub struct Session {
    pub id: String,
    serving: tokio::task::AbortHandle,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.serving.abort();
    }
}

impl Session {
    /// Whether `BuildKit` can still call it: its connection has not ended.
    pub fn alive(&self) -> bool {
        !self.serving.is_finished()
    }

    /// Opens a session on the `BuildKit` at `addr`, answering credential requests from `registry`'s
    /// credentials.
    pub async fn attach(addr: &BuildkitAddr, registry: Registry) -> Result<Self, ConnectError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let handler = Arc::new(Handler { registry });
        let failed = |detail: String| ConnectError::Session { addr: addr.to_string(), detail };
        let serving = match addr {
            BuildkitAddr::Docker(socket) => {
                let stream = docker_upgrade(socket, &id).await.map_err(|e| failed(e.to_string()))?;
                tokio::spawn(serve(stream, handler))
            }
            BuildkitAddr::Unix(_) | BuildkitAddr::Tcp(_) => {
                let channel = connect::channel(addr).await.map_err(|e| failed(e.to_string()))?;
                let stream = control_session(ControlClient::new(channel), &id)
                    .await
                    .map_err(|e| failed(e.message().to_string()))?;
                tokio::spawn(serve(stream, handler))
            }
        };
        Ok(Self { id, serving: serving.abort_handle() })
    }
}

fn session_headers(id: &str) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("X-Docker-Expose-Session-Uuid", id.to_string()),
        ("X-Docker-Expose-Session-Name", "apprunner-build".to_string()),
        // BuildKit keys shared local sources by it; this session shares none.
        ("X-Docker-Expose-Session-Sharedkey", id.to_string()),
    ];
    headers.extend(METHODS.iter().map(|m| ("X-Docker-Expose-Session-Grpc-Method", (*m).to_string())));
    headers
}

/// `POST /session` on the Engine socket, upgraded to h2c; the connection the Engine's `BuildKit`
/// then speaks gRPC on, as the client.
async fn docker_upgrade(socket: &std::path::Path, id: &str) -> std::io::Result<tokio::net::UnixStream> {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", socket.display())))?;
    let mut req = format!(
        "POST {}/session HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n",
        connect::DOCKER_API
    );
    for (name, value) in session_headers(id) {
        let _ = write!(req, "{name}: {value}\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let head = connect::read_upgrade_head(&mut s).await?;
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
        return Err(std::io::Error::other(format!("Docker Engine refused the BuildKit session: {line}")));
    }
    Ok(s)
}

/// `Control.Session` on a standalone buildkitd: the session's bytes travel as messages of a
/// bidirectional stream; a local pipe turns them back into a connection to serve HTTP/2 on.
async fn control_session(mut client: ControlClient, id: &str) -> Result<tokio::io::DuplexStream, tonic::Status> {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_pipe, mut to_pipe) = tokio::io::split(theirs);
    let (tx, rx) = tokio::sync::mpsc::channel::<BytesMessage>(16);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = from_pipe.read(&mut buf).await {
            if n == 0 || tx.send(BytesMessage { data: buf[..n].to_vec() }).await.is_err() {
                break;
            }
        }
    });
    let outgoing = tokio_stream::wrappers::ReceiverStream::new(rx);
    let headers = session_headers(id).into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let mut incoming = client.session(outgoing, headers).await?;
    tokio::spawn(async move {
        while let Ok(Some(msg)) = incoming.message().await {
            if to_pipe.write_all(&msg.data).await.is_err() {
                break;
            }
        }
    });
    Ok(ours)
}

async fn serve<S>(stream: S, handler: Arc<Handler>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler.call(req).await) }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type Reply = hyper::Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>;

/// A gRPC status other than OK, as `BuildKit` reads it.
struct Status {
    code: u16,
    message: String,
}

const UNIMPLEMENTED: u16 = 12;
const INVALID_ARGUMENT: u16 = 3;
const UNAVAILABLE: u16 = 14;
const PERMISSION_DENIED: u16 = 7;

struct Handler {
    registry: Registry,
}

impl Handler {
    async fn call(&self, req: hyper::Request<Incoming>) -> Reply {
        let path = req.uri().path().to_string();
        let body = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return status_only(&Status { code: INVALID_ARGUMENT, message: "request too large".into() }),
        };
        let result = match unframe(&body) {
            None => Err(Status { code: INVALID_ARGUMENT, message: "not a gRPC message".into() }),
            Some(msg) => match path.as_str() {
                "/grpc.health.v1.Health/Check" => Ok(encode(&HealthCheckResponse { status: SERVING })),
                "/moby.filesync.v1.Auth/Credentials" => decode::<CredentialsRequest>(&msg).map(|r| {
                    let creds = self.registry.credentials(&r.host).cloned().unwrap_or_default();
                    encode(&CredentialsResponse { username: creds.username, secret: creds.password })
                }),
                "/moby.filesync.v1.Auth/FetchToken" => match decode::<FetchTokenRequest>(&msg) {
                    Ok(r) => self.fetch_token(r).await,
                    Err(e) => Err(e),
                },
                _ => Err(Status { code: UNIMPLEMENTED, message: format!("{path} is not served by apprunner-build") }),
            },
        };
        match result {
            Ok(bytes) => ok(&bytes),
            Err(status) => status_only(&status),
        }
    }

    async fn fetch_token(&self, r: FetchTokenRequest) -> Result<Vec<u8>, Status> {
        let creds = self.registry.credentials(&r.host).cloned().unwrap_or_else(Credentials::default);
        let service = Some(r.service.as_str()).filter(|s| !s.is_empty());
        match self.registry.fetch_token(&r.host, &r.realm, service, &r.scopes, &creds).await {
            Ok(t) => Ok(encode(&FetchTokenResponse {
                token: t.token,
                expires_in: t.expires_in.unwrap_or_default(),
                issued_at: t.issued_at.unwrap_or_default(),
            })),
            Err(e) => {
                let code =
                    if e.class() == apprunner_core::error::ErrorClass::User { PERMISSION_DENIED } else { UNAVAILABLE };
                Err(Status { code, message: e.to_string() })
            }
        }
    }
}

use apprunner_core::error::Classified as _;

fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Status> {
    M::decode(bytes).map_err(|e| Status { code: INVALID_ARGUMENT, message: e.to_string() })
}

fn encode<M: prost::Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

/// The one message of a unary request: a flag byte (no compression), a length, the message.
fn unframe(body: &Bytes) -> Option<Bytes> {
    let (&[0, a, b, c, d], rest) = body.split_first_chunk::<5>()? else { return None };
    (rest.len() == u32::from_be_bytes([a, b, c, d]) as usize).then(|| body.slice(5..))
}

fn ok(message: &[u8]) -> Reply {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(message);
    let mut trailers = hyper::HeaderMap::new();
    trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
    let body = Full::new(Bytes::from(framed)).with_trailers(async move { Some(Ok(trailers)) });
    hyper::Response::builder()
        .header("content-type", "application/grpc")
        .body(body.boxed())
        .unwrap_or_else(|_| hyper::Response::new(http_body_util::Empty::new().boxed()))
}

/// A trailers-only reply: the status in the headers, no body.
fn status_only(status: &Status) -> Reply {
    let message: String = status.message.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').collect();
    hyper::Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", status.code.to_string())
        .header("grpc-message", message)
        .body(http_body_util::Empty::new().boxed())
        .unwrap_or_else(|_| hyper::Response::new(http_body_util::Empty::new().boxed()))
}

// The messages, with the field numbers of grpc/health/v1 and buildkit's session/auth/auth.proto.

const SERVING: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CredentialsRequest {
    #[prost(string, tag = "1")]
    host: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct CredentialsResponse {
    #[prost(string, tag = "1")]
    username: String,
    #[prost(string, tag = "2")]
    secret: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FetchTokenRequest {
    #[prost(string, tag = "1")]
    client_id: String,
    #[prost(string, tag = "2")]
    host: String,
    #[prost(string, tag = "3")]
    realm: String,
    #[prost(string, tag = "4")]
    service: String,
    #[prost(string, repeated, tag = "5")]
    scopes: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FetchTokenResponse {
    #[prost(string, tag = "1")]
    token: String,
    #[prost(int64, tag = "2")]
    expires_in: i64,
    #[prost(int64, tag = "3")]
    issued_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unary_request_is_one_uncompressed_frame() {
        let msg = encode(&CredentialsRequest { host: "127.0.0.1:5000".into() });
        let mut framed = vec![0, 0, 0, 0, u8::try_from(msg.len()).unwrap()];
        framed.extend_from_slice(&msg);
        let body = unframe(&Bytes::from(framed.clone())).unwrap();
        assert_eq!(decode::<CredentialsRequest>(&body).ok().unwrap().host, "127.0.0.1:5000");
        framed[0] = 1;
        assert!(unframe(&Bytes::from(framed)).is_none(), "compressed frames are not ours");
        assert!(unframe(&Bytes::from_static(&[0, 0, 0, 0, 9, 1])).is_none(), "a short frame");
    }
}
