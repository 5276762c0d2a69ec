//! Image signatures and attestations in cosign's format, as documents: what is signed (the
//! simple-signing payload naming the image's digest), the signature manifest beside the image,
//! at the tag `sha256-<hex>.sig`, with one layer per signature, and the attestation manifest at
//! `sha256-<hex>.att`, one layer per signed statement (a DSSE envelope). The signing itself (a key, randomness) is
//! the service crate's; here is only what it writes, so `cosign verify` reads it.

use crate::digest::Digest;
use crate::documents::{Descriptor, ImageManifest, RootFs};
use crate::media_types::{COSIGN_SIMPLE_SIGNING, DSSE_ENVELOPE, OCI_CONFIG, OCI_MANIFEST};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The annotation of a signature layer that holds the signature (base64 of ASN.1 DER ECDSA).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The tag of the signatures of the manifest `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// The tag of the attestations of the manifest `digest`: `sha256-<hex>.att`.
pub fn attestation_tag(digest: &Digest) -> String {
    format!("sha256-{}.att", digest.hex())
}

/// The annotation of an attestation layer that names its statement's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";

/// The layer of an attestation manifest holding `envelope` (a DSSE envelope's bytes) whose
/// statement is of `predicate_type`, annotated as cosign annotates it (its signature is inside
/// the envelope, so the signature annotation is empty).
pub fn attestation_layer(envelope: &[u8], predicate_type: &str) -> Descriptor {
    let mut d = Descriptor::of(DSSE_ENVELOPE, envelope);
    d.annotations = Some(BTreeMap::from([
        (SIGNATURE_ANNOTATION.to_string(), String::new()),
        (PREDICATE_TYPE_ANNOTATION.to_string(), predicate_type.to_string()),
    ]));
    d
}

/// cosign's simple-signing payload: what is signed. Its fields in cosign's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimpleSigning {
    pub critical: Critical,
    /// Claims beside the image; cosign writes `null` when there are none.
    pub optional: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Critical {
    pub identity: Identity,
    pub image: SignedImage,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: Digest,
}

/// What is signed for the image `digest` in `repository` (`registry/path`): cosign's
/// simple-signing payload, byte for byte as cosign writes it.
pub fn payload(repository: &str, digest: &Digest) -> Vec<u8> {
    crate::documents::to_bytes(&SimpleSigning {
        critical: Critical {
            identity: Identity { docker_reference: repository.to_string() },
            image: SignedImage { docker_manifest_digest: digest.clone() },
            kind: "cosign container image signature".into(),
        },
        optional: None,
    })
}

/// One signature: the payload's descriptor and the signature over it (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureLayer {
    pub payload: Descriptor,
    pub signature: String,
}

impl SignatureLayer {
    pub fn new(payload: &[u8], signature_b64: String) -> Self {
        Self { payload: Descriptor::of(COSIGN_SIMPLE_SIGNING, payload), signature: signature_b64 }
    }

    /// The layer as a signature manifest lists it.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = self.payload.clone();
        d.annotations = Some(BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), self.signature.clone())]));
        d
    }
}

/// The config blob of a signature manifest, as cosign writes it: an empty platform, the zero
/// time, a history entry and a diff id per layer. Its fields in cosign's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct SignatureConfig {
    architecture: &'static str,
    created: &'static str,
    history: Vec<Created>,
    os: &'static str,
    rootfs: RootFs,
    config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Created {
    created: &'static str,
}

/// The zero time, which cosign writes for a signature's config and history.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The config blob of a signature manifest whose layers are `layers`, as cosign writes it.
pub fn config(layers: &[Descriptor]) -> Vec<u8> {
    crate::documents::to_bytes(&SignatureConfig {
        architecture: "",
        created: ZERO_TIME,
        history: layers.iter().map(|_| Created { created: ZERO_TIME }).collect(),
        os: "",
        rootfs: RootFs::layers(layers.iter().map(|l| l.digest.to_string()).collect()),
        config: BTreeMap::new(),
    })
}

/// The signature (or attestation) manifest holding `layers` (those already there, then the new
/// ones), with its config blob.
pub fn manifest(layers: Vec<Descriptor>) -> (ImageManifest, Vec<u8>) {
    let config = config(&layers);
    (ImageManifest::new(OCI_MANIFEST, Descriptor::of(OCI_CONFIG, &config), layers), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_and_tag_are_cosigns() {
        let digest = Digest::parse("sha256:bcd9bfa958fcc9c4b263bea6dea33bef88b7a92a6984691030b6f5b4492a564c").unwrap();
        assert_eq!(
            signature_tag(&digest),
            "sha256-bcd9bfa958fcc9c4b263bea6dea33bef88b7a92a6984691030b6f5b4492a564c.sig"
        );
        // What cosign 2.5 pushed for this image (its digest is the payload's in that manifest).
        let cosigns = r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/apprunner-apps/repro-py"},"image":{"docker-manifest-digest":"sha256:bcd9bfa958fcc9c4b263bea6dea33bef88b7a92a6984691030b6f5b4492a564c"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(String::from_utf8(payload("127.0.0.1:5000/apprunner-apps/repro-py", &digest)).unwrap(), cosigns);
        let layer = SignatureLayer::new(cosigns.as_bytes(), "c2ln".into()).descriptor();
        assert_eq!(layer.digest, "sha256:0056ad498767b084e30d37ba0969416f008656c3ff8d8f777ca524ba09418817");
        let (_, config) = manifest(vec![layer]);
        assert_eq!(
            String::from_utf8(config).unwrap(),
            r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:0056ad498767b084e30d37ba0969416f008656c3ff8d8f777ca524ba09418817"]},"config":{}}"#
        );
    }
}
