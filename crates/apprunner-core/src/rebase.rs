//! Moving a built image onto another version's run image without building (`rebase`): which
//! images may move, and their new config, manifest, provenance and index, made from the old ones
//! and the two run images. Pure: JSON in, bytes out; the registry calls are in `edge::rebase`.
//!
//! Only an image whose final stage is the run image plus copied layers can move: a revised
//! build without pre-run. Its layers were computed in the build image; the run image under them
//! is swapped, its env and labels laid under the app's again. Anything that ran on the run
//! image (the original build's second build, any pre-run) may depend on it, and is rebuilt.

use crate::catalog::{lock_accepts, BuildProcess, RuntimeCatalog};
use crate::digest::Digest;
use crate::image_ref::ImageRef;
use crate::labels;
use crate::oci::{self, Descriptor, History, ImageConfig, ImageIndex, ImageManifest, Platform};
use crate::plan::merge_env;
pub use crate::result::Rebased;
use std::collections::BTreeMap;

pub use provenance::{attestation, purl, rebased_provenance, Attestation};

use crate::media_types::{DOCKER_LAYER_GZIP, OCI_LAYER_GZIP};
use crate::media_types::{OCI_INDEX, OCI_MANIFEST};

const SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";
const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
/// Where the provenance of a rebased image says so.
pub const REBASE_METADATA: &str = "https://apprunner-build.dev/rebase@v1";

/// Why an image cannot be rebased; each is the user's to act on, and says how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{image} was not built by apprunner-build (it has no {} label); only images it built can be rebased",
        labels::RUNTIME
    )]
    NotOurs { image: String },
    #[error("{image} was built on runtime `{runtime}`, which this catalog does not know; rebuild the service")]
    UnknownRuntime { image: String, runtime: String },
    /// The runtime never had that version (the catalog's message).
    #[error("{0}")]
    UnknownVersion(String),
    #[error("{image} was built with the original build: its run stage ran the build commands again on the {runtime} {version} run image, so its layers may depend on it; rebuild the service to move it to {to}")]
    OriginalBuild { image: String, runtime: String, version: String, to: String },
    #[error("{image} ran {commands} pre-run command(s) on the {runtime} {version} run image, so its layers may depend on it; rebuild the service to move it to {to}")]
    PreRun { image: String, commands: String, runtime: String, version: String, to: String },
    #[error("{image} was built before images said whether pre-run changed them (no {} label); rebuild the service once, and it can be rebased from then on", labels::PRE_RUN_COMMANDS)]
    Unmarked { image: String },
    #[error("the configuration of {image} sets runtime-version {lock}, which {to} does not match; rebase to a version it accepts, or change runtime-version and rebuild")]
    Pinned { image: String, lock: String, to: String },
    #[error("the run image {image} was built on, {base}, is no longer in the registry, so its layers cannot be told from the app's; rebuild the service")]
    BaseMissing { image: String, base: String },
    #[error("{image}'s layers do not start with those of the run image it names ({base}); rebuild the service")]
    LayersDiffer { image: String, base: String },
}

impl crate::error::Classified for Refusal {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::User
    }
}
crate::error::classified_into_build_error!(Refusal);

/// What the labels say about the image to move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movable {
    pub runtime: String,
    pub from_version: String,
    /// `registry/repo:tag` and digest of the run image under it.
    pub base_name: String,
    pub base_digest: Digest,
}

impl Movable {
    /// What a rebase of this image to `to_version` at `target` says before it has moved
    /// anything: the image (its digest), the run image, the bytes and the time are filled in as it goes.
    pub fn rebased(&self, target: &ImageRef, to_version: &str, commit: Option<String>) -> Rebased {
        Rebased {
            image: target.clone(),
            runtime: self.runtime.clone(),
            from_version: self.from_version.clone(),
            to_version: to_version.to_string(),
            run_image: self.base_name.clone(),
            run_image_digest: None,
            from_digest: None,
            unchanged: false,
            copied_bytes: 0,
            seconds: 0.0,
            commit,
        }
    }
}

/// Whether the image `image` with `labels` may move to version `to` of its runtime.
pub fn check(
    image: &str,
    labels: &BTreeMap<String, String>,
    catalog: &RuntimeCatalog,
    to: &str,
) -> Result<Movable, Refusal> {
    let image = image.to_string();
    let label = |k: &str| labels.get(k).cloned();
    let (Some(runtime), Some(version), Some(base_name), Some(base_digest)) = (
        label(labels::RUNTIME),
        label(labels::RUNTIME_VERSION),
        label(labels::OCI_BASE_NAME),
        label(labels::OCI_BASE_DIGEST),
    ) else {
        return Err(Refusal::NotOurs { image });
    };
    // Written by the worker; anything else there was not.
    let Ok(base_digest) = Digest::parse(&base_digest) else { return Err(Refusal::NotOurs { image }) };
    let rt = catalog
        .lookup(&runtime)
        .map_err(|_| Refusal::UnknownRuntime { image: image.clone(), runtime: runtime.clone() })?;
    rt.check_version(to).map_err(|e| Refusal::UnknownVersion(e.0))?;
    let to = to.to_string();
    if rt.build_process == BuildProcess::Original || label(labels::BUILD_PROCESS).as_deref() == Some("original") {
        return Err(Refusal::OriginalBuild { image, runtime, version, to });
    }
    match label(labels::PRE_RUN_COMMANDS).as_deref() {
        None => return Err(Refusal::Unmarked { image }),
        Some("0") => {}
        Some(n) => return Err(Refusal::PreRun { image, commands: n.to_string(), runtime, version, to }),
    }
    if let Some(lock) = label(labels::RUNTIME_VERSION_LOCK) {
        if !lock_accepts(&lock, &to) {
            return Err(Refusal::Pinned { image, lock, to });
        }
    }
    Ok(Movable { runtime, from_version: version, base_name, base_digest })
}

/// An image manifest and its config.
#[derive(Debug, Clone)]
pub struct ImageParts {
    pub manifest: ImageManifest,
    pub config: ImageConfig,
}

/// The run image to move onto: how the catalog names it, the digest that name resolved to.
#[derive(Debug, Clone)]
pub struct RunImage {
    pub reference: String,
    pub digest: Digest,
    pub parts: ImageParts,
}

/// The moved image: config and manifest bytes, and which layers the target must hold.
#[derive(Debug, Clone)]
pub struct RebasedImage {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    /// The new run image's layers, to carry over from its repository.
    pub run_layers: Vec<Digest>,
    /// The app's own layers, already in the image's repository.
    pub app_layers: Vec<Digest>,
}

/// Where the history of the first `layers` layers ends: entries marked `empty_layer` belong to
/// no layer.
fn history_split(history: &[History], layers: usize) -> Option<usize> {
    let mut seen = 0;
    for (i, h) in history.iter().enumerate() {
        if seen == layers {
            return Some(i);
        }
        if h.made_a_layer() {
            seen += 1;
        }
    }
    (seen == layers).then_some(history.len())
}

/// The image `old` (named `image`, manifest digest `old_digest`) on `new_run` instead of
/// `old_run`, at runtime version `to`.
pub fn rebase_image(
    image: &str,
    old: &ImageParts,
    old_digest: &Digest,
    from: &Movable,
    old_run: &ImageParts,
    new_run: &RunImage,
    to: &str,
) -> Result<RebasedImage, Refusal> {
    let differ = || Refusal::LayersDiffer { image: image.to_string(), base: from.base_name.clone() };
    let (old_ids, base_ids) = (&old.config.rootfs.diff_ids, &old_run.config.rootfs.diff_ids);
    let old_layers = &old.manifest.layers;
    let base = base_ids.len();
    if old_ids.len() < base || old_ids[..base] != base_ids[..] || old_layers.len() != old_ids.len() {
        return Err(differ());
    }

    let mut config = old.config.clone();
    let mut diff_ids = new_run.parts.config.rootfs.diff_ids.clone();
    diff_ids.extend_from_slice(&old_ids[base..]);
    config.rootfs.diff_ids = diff_ids;
    let old_history = old.config.history();
    let mut history = new_run.parts.config.history().to_vec();
    if let Some(split) = history_split(old_history, base) {
        history.extend_from_slice(&old_history[split..]);
    }
    config.history = Some(history);

    config.config.env = Some(moved_env(&old.config, &new_run.parts.config));
    let rebased_from =
        [(labels::REBASED_FROM, old_digest.as_str()), (labels::REBASED_FROM_VERSION, from.from_version.as_str())];
    config.config.labels = Some(moved_labels(&old.config, new_run, to, rebased_from));
    let config_bytes = oci::to_bytes(&config);

    let mut manifest = old.manifest.clone();
    let oci = manifest.media_type.as_deref() == Some(OCI_MANIFEST);
    manifest.config.digest = Digest::of(&config_bytes);
    manifest.config.size = config_bytes.len() as u64;
    let mut layers: Vec<Descriptor> = new_run
        .parts
        .manifest
        .layers
        .iter()
        .cloned()
        .map(|mut l| {
            // Same bytes; an OCI manifest names them with OCI's type, as BuildKit does.
            if oci && l.media_type == DOCKER_LAYER_GZIP {
                l.media_type = OCI_LAYER_GZIP.to_string();
            }
            l
        })
        .collect();
    let run_layers = layers.iter().map(|l| l.digest.clone()).collect();
    let app = &old_layers[base..];
    layers.extend_from_slice(app);
    manifest.layers = layers;
    let manifest_bytes = oci::to_bytes(&manifest);
    Ok(RebasedImage {
        manifest_digest: Digest::of(&manifest_bytes),
        config: config_bytes,
        manifest: manifest_bytes,
        run_layers,
        app_layers: app.iter().map(|l| l.digest.clone()).collect(),
    })
}

/// The moved image's environment: the app's variables (named by a label, valued by the old
/// env) over the new run image's.
fn moved_env(old: &ImageConfig, new_run: &ImageConfig) -> Vec<String> {
    let old_env: Vec<(String, String)> =
        old.env().iter().filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    let old_labels = old.labels();
    let app_names = old_labels.get(labels::RUN_ENV).map(String::as_str).unwrap_or_default();
    let app_env =
        app_names.split(',').filter_map(|name| old_env.iter().find(|(k, _)| k == name).cloned()).collect::<Vec<_>>();
    merge_env(new_run.env(), app_env)
}

/// The moved image's labels: the new run image's with ours over them, as a build writes them,
/// and where it was rebased from.
fn moved_labels(
    old: &ImageConfig,
    new_run: &RunImage,
    to: &str,
    rebased_from: [(&str, &str); 2],
) -> BTreeMap<String, String> {
    let mut image_labels = new_run.parts.config.labels();
    image_labels.remove(labels::OCI_TITLE);
    image_labels.remove(labels::OCI_DESCRIPTION);
    let ours = |k: &str| k.starts_with("dev.apprunner-build.") || k == labels::OCI_SOURCE || k == labels::OCI_REVISION;
    image_labels.extend(old.labels().into_iter().filter(|(k, _)| ours(k)));
    let run = [
        (labels::RUNTIME_VERSION, to),
        (labels::OCI_BASE_NAME, new_run.reference.as_str()),
        (labels::OCI_BASE_DIGEST, new_run.digest.as_str()),
    ];
    for (k, v) in run.into_iter().chain(rebased_from) {
        image_labels.insert(k.to_string(), v.to_string());
    }
    image_labels
}

/// The index of the moved image: the old one's (its annotations, this deployment's over them)
/// with the image and its attestation replaced.
pub fn rebased_index(
    old_index: Option<&ImageIndex>,
    platform: &Platform,
    rebased: &RebasedImage,
    attestation: &Attestation,
    deployment: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut image_entry = Descriptor::of(OCI_MANIFEST, &rebased.manifest);
    image_entry.platform = Some(platform.clone());
    let mut attestation_entry = Descriptor::of(OCI_MANIFEST, &attestation.manifest);
    attestation_entry.annotations = Some(BTreeMap::from([
        (oci::REFERENCE_DIGEST.to_string(), rebased.manifest_digest.to_string()),
        (oci::REFERENCE_TYPE.to_string(), oci::ATTESTATION_MANIFEST.to_string()),
    ]));
    attestation_entry.platform = Some(Platform::new("unknown", "unknown"));
    let mut index = old_index.cloned().unwrap_or_else(|| ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: vec![],
        annotations: None,
        other: oci::Other::new(),
    });
    index.manifests = vec![image_entry, attestation_entry];
    index.annotations.get_or_insert_with(BTreeMap::new).extend(deployment.iter().map(|(k, v)| (k.clone(), v.clone())));
    oci::to_bytes(&index)
}

/// For tests (this crate's and the service's): the labels of a python311 3.11.10 image that can
/// move, with `extra` over them.
#[doc(hidden)]
pub fn movable_labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    [
        (labels::RUNTIME, "python311"),
        (labels::RUNTIME_VERSION, "3.11.10"),
        (labels::BUILD_PROCESS, "revised"),
        (labels::OCI_BASE_NAME, "r/apprunner-runtimes/python311:3.11.10-run"),
        (labels::OCI_BASE_DIGEST, "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        (labels::PRE_RUN_COMMANDS, "0"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

mod provenance;
#[cfg(test)]
mod tests;
