//! A manifest as a registry stores it, and what the client reads out of one.

use super::{RegistryError, Result};
use serde_json::Value;

/// A manifest as stored: its bytes (digests are over these), media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: String,
}

impl Manifest {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.bytes)
            .map_err(|e| RegistryError::Malformed(format!("registry returned a manifest that is not JSON: {e}")))
    }
    /// Whether this is an index (or a Docker manifest list) of manifests rather than an image.
    pub fn is_index(&self) -> bool {
        self.media_type.contains("index") || self.media_type.contains("manifest.list")
    }

    /// In an index: the digest of the image manifest for `os`/`architecture` (attestation
    /// manifests name the platform `unknown/unknown`).
    pub fn platform_manifest(&self, os: &str, architecture: &str) -> Result<String> {
        let json = self.json()?;
        json["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == architecture)
            .and_then(|m| m["digest"].as_str())
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Malformed(format!("index {} has no {os}/{architecture} image", self.digest)))
    }

    pub fn config_digest(&self) -> Result<String> {
        self.json()?["config"]["digest"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RegistryError::Malformed("manifest has no config digest".into()))
    }
}
