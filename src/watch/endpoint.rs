//! The watcher's HTTP endpoint: `POST /webhook` (a git host's push: the services that follow
//! its repository and branch are looked at now), `GET /healthz` and `GET /metrics`. A webhook
//! is checked before it is read (GitHub's and Bitbucket's HMAC-SHA256 signature of the body,
//! GitLab's token, each compared in constant time) and only says "look now".

use super::Watcher;
use crate::core::watch::webhook::{normalize_url, push_of, Provider, MAX_WEBHOOK_BYTES};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;

/// How much of a webhook's body over the limit is read (and dropped) before the 413, so that
/// its sender reads the answer: a few times the limit.
const DRAIN_AT_MOST: usize = 8 * MAX_WEBHOOK_BYTES;
/// How long that reading may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// What the endpoint serves on one listener: webhooks (with the secret), or health and
/// metrics only.
#[derive(Clone)]
pub struct Endpoint {
    pub watcher: Arc<Watcher>,
    /// The webhooks' shared secret; None: this listener takes no webhook.
    pub secret: Option<Arc<Vec<u8>>>,
}

impl Endpoint {
    /// Serves `listener` until the process ends.
    pub async fn serve(self, listener: tokio::net::TcpListener) {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let me = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let me = me.clone();
                    async move { Ok::<_, std::convert::Infallible>(me.answer(req).await) }
                });
                let io = hyper_util::rt::TokioIo::new(sock);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/healthz") => reply(StatusCode::OK, "ok\n"),
            (&Method::GET, "/metrics") => reply(StatusCode::OK, &self.watcher.metrics.render()),
            (&Method::POST, "/webhook") if self.secret.is_some() => self.webhook(req).await,
            _ => reply(StatusCode::NOT_FOUND, "try POST /webhook, GET /healthz or GET /metrics\n"),
        }
    }

    async fn webhook(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let Some((provider, event)) = Provider::of(header) else {
            return reply(StatusCode::BAD_REQUEST, "no X-GitHub-Event, X-Gitlab-Event or X-Event-Key header\n");
        };
        let said = |outcome: &str| self.watcher.metrics.webhook(provider.name(), outcome);
        let too_big = || {
            said("too-large");
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("a webhook's body may have at most {MAX_WEBHOOK_BYTES} bytes\n"),
            )
        };
        let declared = header("content-length").and_then(|l| l.parse::<usize>().ok());
        if let Some(length) = declared.filter(|l| *l > MAX_WEBHOOK_BYTES) {
            // A sender still writing its body when the answer comes and the connection closes
            // sees a broken pipe, not the 413: a body up to DRAIN_AT_MOST is read and dropped
            // first (briefly); a bigger one is answered at once.
            if length <= DRAIN_AT_MOST {
                let draining = Limited::new(req.into_body(), DRAIN_AT_MOST).collect();
                let _ = tokio::time::timeout(DRAIN_TIME, draining).await;
            }
            return too_big();
        }
        let proof = match provider {
            Provider::GitHub => header("x-hub-signature-256"),
            Provider::GitLab => header("x-gitlab-token"),
            Provider::Bitbucket => header("x-hub-signature"),
        };
        let Ok(body) =
            Limited::new(req.into_body(), MAX_WEBHOOK_BYTES).collect().await.map(http_body_util::Collected::to_bytes)
        else {
            return too_big();
        };
        let secret = self.secret.as_deref().map_or(&[][..], Vec::as_slice);
        if !proof.is_some_and(|p| genuine(provider, &p, secret, &body)) {
            said("refused");
            return reply(StatusCode::UNAUTHORIZED, "the signature or token is missing or wrong\n");
        }
        if provider.is_ping(&event) {
            said("ping");
            return reply(StatusCode::OK, "pong\n");
        }
        if !provider.is_push(&event) {
            said("ignored");
            return reply(StatusCode::ACCEPTED, "not a push; nothing to do\n");
        }
        let push = match push_of(provider, &body) {
            Ok(push) => push,
            Err(why) => {
                said("unreadable");
                return reply(StatusCode::BAD_REQUEST, &format!("{why}\n"));
            }
        };
        let names = self.watcher.following(|s| {
            push.repositories.contains(&normalize_url(&s.repository))
                && s.branch.as_ref().is_none_or(|b| push.branches.contains(b))
        });
        if names.is_empty() {
            said("unfollowed");
            return reply(StatusCode::ACCEPTED, "no service follows that repository and branch\n");
        }
        said("accepted");
        let n = names.len();
        self.watcher.look_now(names);
        reply(StatusCode::ACCEPTED, &format!("looking at {n} services now\n"))
    }
}

/// Whether `proof` shows the sender holds `secret`: an HMAC-SHA256 of `body` (`sha256=<hex>`,
/// GitHub and Bitbucket), or the token itself (GitLab); compared in constant time.
fn genuine(provider: Provider, proof: &str, secret: &[u8], body: &[u8]) -> bool {
    if secret.is_empty() {
        return false;
    }
    match provider {
        Provider::GitLab => constant_time_eq(proof.as_bytes(), secret),
        Provider::GitHub | Provider::Bitbucket => {
            let Some(tag) = proof.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else { return false };
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            ring::hmac::verify(&key, body, &tag).is_ok()
        }
    }
}

/// `a == b`, in a time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn reply(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_the_body_s_hmac_and_a_token_the_secret() {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
        let sig = format!("sha256={}", hex::encode(ring::hmac::sign(&key, b"{}").as_ref()));
        assert!(genuine(Provider::GitHub, &sig, b"s3cret", b"{}"));
        assert!(genuine(Provider::Bitbucket, &sig, b"s3cret", b"{}"));
        assert!(!genuine(Provider::GitHub, &sig, b"other", b"{}"));
        assert!(!genuine(Provider::GitHub, &sig, b"s3cret", b"{ }"));
        assert!(!genuine(Provider::GitHub, "sha1=00", b"s3cret", b"{}"));
        assert!(genuine(Provider::GitLab, "s3cret", b"s3cret", b"{}"));
        assert!(!genuine(Provider::GitLab, "s3creT", b"s3cret", b"{}"));
        assert!(!genuine(Provider::GitLab, "", b"", b"{}"), "no secret, no webhook");
    }
}
