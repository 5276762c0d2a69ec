//! Blobs at a registry: read (checked against their digest), looked for, uploaded, mounted
//! from another repository of the same registry, or carried over from another.

use super::{Registry, RegistryError, Result};
use apprunner_core::digest::Digest;
use apprunner_core::image_ref::Repo;

/// Blobs up to this size are sent in the request that starts their upload.
const SMALL_BLOB: usize = 64 * 1024;

impl Registry {
    pub async fn blob(&self, at: &Repo, digest: &Digest) -> Result<Vec<u8>> {
        let (host, repo) = (at.registry.as_str(), at.repository.as_str());
        let url = self.url(host, &format!("{repo}/blobs/{digest}"));
        let resp = self.send(host, &Self::pull_scope(repo), || self.http.get(&url)).await?;
        let resp = Self::check(resp, &format!("reading blob {digest} of {host}/{repo}")).await?;
        let bytes = resp.bytes().await.map_err(|e| Self::unreachable(host, &e))?.to_vec();
        if Digest::of(&bytes) != *digest {
            return Err(RegistryError::Corrupt { digest: digest.clone(), image: format!("{host}/{repo}") });
        }
        Ok(bytes)
    }

    pub async fn has_blob(&self, at: &Repo, digest: &Digest) -> Result<bool> {
        let (host, repo) = (at.registry.as_str(), at.repository.as_str());
        let url = self.url(host, &format!("{repo}/blobs/{digest}"));
        let resp = self.send(host, &Self::pull_scope(repo), || self.http.head(&url)).await?;
        Ok(resp.status().is_success())
    }

    /// Uploads a blob unless the repository already has it; returns whether bytes were sent.
    pub async fn put_blob(&self, at: &Repo, bytes: &[u8]) -> Result<bool> {
        if self.has_blob(at, &Digest::of(bytes)).await? {
            return Ok(false);
        }
        self.upload_blob(at, bytes).await?;
        Ok(true)
    }

    /// Uploads a blob without asking first whether the repository has it: for bytes made new
    /// (a record naming its time), where the question would cost a request and always be no.
    /// A small one goes with the request that starts the upload, which a registry that takes
    /// single-request uploads completes at once (distribution 2.8 does not: it answers 202).
    pub async fn upload_blob(&self, at: &Repo, bytes: &[u8]) -> Result<()> {
        let (host, repo) = (at.registry.as_str(), at.repository.as_str());
        let digest = Digest::of(bytes);
        let small = bytes.len() <= SMALL_BLOB;
        let scope = Self::push_scope(repo);
        let start = if small {
            self.url(host, &format!("{repo}/blobs/uploads/?digest={digest}"))
        } else {
            self.url(host, &format!("{repo}/blobs/uploads/"))
        };
        let body = if small { bytes.to_vec() } else { Vec::new() };
        let resp = self
            .send(host, &scope, || {
                self.http
                    .post(&start)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Length", body.len())
                    .body(body.clone())
            })
            .await?;
        // 201: taken whole. 202: an upload was opened instead, for the bytes to follow.
        if resp.status() == reqwest::StatusCode::CREATED {
            return Ok(());
        }
        let resp = Self::check(resp, &format!("starting an upload to {host}/{repo}")).await?;
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let location =
            if location.starts_with("http") { location } else { format!("{}://{host}{location}", self.scheme(host)) };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={digest}");
        let body = bytes.to_vec();
        let resp = self
            .send(host, &scope, || {
                self.http.put(&put).header("Content-Type", "application/octet-stream").body(body.clone())
            })
            .await?;
        Self::check(resp, &format!("uploading blob {digest} to {host}/{repo}")).await?;
        Ok(())
    }

    /// Makes blob `digest` of `from` (on the same host) part of `repo` without sending it;
    /// false when the registry would not mount it (it then expects an upload).
    async fn mount_blob(&self, host: &str, repo: &str, digest: &Digest, from: &str) -> Result<bool> {
        let url = self.url(host, &format!("{repo}/blobs/uploads/?mount={digest}&from={from}"));
        let scope = format!("{} {}", Self::push_scope(repo), Self::pull_scope(from));
        let resp = self.send(host, &scope, || self.http.post(&url).header("Content-Length", "0")).await?;
        if resp.status() == reqwest::StatusCode::CREATED {
            return Ok(true);
        }
        let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
        Self::check(resp, &format!("mounting blob {digest} from {host}/{from} into {host}/{repo}")).await?;
        // The registry opened an upload instead; it is abandoned, and the blob copied.
        if let Some(location) = location {
            let location = if location.starts_with("http") {
                location
            } else {
                format!("{}://{host}{location}", self.scheme(host))
            };
            let _ = self.send(host, &Self::push_scope(repo), || self.http.delete(&location)).await;
        }
        Ok(false)
    }

    /// Makes blob `digest` of `from` part of `to`: nothing if it is there, a mount on the same
    /// host, a copy otherwise. Returns the bytes copied.
    pub async fn carry_blob(&self, to: &Repo, digest: &Digest, from: &Repo) -> Result<usize> {
        if self.has_blob(to, digest).await? {
            return Ok(0);
        }
        if from.registry == to.registry
            && self.mount_blob(&to.registry, &to.repository, digest, &from.repository).await?
        {
            return Ok(0);
        }
        let bytes = self.blob(from, digest).await?;
        self.put_blob(to, &bytes).await?;
        Ok(bytes.len())
    }
}
