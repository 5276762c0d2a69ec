//! A manifest as a registry stores it, and what the client reads out of one.

use super::{RegistryError, Result};
use apprunner_core::digest::Digest;
use apprunner_core::oci::{self, ImageIndex, ImageManifest};

/// A manifest as stored: its bytes (digests are over these), media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    /// Whether this is an index (or a Docker manifest list) of manifests rather than an image.
    pub fn is_index(&self) -> bool {
        self.media_type.contains("index") || self.media_type.contains("manifest.list")
    }

    /// The image index this is.
    pub fn index(&self) -> Result<ImageIndex> {
        self.parse("image index")
    }

    /// The image manifest this is.
    pub fn image(&self) -> Result<ImageManifest> {
        self.parse("image manifest")
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, kind: &'static str) -> Result<T> {
        Ok(oci::parse(&self.bytes, kind, &format!("manifest {}", self.digest))?)
    }

    /// In an index: the digest of the image manifest for `os`/`architecture` (attestation
    /// manifests name the platform `unknown/unknown`).
    pub fn platform_manifest(&self, os: &str, architecture: &str) -> Result<Digest> {
        self.index()?
            .for_platform(os, architecture)
            .map(|d| d.digest.clone())
            .ok_or_else(|| RegistryError::Malformed(format!("index {} has no {os}/{architecture} image", self.digest)))
    }

    pub fn config_digest(&self) -> Result<Digest> {
        Ok(self.image()?.config.digest)
    }
}

impl From<apprunner_core::oci::Malformed> for RegistryError {
    fn from(e: apprunner_core::oci::Malformed) -> Self {
        RegistryError::Malformed(e.to_string())
    }
}
