//! What a moved image says of itself: its provenance (the old statement about the new
//! manifest, its run image material swapped) and the attestation manifest that carries it.

use super::{Movable, RebasedImage, RunImage, PREDICATE_TYPE, REBASE_METADATA, SLSA_V02};
use crate::digest::{sha256_digest, Digest};
use crate::media_types::{IN_TOTO, OCI_CONFIG, OCI_MANIFEST};
use crate::oci::{self, Descriptor, ImageConfig, ImageManifest, Material, Predicate, Statement, Subject};
use serde::Serialize;
use std::collections::BTreeMap;

/// The provenance of the moved image: the old statement (what `BuildKit` recorded of the build)
/// about the new manifest, its run image material swapped, and where it was rebased from.
pub fn rebased_provenance(
    old: Option<&Statement>,
    subject_name: &str,
    rebased: &RebasedImage,
    old_digest: &Digest,
    from: &Movable,
    new_run: &RunImage,
    to: &str,
) -> Statement {
    let sha256 = Digest::by_algorithm;
    let new_material =
        Material { uri: purl(&new_run.reference, Some(new_run.digest.as_str())), digest: sha256(&new_run.digest) };
    let mut statement = old.cloned().unwrap_or_else(|| {
        let mut predicate = Predicate::default();
        predicate.other.insert("builder".into(), document_value(&Builder { id: String::new() }));
        predicate.other.insert("buildType".into(), REBASE_METADATA.into());
        Statement::v01(SLSA_V02, vec![], predicate)
    });
    statement.subject = vec![Subject::at(subject_name, &rebased.manifest_digest)];
    let old_base = sha256(&from.base_digest);
    for m in &mut statement.predicate.materials {
        if m.digest.get("sha256") == old_base.get("sha256") {
            *m = new_material.clone();
        }
    }
    if !statement.predicate.materials.contains(&new_material) {
        statement.predicate.materials.push(new_material);
    }
    let rebase = RebaseMetadata {
        rebased_from: RebasedFrom {
            digest: old_digest.clone(),
            runtime: from.runtime.clone(),
            runtime_version: from.from_version.clone(),
            run_image: from.base_name.clone(),
        },
        runtime_version: to.to_string(),
        run_image: new_run.reference.clone(),
    };
    statement.predicate.metadata.insert(REBASE_METADATA.into(), document_value(&rebase));
    statement
}

/// A builder as SLSA v0.2 names one; a statement made here has no builder of its own.
#[derive(Serialize)]
struct Builder {
    id: String,
}

/// What a rebase adds to the provenance's metadata: where the image came from, where it went.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RebaseMetadata {
    rebased_from: RebasedFrom,
    runtime_version: String,
    run_image: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RebasedFrom {
    digest: Digest,
    runtime: String,
    runtime_version: String,
    run_image: String,
}

/// A typed part of a document, as the value the document's open fields hold.
fn document_value(part: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(part).expect("a document part serialises")
}

/// An image as a package URL, the way `BuildKit`'s provenance names its materials and subject:
/// `pkg:docker/127.0.0.1%3A5000/repo@tag?digest=sha256:…&platform=linux%2Famd64`.
pub fn purl(reference: &str, digest: Option<&str>) -> String {
    let (name, tag) = crate::image_ref::split_tag(reference.split('@').next().unwrap_or(reference));
    let version = tag.map(|t| format!("@{t}")).unwrap_or_default();
    let digest = digest.map(|d| format!("digest={d}&")).unwrap_or_default();
    format!("pkg:docker/{}{version}?{digest}platform=linux%2Famd64", name.replacen(':', "%3A", 1))
}

/// The attestation manifest for `statement` (its blobs: config, then the statement).
pub struct Attestation {
    pub statement: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

pub fn attestation(statement: &Statement) -> Attestation {
    let statement_bytes = oci::to_bytes(statement);
    let statement_digest = sha256_digest(&statement_bytes);
    let config = oci::to_bytes(&ImageConfig {
        architecture: "unknown".into(),
        os: "unknown".into(),
        config: oci::ContainerConfig::default(),
        rootfs: oci::RootFs::layers(vec![statement_digest]),
        history: None,
        other: oci::Other::new(),
    });
    let mut layer = Descriptor::of(IN_TOTO, &statement_bytes);
    layer.annotations = Some(BTreeMap::from([(PREDICATE_TYPE.to_string(), statement.predicate_type.clone())]));
    let manifest = ImageManifest::new(OCI_MANIFEST, Descriptor::of(OCI_CONFIG, &config), vec![layer]);
    Attestation { statement: statement_bytes, config, manifest: oci::to_bytes(&manifest) }
}
