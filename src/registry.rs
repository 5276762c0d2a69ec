//! A small OCI distribution (registry v2) client: manifests and blobs, with anonymous, basic
//! and bearer-token auth. Plain HTTP for loopback registries, HTTPS for the rest.

use crate::error::BuildError;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
const ACCEPT_MANIFESTS: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";

/// `host[:port]/repo/path[:tag][@sha256:…]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an image reference; expected REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/apps/web:latest");
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) if d.starts_with("sha256:") && d.len() == 71 => (r, Some(d.to_string())),
            Some(_) => return Err(bad()),
            None => (s, None),
        };
        let (registry, path) = rest.split_once('/').ok_or_else(bad)?;
        if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad());
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
            _ => (path.to_string(), None),
        };
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch)));
        if !valid_repo || tag.as_deref().is_some_and(|t| t.is_empty() || t.len() > 128) {
            return Err(bad());
        }
        Ok(Self { registry: registry.to_string(), repository, tag, digest })
    }

    /// The tag, or the digest, or `latest`.
    pub fn reference(&self) -> String {
        self.digest.clone().or_else(|| self.tag.clone()).unwrap_or_else(|| "latest".into())
    }

    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A name made fit to be one path component of a repository: lower case, `[a-z0-9._-]`,
/// starting and ending with a letter or digit (`.tmpAb3` -> `tmpab3`).
pub fn repository_component(name: &str) -> String {
    let mapped: String = name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "app".into()
    } else {
        trimmed.to_string()
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Credentials for one registry host.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

pub struct Registry {
    http: reqwest::Client,
    credentials: Option<Credentials>,
    insecure: Vec<String>,
    /// The last bearer token per scope, reused until the registry refuses it.
    tokens: Mutex<Vec<(String, String)>>,
}

/// A manifest as stored: its bytes (digests are over these), media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl Manifest {
    pub fn json(&self) -> Result<Value, BuildError> {
        serde_json::from_slice(&self.bytes).map_err(|e| BuildError::internal(format!("registry returned a manifest that is not JSON: {e}")))
    }
    pub fn config_digest(&self) -> Result<String, BuildError> {
        self.json()?["config"]["digest"].as_str().map(str::to_string).ok_or_else(|| BuildError::internal("manifest has no config digest"))
    }
}

/// Loopback registries speak plain HTTP (as Docker assumes); so do hosts named insecure.
pub fn is_plain_http(host: &str, insecure: &[String]) -> bool {
    let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    name == "localhost" || name.starts_with("127.") || name == "[::1]" || insecure.iter().any(|i| i == host || i == name)
}

impl Registry {
    pub fn new(credentials: Option<Credentials>, insecure: Vec<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(600))
            .build()
            .expect("reqwest client");
        Self { http, credentials, insecure, tokens: Mutex::new(Vec::new()) }
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

    fn unreachable(host: &str, e: reqwest::Error) -> BuildError {
        BuildError::transient(format!("registry {host} unreachable: {}", crate::buildkit::error_chain(&e)))
    }

    /// Sends a request, answering one auth challenge if the registry makes it.
    async fn send(&self, host: &str, scope: &str, build: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response, BuildError> {
        let token = self.tokens.lock().unwrap().iter().find(|(s, _)| s == scope).map(|(_, t)| t.clone());
        let first = match &token {
            Some(t) => build().bearer_auth(t),
            None => build(),
        };
        let resp = first.send().await.map_err(|e| Self::unreachable(host, e))?;
        if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let Some(creds) = self.credentials.clone().or_else(|| challenge.starts_with("Bearer").then(Credentials::default)) else {
            return Err(BuildError::user(format!("registry {host} requires credentials; set APPRUNNER_REGISTRY_USERNAME and APPRUNNER_REGISTRY_PASSWORD")));
        };
        let again = if let Some(params) = challenge.strip_prefix("Bearer ") {
            let param =
                |k: &str| params.split(',').filter_map(|p| p.trim().split_once('=')).find(|(n, _)| *n == k).map(|(_, v)| v.trim_matches('"').to_string());
            let realm = param("realm").ok_or_else(|| BuildError::transient(format!("registry {host} sent a bearer challenge without a realm")))?;
            let mut req = self.http.get(&realm).query(&[("scope", scope)]);
            if let Some(service) = param("service") {
                req = req.query(&[("service", service)]);
            }
            if !creds.username.is_empty() {
                req = req.basic_auth(&creds.username, Some(&creds.password));
            }
            let body: Value = req.send().await.map_err(|e| Self::unreachable(host, e))?.json().await.map_err(|e| Self::unreachable(host, e))?;
            let token = body["token"].as_str().or(body["access_token"].as_str()).unwrap_or_default().to_string();
            if token.is_empty() {
                return Err(BuildError::user(format!("registry {host} refused the credentials for {scope}")));
            }
            self.tokens.lock().unwrap().push((scope.to_string(), token.clone()));
            build().bearer_auth(token)
        } else {
            build().basic_auth(&creds.username, Some(&creds.password))
        };
        let resp = again.send().await.map_err(|e| Self::unreachable(host, e))?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED || resp.status() == reqwest::StatusCode::FORBIDDEN {
            return Err(BuildError::user(format!("registry {host} refused access to {scope}: HTTP {}", resp.status())));
        }
        Ok(resp)
    }

    async fn check(resp: reqwest::Response, what: &str) -> Result<reqwest::Response, BuildError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let msg = format!("{what}: HTTP {status}: {}", body.chars().take(300).collect::<String>());
        Err(if status.is_server_error() { BuildError::transient(msg) } else { BuildError::internal(msg) })
    }

    fn pull_scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }
    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    /// The manifest at `reference` (tag or digest), or None if the registry has none.
    pub async fn manifest(&self, host: &str, repo: &str, reference: &str) -> Result<Option<Manifest>, BuildError> {
        let url = self.url(host, &format!("{repo}/manifests/{reference}"));
        let resp = self.send(host, &Self::pull_scope(repo), || self.http.get(&url).header("Accept", ACCEPT_MANIFESTS)).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::check(resp, &format!("reading manifest {host}/{repo}:{reference}")).await?;
        let media_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or(DOCKER_MANIFEST).to_string();
        let bytes = resp.bytes().await.map_err(|e| Self::unreachable(host, e))?.to_vec();
        let digest = sha256_digest(&bytes);
        Ok(Some(Manifest { bytes, media_type, digest }))
    }

    pub async fn blob(&self, host: &str, repo: &str, digest: &str) -> Result<Vec<u8>, BuildError> {
        let url = self.url(host, &format!("{repo}/blobs/{digest}"));
        let resp = self.send(host, &Self::pull_scope(repo), || self.http.get(&url)).await?;
        let resp = Self::check(resp, &format!("reading blob {digest} of {host}/{repo}")).await?;
        let bytes = resp.bytes().await.map_err(|e| Self::unreachable(host, e))?.to_vec();
        if sha256_digest(&bytes) != digest {
            return Err(BuildError::transient(format!("blob {digest} of {host}/{repo} arrived corrupted")));
        }
        Ok(bytes)
    }

    pub async fn has_blob(&self, host: &str, repo: &str, digest: &str) -> Result<bool, BuildError> {
        let url = self.url(host, &format!("{repo}/blobs/{digest}"));
        let resp = self.send(host, &Self::pull_scope(repo), || self.http.head(&url)).await?;
        Ok(resp.status().is_success())
    }

    /// Uploads a blob unless the repository already has it; returns whether bytes were sent.
    pub async fn put_blob(&self, host: &str, repo: &str, bytes: &[u8]) -> Result<bool, BuildError> {
        let digest = sha256_digest(bytes);
        if self.has_blob(host, repo, &digest).await? {
            return Ok(false);
        }
        let scope = Self::push_scope(repo);
        let start = self.url(host, &format!("{repo}/blobs/uploads/"));
        let resp = self.send(host, &scope, || self.http.post(&start).header("Content-Length", "0")).await?;
        let resp = Self::check(resp, &format!("starting an upload to {host}/{repo}")).await?;
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let location = if location.starts_with("http") { location } else { format!("{}://{host}{location}", self.scheme(host)) };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let body = bytes.to_vec();
        let resp = self.send(host, &scope, || self.http.put(&put).header("Content-Type", "application/octet-stream").body(body.clone())).await?;
        Self::check(resp, &format!("uploading blob {digest} to {host}/{repo}")).await?;
        Ok(true)
    }

    /// Stores a manifest under `reference` (a tag or its digest); returns its digest.
    pub async fn put_manifest(&self, host: &str, repo: &str, reference: &str, bytes: &[u8], media_type: &str) -> Result<String, BuildError> {
        let url = self.url(host, &format!("{repo}/manifests/{reference}"));
        let body = bytes.to_vec();
        let resp = self.send(host, &Self::push_scope(repo), || self.http.put(&url).header("Content-Type", media_type).body(body.clone())).await?;
        Self::check(resp, &format!("writing manifest {host}/{repo}:{reference}")).await?;
        Ok(sha256_digest(bytes))
    }

    /// Whether the registry answers at all.
    pub async fn ping(&self, host: &str) -> Result<(), BuildError> {
        let url = self.url(host, "");
        self.http.get(&url).send().await.map_err(|e| Self::unreachable(host, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_parse() {
        let r = ImageRef::parse("127.0.0.1:5000/apprunner-runtimes/python3:3.8.16-build").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()), ("127.0.0.1:5000", "apprunner-runtimes/python3", Some("3.8.16-build")));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("registry.example.com/apps/web@{d}")).unwrap();
        assert_eq!(r.reference(), d);
        assert!(ImageRef::parse("python:3").is_err());
        assert!(ImageRef::parse("127.0.0.1:5000/Apps/web").unwrap_err().contains("expected REGISTRY/REPOSITORY"));
    }

    #[test]
    fn names_become_repository_components() {
        assert_eq!(repository_component(".tmpAb3"), "tmpab3");
        assert_eq!(repository_component("My Service!"), "my-service");
        assert_eq!(repository_component("..."), "app");
    }
}
