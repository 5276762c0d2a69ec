//! Image reuse: the build key on the image exporter, and the image at the target tag taken
//! under a new index when it was built with the same key.

use super::narration::{Narration, ReusedFrom};
use super::prepare::Prepared;
use super::settings::Settings;
use crate::core::digest::Digest;
use crate::core::image_ref::ImageRef;
use crate::core::media_types::OCI_INDEX;
use crate::core::reuse;
use crate::edge::buildkit::{attestations, image_exporter, Exporter};
use crate::edge::registry::{is_plain_http, Registry};
use crate::error::BuildError;
use crate::log::DeploymentLog;
use std::collections::BTreeMap;

/// The image exporter and its attributes for `prepared`, with the build key (`core::reuse`) as an
/// annotation of the index.
pub(super) fn keyed_exporter(settings: &Settings, target: &ImageRef, prepared: &Prepared) -> Exporter {
    let plain_http = is_plain_http(&target.registry, &settings.insecure_registries);
    let mut exporter = image_exporter(target, &prepared.plan.image, plain_http);
    let solves = &prepared.solves;
    let key = reuse::build_key(
        &target.repository,
        std::iter::once(&solves.image).chain(&solves.post_build).map(|l| l.bytes.as_slice()),
        &exporter.attributes,
        &attestations(),
        &prepared.plan.image.deployment,
    );
    exporter.attributes.insert(build_key_attribute(), key);
    exporter
}

pub(super) fn build_key_attribute() -> String {
    format!("annotation-index.{}", crate::core::labels::BUILD_KEY)
}

/// The build key `keyed_exporter` put in `attrs`, if any.
pub(super) fn build_key_of(attrs: &BTreeMap<String, String>) -> Option<&str> {
    attrs.get(&build_key_attribute()).map(String::as_str)
}

/// When the first of `candidates` that can be read (the image at `target`, the service's current
/// image, one this worker pushed with the same key) was built with the key in the exporter's
/// `attrs`: writes an index for this deployment over the same manifests at `target` and returns
/// its digest. A tag that is new, an image of other inputs, or one that cannot be read or
/// written again is a miss (None): the build goes on, and its push says whatever was wrong.
pub(super) async fn reuse_image(
    registry: &Registry,
    target: &ImageRef,
    candidates: &[(ReusedFrom, &ImageRef)],
    attrs: &BTreeMap<String, String>,
    deployment: &BTreeMap<String, String>,
    log: &DeploymentLog,
) -> Result<Option<Digest>, BuildError> {
    let Some(key) = build_key_of(attrs) else { return Ok(None) };
    // Besides the target's tag, only images by digest in the target's repository are taken:
    // another repository's blobs are not this one's, and a digest cannot be moved under us.
    let takeable = |c: &ImageRef| c == target || (c.repo() == target.repo() && c.digest.is_some());
    let mut asked: Vec<&ImageRef> = Vec::new();
    for &(from, candidate) in candidates {
        if !takeable(candidate) || asked.contains(&candidate) {
            continue;
        }
        asked.push(candidate);
        let Some(taken) = take_image(registry, target, candidate, None, key, deployment).await? else {
            continue;
        };
        let holder = candidate.to_string();
        Narration(log).reused(from, &holder, &target.to_string(), &key[..12], taken.built_by.as_deref());
        return Ok(Some(taken.digest));
    }
    Ok(None)
}

/// An image taken again: the digest and bytes of the index written for this deployment, and
/// the deployment that built the image.
pub(super) struct Taken {
    pub digest: Digest,
    pub index: Vec<u8>,
    pub built_by: Option<String>,
}

/// When `candidate` can be read (or its index is `known`, bytes that hash to its digest) and that
/// index carries build `key`: writes an index for this deployment over its manifests at `target`.
/// None for a candidate gone, unreadable or of other inputs.
pub(super) async fn take_image(
    registry: &Registry,
    target: &ImageRef,
    candidate: &ImageRef,
    known: Option<&[u8]>,
    key: &str,
    deployment: &BTreeMap<String, String>,
) -> Result<Option<Taken>, BuildError> {
    let read;
    let existing = if let Some(bytes) = known {
        bytes
    } else {
        let Ok(Some(manifest)) = registry.manifest_of(candidate).await else { return Ok(None) };
        read = manifest.bytes;
        &read
    };
    let Ok(reused) = reuse::reuse(existing, key, deployment) else { return Ok(None) };
    let digest = match registry.put_manifest(&target.repo(), &target.reference(), &reused.index, OCI_INDEX).await {
        Ok(digest) => digest,
        // Its manifests deleted since (bytes kept from before name them still): a miss, as is
        // any refusal; the build that follows says what is wrong with the registry, if anything.
        Err(e) => {
            tracing::info!("{candidate} could not be written again at {target}: {e}");
            return Ok(None);
        }
    };
    Ok(Some(Taken { digest, index: reused.index, built_by: reused.built_by }))
}
