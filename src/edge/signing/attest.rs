//! Signed statements beside an image, where cosign keeps them: the attestation manifest at the
//! tag `sha256-<hex>.att` of the image's repository, one DSSE envelope per layer. Written with the
//! worker's key; read back for what a given public key signed (`verify --key`, a redeploy that
//! carries its image's provenance).

use super::{PublicKey, Signer};
use crate::core::cosign::{self, SimpleSigning};
use crate::core::digest::Digest;
use crate::core::image_ref::Repo;
use crate::core::media_types::OCI_MANIFEST;
use crate::core::oci::dsse::{Envelope, IN_TOTO_PAYLOAD};
use crate::core::oci::{self, Descriptor, Statement};
use crate::edge::registry::{Registry, RegistryError};

/// The largest envelope read back: an SBOM of a few thousand packages is a few MiB.
const MAX_ENVELOPE: u64 = 32 << 20;
/// The largest signature payload read back: cosign's is a few hundred bytes.
const MAX_PAYLOAD: u64 = 64 << 10;

/// Why an image has no statement of a type signed by a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsigned {
    #[error("it has no attestations (no {0} tag)")]
    NoAttestations(String),
    #[error("its attestations hold no {0} statement")]
    NoneOfType(String),
    #[error("no {0} statement in its attestations is signed by key {1}")]
    NotByKey(String, String),
    #[error("its {0} statement signed by key {1} is about another image")]
    OtherSubject(String, String),
}

impl Signer {
    /// Signs each of `statements` (predicate type, statement bytes) about the manifest `digest`
    /// of `at`, and writes them to its attestation manifest: beside the statements already there,
    /// replacing this key's earlier ones of the same types. Returns the attestation tag.
    pub async fn attest(
        &self,
        registry: &Registry,
        at: &Repo,
        digest: &Digest,
        statements: &[(&str, &[u8])],
    ) -> Result<String, RegistryError> {
        let tag = cosign::attestation_tag(digest);
        let mut layers = Vec::new();
        if let Some(existing) = registry.manifest(at, &tag).await? {
            let key = self.public_key();
            for layer in existing.image()?.layers {
                let replaced = match predicate_type(&layer) {
                    Some(t) if statements.iter().any(|(ours, _)| *ours == t) => {
                        envelope(registry, at, &layer).await?.is_some_and(|e| signed_by(&e, &key))
                    }
                    _ => false,
                };
                if !replaced {
                    layers.push(layer);
                }
            }
        }
        // Each envelope holds a new signature (ECDSA's nonce), so it is new to the registry:
        // uploaded without asking, all at once.
        let envelopes: Vec<(&str, Vec<u8>)> = statements.iter().map(|(t, s)| (*t, self.envelope(s))).collect();
        layers.extend(envelopes.iter().map(|(t, e)| cosign::attestation_layer(e, t)));
        let (manifest, config) = cosign::manifest(layers);
        let uploads = futures_util::future::try_join_all(envelopes.iter().map(|(_, e)| registry.upload_blob(at, e)));
        tokio::try_join!(uploads, registry.put_blob(at, &config))?;
        registry.put_manifest(at, &tag, &oci::to_bytes(&manifest), OCI_MANIFEST).await?;
        Ok(tag)
    }
}

fn predicate_type(layer: &Descriptor) -> Option<&str> {
    layer.annotation(cosign::PREDICATE_TYPE_ANNOTATION)
}

/// The envelope in `layer`, when it is one of a size worth reading.
async fn envelope(registry: &Registry, at: &Repo, layer: &Descriptor) -> Result<Option<Envelope>, RegistryError> {
    if layer.size > MAX_ENVELOPE {
        return Ok(None);
    }
    Ok(serde_json::from_slice(&registry.blob(at, &layer.digest).await?).ok())
}

/// Whether one of the envelope's signatures is `key`'s over its in-toto payload.
fn signed_by(envelope: &Envelope, key: &PublicKey) -> bool {
    let Ok(signed) = envelope.signed_bytes() else { return false };
    envelope.payload_type == IN_TOTO_PAYLOAD && envelope.signatures.iter().any(|s| key.verifies(&signed, &s.sig))
}

/// The statement of `predicate_type` about the manifest `digest` of `at` that `key` signed: its
/// bytes, or why there is none.
pub async fn signed_statement(
    registry: &Registry,
    at: &Repo,
    digest: &Digest,
    predicate_type_wanted: &str,
    key: &PublicKey,
) -> Result<Result<Vec<u8>, Unsigned>, RegistryError> {
    let tag = cosign::attestation_tag(digest);
    let Some(existing) = registry.manifest(at, &tag).await? else { return Ok(Err(Unsigned::NoAttestations(tag))) };
    let (wanted, fingerprint) = (predicate_type_wanted.to_string(), key.fingerprint.clone());
    let mut why = Unsigned::NoneOfType(wanted.clone());
    for layer in existing.image()?.layers.iter().filter(|l| predicate_type(l) == Some(predicate_type_wanted)) {
        why = Unsigned::NotByKey(wanted.clone(), fingerprint.clone());
        let Some(envelope) = envelope(registry, at, layer).await?.filter(|e| signed_by(e, key)) else { continue };
        let Ok(payload) = envelope.payload_bytes() else { continue };
        let about_it = serde_json::from_slice::<Statement<serde_json::Value>>(&payload).is_ok_and(|s| {
            s.predicate_type == predicate_type_wanted
                && s.subject.iter().any(|s| s.digest.get("sha256").map(String::as_str) == Some(digest.hex()))
        });
        if about_it {
            return Ok(Ok(payload));
        }
        why = Unsigned::OtherSubject(wanted.clone(), fingerprint.clone());
    }
    Ok(Err(why))
}

/// Whether the manifest `digest` of `at` has a cosign signature by `key` naming it.
pub async fn image_signed(
    registry: &Registry,
    at: &Repo,
    digest: &Digest,
    key: &PublicKey,
) -> Result<bool, RegistryError> {
    let Some(existing) = registry.manifest(at, &cosign::signature_tag(digest)).await? else { return Ok(false) };
    for layer in existing.image()?.layers.iter().filter(|l| l.size <= MAX_PAYLOAD) {
        let Some(sig) = layer.annotation(cosign::SIGNATURE_ANNOTATION) else { continue };
        let payload = registry.blob(at, &layer.digest).await?;
        let names_it = serde_json::from_slice::<SimpleSigning>(&payload)
            .is_ok_and(|p| p.critical.image.docker_manifest_digest == *digest);
        if names_it && key.verifies(&payload, sig) {
            return Ok(true);
        }
    }
    Ok(false)
}
