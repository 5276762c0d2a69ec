//! Image reuse: a build whose inputs are exactly those of the image already at its target tag
//! gets that image again, under a new index that names this deployment, instead of a solve.
//!
//! The build key is the digest of everything that decides the image's bytes: the LLB of every
//! solve (which pins the source, the CA bundle and the runtime images by digest), the exporter's
//! attributes (the image config, the annotations, the media types) and the attestations asked
//! for, and the repository. Left out: the tag and what is true of one deployment only (its
//! operation id), which is all a reused image's new index changes. A hit means `BuildKit` would
//! have found every step cached: the same thing its cache, or the fleet cache, would give.
//! Pure: bytes in, bytes out.

use crate::labels;
use crate::media_types::OCI_INDEX;
use crate::oci::{self, ImageIndex};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What the key covers changes with this; an older key then never matches.
const KEY_VERSION: &[u8] = b"apprunner-build build key v1";

/// The build key of an image solve (hex sha256).
///
/// `definitions`: the LLB bytes of every solve of the build, in a fixed order; `exporter`: the
/// image exporter's attributes; `frontend`: the solve's frontend attributes (attestations);
/// `deployment`: the annotations true of this deployment only, left out of the key.
pub fn build_key<'a>(
    repository: &str,
    definitions: impl IntoIterator<Item = &'a [u8]>,
    exporter: &BTreeMap<String, String>,
    frontend: &BTreeMap<String, String>,
    deployment: &BTreeMap<String, String>,
) -> String {
    let mut h = Sha256::new();
    // Every field is length-prefixed, so no two different inputs hash the same bytes.
    let mut field = |bytes: &[u8]| {
        h.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(bytes);
    };
    field(KEY_VERSION);
    field(repository.as_bytes());
    for d in definitions {
        field(b"llb");
        field(d);
    }
    let per_deployment = |k: &str| {
        k == "name"
            || k.strip_prefix("annotation-index.").is_some_and(|a| deployment.contains_key(a) || a == labels::BUILD_KEY)
    };
    for (k, v) in exporter.iter().filter(|(k, _)| !per_deployment(k)) {
        field(b"exporter");
        field(k.as_bytes());
        field(v.as_bytes());
    }
    for (k, v) in frontend {
        field(b"frontend");
        field(k.as_bytes());
        field(v.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Why the image at the target tag cannot be reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The tag holds an image index whose build key is another (or none).
    OtherInputs,
    /// The tag holds something other than an OCI index (an image pushed by other means).
    NotAnIndex,
}

/// An image to reuse: the index to write for this deployment, and the deployment that built it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reuse {
    pub index: Vec<u8>,
    pub built_by: Option<String>,
}

/// The index to write for this deployment when `existing` (the index at the target tag) was
/// built with `key`: the same manifests, its annotations with `deployment`'s over them.
pub fn reuse(existing: &[u8], key: &str, deployment: &BTreeMap<String, String>) -> Result<Reuse, Miss> {
    let Ok(mut index) = serde_json::from_slice::<ImageIndex>(existing) else {
        return Err(Miss::NotAnIndex);
    };
    if index.media_type.as_deref() != Some(OCI_INDEX) {
        return Err(Miss::NotAnIndex);
    }
    let mut annotations = index.annotations();
    if annotations.get(labels::BUILD_KEY).map(String::as_str) != Some(key) {
        return Err(Miss::OtherInputs);
    }
    let built_by = annotations.get(labels::OPERATION_ID).cloned();
    annotations.extend(deployment.iter().map(|(k, v)| (k.clone(), v.clone())));
    index.annotations = Some(annotations);
    // Every map is ordered, so the same index and deployment give the same bytes.
    Ok(Reuse { index: oci::to_bytes(&index), built_by })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    fn deployment(op: &str) -> BTreeMap<String, String> {
        attrs(&[(labels::OPERATION_ID, op)])
    }

    fn key(repo: &str, llb: &[u8], exporter: &[(&str, &str)], op: &str) -> String {
        let frontend = attrs(&[("attest:provenance", "mode=max")]);
        build_key(repo, [llb], &attrs(exporter), &frontend, &deployment(op))
    }

    #[test]
    fn the_key_ignores_the_tag_and_the_deployment_but_nothing_else() {
        let op_annotation = format!("annotation-index.{}", labels::OPERATION_ID);
        // One build's key, with what varies per build given.
        let of = |repo: &str, llb: &[u8], tag: &str, op: &str, push: &str| {
            key(repo, llb, &[("name", tag), (&op_annotation, op), ("push", push)], op)
        };
        let base = of("r/app", b"llb", "r/app:1", "op-1", "true");
        assert_eq!(base, of("r/app", b"llb", "r/app:2", "op-2", "true"), "another tag and deployment");
        assert_ne!(base, of("r/other", b"llb", "r/app:1", "op-1", "true"), "another repository");
        assert_ne!(base, of("r/app", b"llc", "r/app:1", "op-1", "true"), "another LLB");
        assert_ne!(base, of("r/app", b"llb", "r/app:1", "op-1", "false"), "another exporter attribute");
        // A field boundary moved is another input.
        assert_ne!(key("r/app", b"llb", &[("ab", "c")], "op"), key("r/app", b"llb", &[("a", "bc")], "op"));
    }

    #[test]
    fn only_an_index_with_the_same_key_is_reused_and_it_names_the_new_deployment() {
        let index = |key: &str| {
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": crate::digest::Digest::of(b"aa"), "size": 1}],
                "annotations": {labels::BUILD_KEY: key, labels::OPERATION_ID: "op-1", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
            })
            .to_string()
            .into_bytes()
        };
        let reused = reuse(&index("k1"), "k1", &deployment("op-2")).unwrap();
        assert_eq!(reused.built_by.as_deref(), Some("op-1"));
        let json: serde_json::Value = serde_json::from_slice(&reused.index).unwrap();
        assert_eq!(json["annotations"][labels::OPERATION_ID], "op-2");
        assert_eq!(json["annotations"][labels::BUILD_KEY], "k1");
        assert_eq!(json["annotations"]["org.opencontainers.image.created"], "2026-01-01T00:00:00Z");
        assert_eq!(json["manifests"][0]["digest"], crate::digest::Digest::of(b"aa").as_str());
        assert_eq!(reused, reuse(&index("k1"), "k1", &deployment("op-2")).unwrap(), "the same bytes each time");
        assert_eq!(reuse(&index("k1"), "k2", &deployment("op-2")), Err(Miss::OtherInputs));
        let manifest = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json"}).to_string();
        assert_eq!(reuse(manifest.as_bytes(), "k1", &deployment("op-2")), Err(Miss::NotAnIndex));
        assert_eq!(reuse(b"not json", "k1", &deployment("op-2")), Err(Miss::NotAnIndex));
    }
}
