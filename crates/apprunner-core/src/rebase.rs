//! Moving a built image onto another version's run image without building (`rebase`): which
//! images may move, and their new config, manifest, provenance and index, made from the old ones
//! and the two run images. Pure: JSON in, bytes out; the registry calls are in `edge::rebase`.
//!
//! Only an image whose final stage is the run image plus copied layers can move: a revised
//! build without pre-run. Its layers were computed in the build image; the run image under them
//! is swapped, its env and labels laid under the app's again. Anything that ran on the run
//! image (the original build's second build, any pre-run) may depend on it, and is rebuilt.

use crate::catalog::{lock_accepts, BuildProcess, RuntimeCatalog};
use crate::digest::sha256_digest;
use crate::labels;
use crate::plan::merge_env;
pub use crate::request::Rebased;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use crate::media_types::{DOCKER_LAYER_GZIP, IN_TOTO, OCI_CONFIG, OCI_LAYER_GZIP};
pub use crate::media_types::{OCI_INDEX, OCI_MANIFEST};

const SLSA_V02: &str = "https://slsa.dev/provenance/v0.2";
const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
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
    pub base_digest: String,
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
    pub manifest: Value,
    pub config: Value,
}

/// The run image to move onto: how the catalog names it, the digest that name resolved to.
#[derive(Debug, Clone)]
pub struct RunImage {
    pub reference: String,
    pub digest: String,
    pub parts: ImageParts,
}

/// The moved image: config and manifest bytes, and which layers the target must hold.
#[derive(Debug, Clone)]
pub struct RebasedImage {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    /// The new run image's layers (digests), to carry over from its repository.
    pub run_layers: Vec<String>,
    /// The app's own layers, already in the image's repository.
    pub app_layers: Vec<String>,
}

fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serialises")
}

/// Where the history of the first `layers` layers ends: entries marked `empty_layer` belong to
/// no layer.
fn history_split(history: &[Value], layers: usize) -> Option<usize> {
    let mut seen = 0;
    for (i, h) in history.iter().enumerate() {
        if seen == layers {
            return Some(i);
        }
        if h["empty_layer"] != Value::Bool(true) {
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
    old_digest: &str,
    from: &Movable,
    old_run: &ImageParts,
    new_run: &RunImage,
    to: &str,
) -> Result<RebasedImage, Refusal> {
    let differ = || Refusal::LayersDiffer { image: image.to_string(), base: from.base_name.clone() };
    let ids = |c: &Value| array(&c["rootfs"]["diff_ids"]);
    let (old_ids, base_ids, new_ids) = (ids(&old.config), ids(&old_run.config), ids(&new_run.parts.config));
    let old_layers = array(&old.manifest["layers"]);
    let base = base_ids.len();
    if old_ids.len() < base || old_ids[..base] != base_ids[..] || old_layers.len() != old_ids.len() {
        return Err(differ());
    }

    let mut config = old.config.clone();
    let mut diff_ids = new_ids;
    diff_ids.extend_from_slice(&old_ids[base..]);
    config["rootfs"]["diff_ids"] = Value::Array(diff_ids);
    let old_history = array(&old.config["history"]);
    let mut history = array(&new_run.parts.config["history"]);
    if let Some(split) = history_split(&old_history, base) {
        history.extend_from_slice(&old_history[split..]);
    }
    config["history"] = Value::Array(history);

    // The app's variables (named by a label, valued by the old env) over the new run image's.
    let old_env: Vec<(String, String)> = array(&old.config["config"]["Env"])
        .iter()
        .filter_map(|e| e.as_str()?.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let app_names = old.config["config"]["Labels"][labels::RUN_ENV].as_str().unwrap_or_default();
    let app_env =
        app_names.split(',').filter_map(|name| old_env.iter().find(|(k, _)| k == name).cloned()).collect::<Vec<_>>();
    let run_env: Vec<String> =
        array(&new_run.parts.config["config"]["Env"]).iter().filter_map(|e| e.as_str().map(str::to_string)).collect();
    config["config"]["Env"] = json!(merge_env(&run_env, app_env));

    // The new run image's labels with ours over them, as a build writes them.
    let mut image_labels = labels::of_config(&new_run.parts.config);
    image_labels.remove(labels::OCI_TITLE);
    image_labels.remove(labels::OCI_DESCRIPTION);
    let ours = |k: &str| k.starts_with("dev.apprunner-build.") || k == labels::OCI_SOURCE || k == labels::OCI_REVISION;
    image_labels.extend(labels::of_config(&old.config).into_iter().filter(|(k, _)| ours(k)));
    for (k, v) in [
        (labels::RUNTIME_VERSION, to),
        (labels::OCI_BASE_NAME, &new_run.reference),
        (labels::OCI_BASE_DIGEST, &new_run.digest),
        (labels::REBASED_FROM, old_digest),
        (labels::REBASED_FROM_VERSION, &from.from_version),
    ] {
        image_labels.insert(k.to_string(), v.to_string());
    }
    config["config"]["Labels"] = json!(image_labels);
    let config_bytes = to_bytes(&config);

    let mut manifest = old.manifest.clone();
    let oci = manifest["mediaType"] == OCI_MANIFEST;
    manifest["config"]["digest"] = json!(sha256_digest(&config_bytes));
    manifest["config"]["size"] = json!(config_bytes.len());
    let mut layers: Vec<Value> = array(&new_run.parts.manifest["layers"])
        .into_iter()
        .map(|mut l| {
            // Same bytes; an OCI manifest names them with OCI's type, as BuildKit does.
            if oci && l["mediaType"] == DOCKER_LAYER_GZIP {
                l["mediaType"] = json!(OCI_LAYER_GZIP);
            }
            l
        })
        .collect();
    let run_layers = layers.iter().filter_map(|l| l["digest"].as_str().map(str::to_string)).collect();
    let app = &old_layers[base..];
    layers.extend_from_slice(app);
    manifest["layers"] = Value::Array(layers);
    let manifest_bytes = to_bytes(&manifest);
    Ok(RebasedImage {
        manifest_digest: sha256_digest(&manifest_bytes),
        config: config_bytes,
        manifest: manifest_bytes,
        run_layers,
        app_layers: app.iter().filter_map(|l| l["digest"].as_str().map(str::to_string)).collect(),
    })
}

/// The provenance of the moved image: the old statement (what `BuildKit` recorded of the build)
/// about the new manifest, its run image material swapped, and where it was rebased from.
pub fn rebased_provenance(
    old: Option<&Value>,
    subject_name: &str,
    rebased: &RebasedImage,
    old_digest: &str,
    from: &Movable,
    new_run: &RunImage,
    to: &str,
) -> Value {
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let new_material = json!({
        "uri": purl(&new_run.reference, Some(&new_run.digest)),
        "digest": {"sha256": hex(&new_run.digest)},
    });
    let mut statement = old.cloned().unwrap_or_else(|| {
        json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SLSA_V02,
            "subject": [],
            "predicate": {"builder": {"id": ""}, "buildType": REBASE_METADATA, "materials": [], "metadata": {}},
        })
    });
    statement["subject"] = json!([{"name": subject_name, "digest": {"sha256": hex(&rebased.manifest_digest)}}]);
    let mut materials: Vec<Value> = array(&statement["predicate"]["materials"])
        .into_iter()
        .map(|m| if m["digest"]["sha256"] == hex(&from.base_digest).as_str() { new_material.clone() } else { m })
        .collect();
    if !materials.contains(&new_material) {
        materials.push(new_material);
    }
    statement["predicate"]["materials"] = Value::Array(materials);
    if !statement["predicate"]["metadata"].is_object() {
        statement["predicate"]["metadata"] = json!({});
    }
    statement["predicate"]["metadata"][REBASE_METADATA] = json!({
        "rebasedFrom": {"digest": old_digest, "runtime": from.runtime, "runtimeVersion": from.from_version, "runImage": from.base_name},
        "runtimeVersion": to,
        "runImage": new_run.reference,
    });
    statement
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

pub fn attestation(statement: &Value) -> Attestation {
    let statement_bytes = to_bytes(statement);
    let statement_digest = sha256_digest(&statement_bytes);
    let config = to_bytes(&json!({
        "architecture": "unknown",
        "os": "unknown",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [statement_digest]},
    }));
    let predicate_type = statement["predicateType"].as_str().unwrap_or(SLSA_V02);
    let manifest = to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [{
            "mediaType": IN_TOTO,
            "digest": statement_digest,
            "size": statement_bytes.len(),
            "annotations": {"in-toto.io/predicate-type": predicate_type},
        }],
    }));
    Attestation { statement: statement_bytes, config, manifest }
}

/// The index of the moved image: the old one's (its annotations, this deployment's over them)
/// with the image and its attestation replaced.
pub fn rebased_index(
    old_index: Option<&Value>,
    platform: &Value,
    rebased: &RebasedImage,
    attestation: &Attestation,
    deployment: &BTreeMap<String, String>,
) -> Vec<u8> {
    let image_entry = json!({
        "mediaType": OCI_MANIFEST,
        "digest": rebased.manifest_digest,
        "size": rebased.manifest.len(),
        "platform": platform,
    });
    let attestation_entry = json!({
        "mediaType": OCI_MANIFEST,
        "digest": sha256_digest(&attestation.manifest),
        "size": attestation.manifest.len(),
        "annotations": {REFERENCE_DIGEST: rebased.manifest_digest, REFERENCE_TYPE: "attestation-manifest"},
        "platform": {"architecture": "unknown", "os": "unknown"},
    });
    let mut index = old_index.cloned().unwrap_or_else(|| json!({"schemaVersion": 2, "mediaType": OCI_INDEX}));
    index["manifests"] = json!([image_entry, attestation_entry]);
    if !index["annotations"].is_object() {
        index["annotations"] = json!({});
    }
    for (k, v) in deployment {
        index["annotations"][k] = json!(v);
    }
    to_bytes(&index)
}

/// In an index: the attestation manifest's digest for the image manifest `image_digest`.
pub fn attestation_of(index: &Value, image_digest: &str) -> Option<String> {
    array(&index["manifests"])
        .iter()
        .find(|m| {
            m["annotations"][REFERENCE_TYPE] == "attestation-manifest"
                && m["annotations"][REFERENCE_DIGEST] == image_digest
        })
        .and_then(|m| m["digest"].as_str().map(str::to_string))
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
        (labels::OCI_BASE_DIGEST, "sha256:aaaa"),
        (labels::PRE_RUN_COMMANDS, "0"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
    .collect()
}

#[cfg(test)]
mod tests;
