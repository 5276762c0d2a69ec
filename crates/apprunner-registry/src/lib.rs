//! A small OCI distribution (registry v2) client: manifests and blobs, with anonymous, basic
//! and bearer-token auth. Plain HTTP for loopback registries, HTTPS for the rest.

mod auth;
mod blobs;
mod manifest;
mod transport;

use auth::TokenResponse;
pub use auth::{AuthFileError, Credentials, RegistryAuth, Token};
pub use manifest::Manifest;
pub use transport::is_plain_http;
pub use transport::tls as tls_config;
use transport::tls;

use apprunner_core::digest::Digest;
use apprunner_core::error::{error_chain, Classified, ErrorClass};
use apprunner_core::image_ref::{ImageRef, Repo};
use std::sync::{Arc, Mutex, PoisonError};

use apprunner_core::media_types::ACCEPTED_MANIFESTS as ACCEPT_MANIFESTS;
pub use apprunner_core::media_types::{DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_MANIFEST};

/// What went wrong talking to a registry, and so whose it is to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {host} unreachable: {detail}")]
    Unreachable { host: String, detail: String },
    #[error("registry {host} requires credentials; set APPRUNNER_REGISTRY_USERNAME and APPRUNNER_REGISTRY_PASSWORD (for --registry) or APPRUNNER_REGISTRY_AUTH (a Docker auth file)")]
    CredentialsRequired { host: String },
    #[error("registry {host} refused the credentials for {scope}")]
    TokenRefused { host: String, scope: String },
    #[error("registry {host} refused access to {scope}: HTTP {status}")]
    Refused { host: String, scope: String, status: reqwest::StatusCode },
    #[error("registry {host} sent a bearer challenge without a realm")]
    NoRealm { host: String },
    /// A status the registry answered a request with: a 5xx is its fault and may pass, anything
    /// else means we asked wrongly.
    #[error("{what}: HTTP {status}: {body}")]
    Status { what: String, status: reqwest::StatusCode, body: String },
    #[error("blob {digest} of {image} arrived corrupted")]
    Corrupt { digest: Digest, image: String },
    #[error("{0}")]
    Malformed(String),
}

impl Classified for RegistryError {
    fn class(&self) -> ErrorClass {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::NoRealm { .. } | RegistryError::Corrupt { .. } => {
                ErrorClass::Transient
            }
            RegistryError::Status { status, .. } if status.is_server_error() => ErrorClass::Transient,
            RegistryError::CredentialsRequired { .. }
            | RegistryError::TokenRefused { .. }
            | RegistryError::Refused { .. } => ErrorClass::User,
            RegistryError::Status { .. } | RegistryError::Malformed(_) => ErrorClass::Internal,
        }
    }
}
apprunner_core::error::classified_into_build_error!(RegistryError);

type Result<T> = std::result::Result<T, RegistryError>;

/// A registry client; its clones share its connections and tokens.
#[derive(Clone)]
pub struct Registry {
    http: reqwest::Client,
    auth: RegistryAuth,
    insecure: Vec<String>,
    /// The last bearer token per scope, reused until the registry refuses it; the newest
    /// [`TOKENS_KEPT`] scopes (a worker's client lives as long as the worker).
    tokens: Arc<Mutex<Vec<(String, String)>>>,
}

const TOKENS_KEPT: usize = 256;

/// The registry client a worker's builds share (and the CLI's, for one build), made on first
/// use: connections kept alive and tokens reused from build to build. Made anew when the
/// credentials or plain-HTTP hosts it was made with are no longer the settings'.
#[derive(Clone, Default)]
pub struct RegistryLink(Arc<Mutex<Option<Linked>>>);

/// A client and what it was made with.
struct Linked {
    auth: RegistryAuth,
    insecure: Vec<String>,
    registry: Registry,
}

impl RegistryLink {
    pub fn get(&self, auth: &RegistryAuth, insecure: &[String]) -> Registry {
        let mut held = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match held.as_ref() {
            Some(l) if l.auth == *auth && l.insecure == insecure => l.registry.clone(),
            _ => {
                let registry = Registry::new(auth.clone(), insecure.to_vec());
                *held = Some(Linked { auth: auth.clone(), insecure: insecure.to_vec(), registry: registry.clone() });
                registry
            }
        }
    }
}

impl std::fmt::Debug for RegistryLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RegistryLink")
    }
}

impl Registry {
    pub fn new(auth: RegistryAuth, insecure: Vec<String>) -> Self {
        let builder = match tls() {
            Some(config) => reqwest::Client::builder().use_preconfigured_tls(config.clone()),
            None => reqwest::Client::builder(),
        };
        let http = builder
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .unwrap_or_default();
        Self { http, auth, insecure, tokens: Arc::default() }
    }

    fn scheme(&self, host: &str) -> &'static str {
        if is_plain_http(host, &self.insecure) {
            "http"
        } else {
            "https"
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("{}://{host}/v2/{path}", self.scheme(host))
    }

    fn unreachable(host: &str, e: &reqwest::Error) -> RegistryError {
        RegistryError::Unreachable { host: host.to_string(), detail: error_chain(e) }
    }

    /// Asks a registry's token service (`realm`) for a bearer token for `scopes`, with the
    /// worker's credentials for `host` if it has any (anonymous otherwise).
    pub async fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: &Credentials,
    ) -> Result<Token> {
        let mut req = self.http.get(realm);
        for scope in scopes {
            req = req.query(&[("scope", scope)]);
        }
        if let Some(service) = service {
            req = req.query(&[("service", service)]);
        }
        if !creds.username.is_empty() {
            req = req.basic_auth(&creds.username, Some(&creds.password));
        }
        let body: TokenResponse = req
            .send()
            .await
            .map_err(|e| Self::unreachable(host, &e))?
            .json()
            .await
            .map_err(|e| Self::unreachable(host, &e))?;
        let token = body.token.or(body.access_token).unwrap_or_default();
        if token.is_empty() {
            return Err(RegistryError::TokenRefused { host: host.to_string(), scope: scopes.join(" ") });
        }
        let issued_at = body
            .issued_at
            .as_deref()
            .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
            .map(time::OffsetDateTime::unix_timestamp);
        Ok(Token { token, expires_in: body.expires_in, issued_at })
    }

    /// The worker's credentials for `host`, if it has any.
    pub fn credentials(&self, host: &str) -> Option<&Credentials> {
        self.auth.get(host)
    }

    /// Sends a request, answering one auth challenge if the registry makes it.
    async fn send(
        &self,
        host: &str,
        scope: &str,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let token = self
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(s, _)| s == scope)
            .map(|(_, t)| t.clone());
        let first = match &token {
            Some(t) => build().bearer_auth(t),
            None => build(),
        };
        let resp = first.send().await.map_err(|e| Self::unreachable(host, &e))?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let Some(creds) =
            self.auth.get(host).cloned().or_else(|| challenge.starts_with("Bearer").then(Credentials::default))
        else {
            return Err(RegistryError::CredentialsRequired { host: host.to_string() });
        };
        let again = if let Some(params) = challenge.strip_prefix("Bearer ") {
            let param = |k: &str| {
                params
                    .split(',')
                    .filter_map(|p| p.trim().split_once('='))
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.trim_matches('"').to_string())
            };
            let realm = param("realm").ok_or_else(|| RegistryError::NoRealm { host: host.to_string() })?;
            // A cross-repository mount asks for two scopes at once.
            let scopes: Vec<String> = scope.split(' ').map(str::to_string).collect();
            let token = self.fetch_token(host, &realm, param("service").as_deref(), &scopes, &creds).await?.token;
            let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            // The refused one goes; the oldest scope goes past the bound.
            tokens.retain(|(s, _)| s != scope);
            if tokens.len() >= TOKENS_KEPT {
                tokens.remove(0);
            }
            tokens.push((scope.to_string(), token.clone()));
            drop(tokens);
            build().bearer_auth(token)
        } else {
            build().basic_auth(&creds.username, Some(&creds.password))
        };
        let resp = again.send().await.map_err(|e| Self::unreachable(host, &e))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED || resp.status() == reqwest::StatusCode::FORBIDDEN {
            let status = resp.status();
            return Err(RegistryError::Refused { host: host.to_string(), scope: scope.to_string(), status });
        }
        Ok(resp)
    }

    async fn check(resp: reqwest::Response, what: &str) -> Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(RegistryError::Status { what: what.to_string(), status, body: body.chars().take(300).collect() })
    }

    fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }
    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// The manifest `image` names (by digest if it has one, else by tag), or None.
    pub async fn manifest_of(&self, image: &ImageRef) -> Result<Option<Manifest>> {
        self.manifest(&image.repo(), &image.reference()).await
    }

    /// The manifest at `reference` (tag or digest), or None if the registry has none.
    /// `reference` is a tag or a digest (`&str` or `&Digest`).
    pub async fn manifest(&self, at: &Repo, reference: &(impl std::fmt::Display + ?Sized)) -> Result<Option<Manifest>> {
        let (host, repo) = (at.registry.as_str(), at.repository.as_str());
        let url = self.url(host, &format!("{repo}/manifests/{reference}"));
        let resp =
            self.send(host, &Self::pull_scope(repo), || self.http.get(&url).header("Accept", ACCEPT_MANIFESTS)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::check(resp, &format!("reading manifest {host}/{repo}:{reference}")).await?;
        let media_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or(DOCKER_MANIFEST).to_string();
        let bytes = resp.bytes().await.map_err(|e| Self::unreachable(host, &e))?.to_vec();
        let digest = Digest::of(&bytes);
        Ok(Some(Manifest { bytes, media_type, digest }))
    }

    /// Every tag of `repo` (none if the registry has no such repository).
    pub async fn tags(&self, at: &Repo) -> Result<Vec<String>> {
        let (host, repo) = (at.registry.as_str(), at.repository.as_str());
        let mut tags = Vec::new();
        let mut next = Some(self.url(host, &format!("{repo}/tags/list?n=1000")));
        while let Some(url) = next.take() {
            let resp = self.send(host, &Self::pull_scope(repo), || self.http.get(&url)).await?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                break;
            }
            // `Link: </v2/…?last=…&n=…>; rel="next"` when there are more.
            next = resp
                .headers()
                .get("link")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split_once('<')?.1.split_once('>').map(|(u, _)| u.to_string()))
                .map(|u| if u.starts_with("http") { u } else { format!("{}://{host}{u}", self.scheme(host)) });
            let resp = Self::check(resp, &format!("listing the tags of {host}/{repo}")).await?;
            let body: TagList = resp.json().await.map_err(|e| Self::unreachable(host, &e))?;
            tags.extend(body.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(
        &self,
        at: &Repo,
        reference: &(impl std::fmt::Display + ?Sized),
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let (host, repo) = (at.registry.as_str(), at.repository.as_str());
        let url = self.url(host, &format!("{repo}/manifests/{reference}"));
        let body = bytes.to_vec();
        let resp = self
            .send(host, &Self::push_scope(repo), || {
                self.http.put(&url).header("Content-Type", media_type).body(body.clone())
            })
            .await?;
        Self::check(resp, &format!("writing manifest {host}/{repo}:{reference}")).await?;
        Ok(Digest::of(bytes))
    }

    /// Whether the registry answers at all.
    pub async fn ping(&self, host: &str) -> Result<()> {
        let url = self.url(host, "");
        self.http.get(&url).send().await.map_err(|e| Self::unreachable(host, &e))?;
        Ok(())
    }
}

/// A page of `/v2/<name>/tags/list` (`tags` is null for a repository with none).
#[derive(serde::Deserialize)]
struct TagList {
    tags: Option<Vec<String>>,
}
