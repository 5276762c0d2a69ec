//! `verify IMAGE`: the image built again from what it records (its commit, source directory and
//! configuration source in its labels, its runtime images by digest in its provenance), every step
//! run anew, and the two image manifests compared: the same, or where they differ (which layer,
//! which files; which config fields). With `--key`, the image's signature and its signed SLSA
//! provenance are checked first, and the rebuild is of what that provenance records, never of
//! labels (which anyone who can push can change).

use super::{DeploymentLog, Settings};
use crate::core::digest::Digest;
use crate::core::image_ref::ImageRef;
use crate::core::labels;
use crate::core::oci::slsa::SLSA_PROVENANCE_V1;
use crate::core::oci::Statement;
use crate::core::provenance::{self, AnyProvenance};
use crate::core::request::{self, BuildRequest, ConfigInput, Revision, SourceLocation};
use crate::core::verify;
use crate::edge::layers::layer_files;
use crate::edge::rebase::Stored;
use crate::edge::signing::{self, PublicKey};
use crate::error::BuildError;
use std::collections::BTreeMap;

/// The tag of a repository that `verify` pushes its rebuild to.
pub const VERIFY_TAG: &str = "apprunner-verify";

/// How many differing layers are opened and their files compared.
const LAYERS_OPENED: usize = 3;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The image manifest verified (`registry/repo@sha256:…`).
    pub image: String,
    /// The rebuild's image manifest.
    pub rebuilt: String,
    /// Where they differ, one line each; empty when they are the same.
    pub differences: Vec<String>,
    /// The key whose signatures of the image and its provenance were checked (its fingerprint).
    pub signed_by: Option<String>,
}

/// What the caller may say that the image does not record: the source (a local path or a
/// `file://` URL is not kept in the image), the API settings (not kept either).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub source: Option<String>,
    pub api_config: Option<serde_json::Value>,
    /// Check the image's signature and its provenance's with this key, and rebuild from that.
    pub key: Option<PublicKey>,
}

/// Rebuilds `image` from what it records and compares; the rebuild's deployment log goes to `log`.
pub async fn verify(
    settings: &Settings,
    image: &ImageRef,
    overrides: Overrides,
    log: &DeploymentLog,
) -> Result<Verdict, BuildError> {
    let registry = settings.registry_client();
    let stored = crate::edge::rebase::read(&registry, image, "image")
        .await?
        .ok_or_else(|| BuildError::user(format!("{image} is not in the registry")))?;
    let signed_by = overrides.key.as_ref().map(|k| k.fingerprint.clone());
    let (req, pins, held) = match overrides.key.clone() {
        Some(key) => {
            let signed = signed_provenance(&registry, image, &stored.top.digest, &key).await?;
            from_signed(image, &signed, overrides)?
        }
        None => from_labels(image, &stored, overrides)?,
    };
    // The runtime version it was built on, when its configuration named none: held there.
    let mut holds = settings.runtime_holds.clone();
    holds.extend(held);
    let rebuild =
        Settings { no_cache: true, signer: None, runtime_pins: pins, runtime_holds: holds, ..settings.clone() };
    let built = super::run(&rebuild, &req, log).await?;
    let rebuilt_ref = ImageRef::parse(&built.image)?;
    let again = crate::edge::rebase::read(&registry, &rebuilt_ref, "rebuild")
        .await?
        .ok_or_else(|| BuildError::transient(format!("the rebuild {} is gone from the registry", built.image)))?;
    let name = image.name();
    let verdict = |differences| Verdict {
        image: format!("{name}@{}", stored.image.digest),
        rebuilt: format!("{name}@{}", again.image.digest),
        differences,
        signed_by: signed_by.clone(),
    };
    if again.image.digest == stored.image.digest {
        return Ok(verdict(Vec::new()));
    }
    let (was, now) = (&stored.parts, &again.parts);
    let mut lines = Vec::new();
    let config_was = serde_json::to_value(&was.config).unwrap_or_default();
    let config_now = serde_json::to_value(&now.config).unwrap_or_default();
    lines
        .extend(verify::config_differences(&config_was, &config_now).into_iter().map(|l| format!("image config: {l}")));
    // Each layer's step, from the config's history (the entries that made a layer).
    let steps: Vec<String> = was
        .config
        .history()
        .iter()
        .filter(|h| h.made_a_layer())
        .map(|h| {
            h.other
                .get("created_by")
                .and_then(|c| c.as_str())
                .map(crate::core::progress::first_line)
                .unwrap_or_default()
        })
        .collect();
    let at = image.repo();
    for (opened, (i, a, b)) in verify::layer_differences(&was.manifest, &now.manifest).into_iter().enumerate() {
        let step = steps.get(i).map(|s| format!(" ({s})")).unwrap_or_default();
        let shown = |d: &Option<Digest>| d.as_ref().map_or_else(|| "none".into(), ToString::to_string);
        lines.push(format!("layer {}{step}: {} in the image, {} in the rebuild", i + 1, shown(&a), shown(&b)));
        if let (Some(a), Some(b), true) = (&a, &b, opened < LAYERS_OPENED) {
            let (fa, fb) = (registry.blob(&at, a).await?, registry.blob(&at, b).await?);
            let (fa, fb) = tokio::task::spawn_blocking(move || (layer_files(&fa), layer_files(&fb)))
                .await
                .map_err(|e| BuildError::internal(format!("listing layers: {e}")))?;
            lines.extend(verify::file_differences(&fa, &fb).into_iter().map(|l| format!("  {l}")));
        }
    }
    Ok(verdict(lines))
}

/// What a rebuild is given: the request, the runtime images pinned, the runtime held.
type Rebuild = (BuildRequest, BTreeMap<String, String>, Option<(String, String)>);

/// The rebuild of `image` from its labels and `BuildKit`'s provenance (no key to check them).
fn from_labels(image: &ImageRef, stored: &Stored, overrides: Overrides) -> Result<Rebuild, BuildError> {
    let labels = stored.parts.config.labels();
    let provenance = stored.provenance.as_ref().ok_or_else(|| {
        BuildError::user(format!(
            "{image} has no provenance to rebuild it from; only images this service built can be verified"
        ))
    })?;
    let req = request_from(image, &labels, overrides)?;
    let pins = verify::runtime_images(&provenance.predicate.materials);
    if pins.is_empty() {
        return Err(BuildError::user(format!(
            "{image}'s provenance names no runtime image; it was not built by this service"
        )));
    }
    let held = labels.get(labels::RUNTIME).cloned().zip(labels.get(labels::RUNTIME_VERSION).cloned());
    Ok((req, pins, held))
}

/// The provenance of `image` (its index `digest`) signed by `key`, once the image's own
/// signature by it is checked; else why not, in one line.
async fn signed_provenance(
    registry: &crate::edge::registry::Registry,
    image: &ImageRef,
    digest: &Digest,
    key: &PublicKey,
) -> Result<AnyProvenance, BuildError> {
    let at = image.repo();
    let shown = format!("{}@{digest}", image.name());
    let fingerprint = &key.fingerprint;
    if !signing::image_signed(registry, &at, digest, key).await? {
        return Err(BuildError::user(format!(
            "{shown} is not signed by key {fingerprint}; give the public key of the key that signed it"
        )));
    }
    let statement =
        signing::signed_statement(registry, &at, digest, SLSA_PROVENANCE_V1, key).await?.map_err(|why| {
            BuildError::user(format!("{shown}: its provenance does not verify with key {fingerprint}: {why}"))
        })?;
    let statement: Statement<AnyProvenance> = serde_json::from_slice(&statement)
        .map_err(|e| BuildError::user(format!("{shown}: its signed provenance is not SLSA v1 provenance: {e}")))?;
    Ok(statement.predicate)
}

/// The rebuild of `image` from what its signed provenance records (and what the caller says it
/// cannot: a local repository, the API settings, which it keeps only by digest).
fn from_signed(image: &ImageRef, provenance: &AnyProvenance, overrides: Overrides) -> Result<Rebuild, BuildError> {
    let recorded = provenance::recorded(provenance)
        .map_err(|why| BuildError::user(format!("{image} cannot be rebuilt: {why}")))?;
    let source = &recorded.source;
    let commit = source.commit.clone().ok_or_else(|| {
        BuildError::user(format!("{image}'s provenance records no commit (it was built from a directory outside git), so it cannot be rebuilt"))
    })?;
    let config = match source.configuration.source.as_str() {
        "API" => {
            let given = overrides.api_config.ok_or_else(|| {
                BuildError::user(format!("{image} was built from API settings, which its provenance keeps only by digest; give them with --api-config"))
            })?;
            let digest = Digest::of(given.to_string().as_bytes());
            if source.configuration.digest.get("sha256").map(String::as_str) != Some(digest.hex()) {
                return Err(BuildError::user(format!("--api-config: these settings are not the ones {image} was built with (their digest is not the one its provenance records)")));
            }
            ConfigInput::Api(given)
        }
        _ => ConfigInput::Repository,
    };
    let repository = overrides.source.unwrap_or_else(|| source.repository.clone());
    let location = crate::edge::source::locate(&repository);
    if let SourceLocation::Local(p) = &location {
        return Err(BuildError::user(format!(
            "--source {}: give a git URL (file:// for a local repository), so the commit {commit} can be checked out",
            p.display()
        )));
    }
    let req = rebuild_request(image, location, commit, source.source_directory.clone(), config);
    if recorded.runtime_images.is_empty() {
        return Err(BuildError::user(format!("{image}'s signed provenance names no runtime image to rebuild on")));
    }
    Ok((req, recorded.runtime_images, Some((source.runtime.clone(), recorded.runtime_version))))
}

/// The request that builds `commit` of `location` again into `image`'s verify tag.
fn rebuild_request(
    image: &ImageRef,
    location: SourceLocation,
    commit: String,
    source_dir: String,
    config: ConfigInput,
) -> BuildRequest {
    BuildRequest {
        location,
        revision: Revision::Commit(commit),
        source_dir,
        config,
        target: ImageRef { tag: Some(VERIFY_TAG.into()), digest: None, ..image.clone() },
        operation_id: request::new_operation_id(),
        trigger: "SERVICE_DEPLOY".into(),
        current_image: None,
        prior: None,
    }
}

/// The build request that made `image`, from its labels (and what the caller says they lack).
fn request_from(
    image: &ImageRef,
    labels: &std::collections::BTreeMap<String, String>,
    overrides: Overrides,
) -> Result<BuildRequest, BuildError> {
    let commit = labels.get(labels::OCI_REVISION).ok_or_else(|| {
        BuildError::user(format!(
            "{image} records no commit (it was built from a directory outside git), so it cannot be rebuilt"
        ))
    })?;
    let source = overrides.source.or_else(|| labels.get(labels::OCI_SOURCE).cloned()).ok_or_else(|| {
        BuildError::user(format!("{image} does not record its repository (it was built from a local directory or a file:// URL); give it with --source"))
    })?;
    let config = match labels.get(labels::CONFIGURATION_SOURCE).map(String::as_str) {
        Some("API") => ConfigInput::Api(overrides.api_config.ok_or_else(|| {
            BuildError::user(format!(
                "{image} was built from API settings, which it does not record; give them with --api-config"
            ))
        })?),
        _ => ConfigInput::Repository,
    };
    let location = crate::edge::source::locate(&source);
    if let SourceLocation::Local(p) = &location {
        return Err(BuildError::user(format!(
            "--source {}: give a git URL (file:// for a local repository), so the commit {commit} can be checked out",
            p.display()
        )));
    }
    let source_dir = labels.get(labels::SOURCE_DIRECTORY).cloned().unwrap_or_else(|| "/".into());
    Ok(rebuild_request(image, location, commit.clone(), source_dir, config))
}
