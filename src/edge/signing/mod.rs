//! Signing images and attestations in cosign's format with the operator's key: an ECDSA P-256
//! private key in PEM PKCS#8 (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`).
//! The key stays in this process: it is never written to a log line, a label, an LLB definition,
//! a build step or an event; what is shown of it is its public key's fingerprint. `attest` writes
//! and reads the signed statements; `PublicKey` checks what a key signed.

mod attest;
mod public_key;

pub use attest::{image_signed, signed_statement, Unsigned};
pub use public_key::PublicKey;

use crate::core::cosign::{self, SignatureLayer};
use crate::core::digest::Digest;
use crate::core::image_ref::Repo;
use crate::core::media_types::OCI_MANIFEST;
use crate::core::oci;
use crate::edge::registry::{Registry, RegistryError};
use base64::Engine as _;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use std::path::Path;
use std::sync::Arc;

/// The operator's signing key, read once.
#[derive(Clone)]
pub struct Signer {
    key: Arc<EcdsaKeyPair>,
    /// `SHA256:<hex>` of the public key's DER: how logs name the key.
    pub fingerprint: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.fingerprint)
    }
}

/// Why a signing key could not be used; never holds any of the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {why}")]
    Unreadable { path: String, why: String },
    #[error("signing key {path}: {why}; give an ECDSA P-256 private key in PEM PKCS#8 (-----BEGIN PRIVATE KEY-----), e.g. from `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out signing.pem`")]
    NotP256Pkcs8 { path: String, why: &'static str },
}

/// The largest key file read: a P-256 PKCS#8 PEM is about 240 bytes, its public key 180.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// The text of the key file at `path`: a regular file (not through a symlink) of at most
/// `MAX_KEY_FILE` bytes; else why not, quoting none of it.
fn read_key_file(path: &Path) -> Result<String, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(format!("{} bytes; a key file is under {MAX_KEY_FILE}", meta.len()));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

impl Signer {
    /// Reads the key at `path`: a regular file (not through a symlink), PEM PKCS#8, P-256.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let text = read_key_file(path).map_err(|why| KeyError::Unreadable { path: shown.clone(), why })?;
        Self::from_pem(&text).map_err(|why| KeyError::NotP256Pkcs8 { path: shown.clone(), why })
    }

    /// The key in `pem`; what is wrong with it otherwise, in words that quote none of it.
    pub fn from_pem(pem: &str) -> Result<Self, &'static str> {
        if pem.contains("-----BEGIN ENCRYPTED") {
            return Err("an encrypted key; give it decrypted (openssl pkey -in KEY -out signing.pem)");
        }
        let body = pem
            .split_once("-----BEGIN PRIVATE KEY-----")
            .and_then(|(_, rest)| rest.split_once("-----END PRIVATE KEY-----"))
            .map(|(body, _)| body.split_whitespace().collect::<String>())
            .ok_or("no PRIVATE KEY block")?;
        let der = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| "the PEM block is not base64")?;
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
            .map_err(|_| "not an ECDSA P-256 key in PKCS#8")?;
        let fingerprint = PublicKey::of_point(key.public_key().as_ref()).fingerprint;
        Ok(Self { key: Arc::new(key), fingerprint })
    }

    /// The public half: what checks this key's signatures.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::of_point(self.key.public_key().as_ref())
    }

    /// `statement` (an in-toto statement's bytes) in a DSSE envelope signed with this key.
    pub fn envelope(&self, statement: &[u8]) -> Vec<u8> {
        let signed = crate::core::oci::dsse::pae(crate::core::oci::dsse::IN_TOTO_PAYLOAD, statement);
        crate::core::oci::to_bytes(&crate::core::oci::dsse::Envelope::in_toto(statement, self.sign(&signed)))
    }

    /// The signature (base64 of ASN.1 DER) of `payload`.
    fn sign(&self, payload: &[u8]) -> String {
        let rng = ring::rand::SystemRandom::new();
        // Signing fails only if the system's randomness does, which nothing here can mend.
        let sig = self.key.sign(&rng, payload).expect("the system's randomness answers");
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }

    /// Whether `signature_b64` is this key's over `payload`.
    fn signed(&self, payload: &[u8], signature_b64: &str) -> bool {
        self.public_key().verifies(payload, signature_b64)
    }

    /// Signs the manifest `digest` of `at` (an index or an image): its signature manifest at
    /// `sha256-<hex>.sig` gets this key's signature beside any already there (none twice).
    /// Returns the signature tag.
    pub async fn sign_image(&self, registry: &Registry, at: &Repo, digest: &Digest) -> Result<String, RegistryError> {
        let tag = cosign::signature_tag(digest);
        let payload = cosign::payload(&format!("{}/{}", at.registry, at.repository), digest);
        let mut layers = match registry.manifest(at, &tag).await? {
            Some(existing) => existing.image()?.layers,
            None => Vec::new(),
        };
        let payload_digest = crate::core::digest::sha256_digest(&payload);
        let ours = |l: &oci::Descriptor| {
            l.digest == payload_digest
                && l.annotation(cosign::SIGNATURE_ANNOTATION).is_some_and(|s| self.signed(&payload, s))
        };
        if layers.iter().any(ours) {
            return Ok(tag);
        }
        layers.push(SignatureLayer::new(&payload, self.sign(&payload)).descriptor());
        let (manifest, config) = cosign::manifest(layers);
        tokio::try_join!(registry.put_blob(at, &payload), registry.put_blob(at, &config))?;
        registry.put_manifest(at, &tag, &oci::to_bytes(&manifest), OCI_MANIFEST).await?;
        Ok(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_p256_pkcs8_are_refused_without_quoting_them() {
        assert_eq!(Signer::from_pem("hello").unwrap_err(), "no PRIVATE KEY block");
        let bad = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
        assert_eq!(Signer::from_pem(bad).unwrap_err(), "not an ECDSA P-256 key in PKCS#8");
        assert!(Signer::from_pem("-----BEGIN ENCRYPTED PRIVATE KEY-----").unwrap_err().contains("encrypted"));
    }

    #[test]
    fn a_p256_key_signs_and_checks_its_own_signatures() {
        // A throwaway key made for this test with openssl genpkey.
        let pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRXyLzJHZd+/1AWLa\nIvnQIjTv2DqgW4altqT9A/tS31WhRANCAAS5j6FFlj/gAM/VM2klkdJYuFQqbLLF\nwKp2mh4u/QzaG5zGZWKuDJRJqPCKWhLccjiaftQUMIH48Jz8gXwJSKxr\n-----END PRIVATE KEY-----\n";
        let signer = Signer::from_pem(pem).unwrap();
        assert!(signer.fingerprint.starts_with("SHA256:"));
        assert!(!format!("{signer:?}").contains("MIGHAgEA"));
        let sig = signer.sign(b"payload");
        assert!(signer.signed(b"payload", &sig));
        assert!(!signer.signed(b"other", &sig));
        // Its public half is what openssl pkey -pubout gives.
        let public = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEuY+hRZY/4ADP1TNpJZHSWLhUKmyy\nxcCqdpoeLv0M2hucxmVirgyUSajwiloS3HI4mn7UFDCB+PCc/IF8CUisaw==\n-----END PUBLIC KEY-----\n";
        assert_eq!(signer.public_key(), PublicKey::from_pem(public).unwrap());
        // A statement's envelope is signed over DSSE's encoding, not the statement alone.
        let envelope: crate::core::oci::dsse::Envelope = serde_json::from_slice(&signer.envelope(b"{}")).unwrap();
        assert!(signer.public_key().verifies(&envelope.signed_bytes().unwrap(), &envelope.signatures[0].sig));
        assert!(!signer.public_key().verifies(b"{}", &envelope.signatures[0].sig));
    }
}
