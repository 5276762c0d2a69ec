//! Image signatures in cosign's format, as documents: what is signed (the simple-signing
//! payload naming the image's digest), and the signature manifest beside the image, at the tag
//! `sha256-<hex>.sig`, with one layer per signature. The signing itself (a key, randomness) is
//! the service crate's; here is only what it writes, so `cosign verify` reads it.

use crate::documents::{Descriptor, ImageManifest};
use crate::media_types::{COSIGN_SIMPLE_SIGNING, OCI_CONFIG, OCI_MANIFEST};
use std::collections::BTreeMap;

/// The annotation of a signature layer that holds the signature (base64 of ASN.1 DER ECDSA).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// The tag of the signatures of the manifest `digest` (`sha256:…`): `sha256-….sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// What is signed for the image `digest` in `repository` (`registry/path`): cosign's
/// simple-signing payload, byte for byte as cosign writes it.
pub fn payload(repository: &str, digest: &str) -> Vec<u8> {
    let doc = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": null,
    });
    crate::documents::to_bytes(&doc)
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

/// The config blob of a signature manifest whose layers are `layers`, as cosign writes it.
pub fn config(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let history: Vec<serde_json::Value> =
        layers.iter().map(|_| serde_json::json!({"created": "0001-01-01T00:00:00Z"})).collect();
    crate::documents::to_bytes(&serde_json::json!({
        "architecture": "",
        "created": "0001-01-01T00:00:00Z",
        "history": history,
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }))
}

/// The signature manifest holding `layers` (the signatures already there, then the new one),
/// with its config blob.
pub fn manifest(layers: Vec<Descriptor>) -> (ImageManifest, Vec<u8>) {
    let config = config(&layers);
    (ImageManifest::new(OCI_MANIFEST, Descriptor::of(OCI_CONFIG, &config), layers), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_and_tag_are_cosigns() {
        let digest = "sha256:bcd9bfa958fcc9c4b263bea6dea33bef88b7a92a6984691030b6f5b4492a564c";
        assert_eq!(
            signature_tag(digest),
            "sha256-bcd9bfa958fcc9c4b263bea6dea33bef88b7a92a6984691030b6f5b4492a564c.sig"
        );
        // What cosign 2.5 pushed for this image (its digest is the payload's in that manifest).
        let cosigns = r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/apprunner-apps/repro-py"},"image":{"docker-manifest-digest":"sha256:bcd9bfa958fcc9c4b263bea6dea33bef88b7a92a6984691030b6f5b4492a564c"},"type":"cosign container image signature"},"optional":null}"#;
        assert_eq!(String::from_utf8(payload("127.0.0.1:5000/apprunner-apps/repro-py", digest)).unwrap(), cosigns);
        let layer = SignatureLayer::new(cosigns.as_bytes(), "c2ln".into()).descriptor();
        assert_eq!(layer.digest, "sha256:0056ad498767b084e30d37ba0969416f008656c3ff8d8f777ca524ba09418817");
        let (_, config) = manifest(vec![layer]);
        assert_eq!(
            String::from_utf8(config).unwrap(),
            r#"{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["sha256:0056ad498767b084e30d37ba0969416f008656c3ff8d8f777ca524ba09418817"]},"config":{}}"#
        );
    }
}
