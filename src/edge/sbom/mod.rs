//! The SBOM of a pushed image, attached beside its provenance: each layer read from the registry
//! once (its findings kept by layer digest in memory, on disk, and, for a big layer, in the
//! worker's registry, so a run image's layers are read once per fleet), merged as the image's
//! filesystem has them, written as an SPDX 2.3 in-toto statement into the image's attestation
//! manifest, and the index written anew.

use crate::core::digest::Digest;
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::media_types::{IN_TOTO, OCI_CONFIG, OCI_MANIFEST};
use crate::core::oci::{self, Descriptor, ImageConfig, ImageIndex};
use crate::core::sbom::{self, LayerScan};
use crate::edge::registry::{Registry, RegistryError};
pub use scan::scan_layer;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

mod scan;

const PREDICATE_TYPE: &str = "in-toto.io/predicate-type";

/// What attaching found: the new index's digest and how many packages the document lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub index_digest: Digest,
    /// The bytes of the index `index_digest` names, when they were read or written here.
    pub index: Option<Vec<u8>>,
    /// None: the attestation had an SBOM already (an image taken again); nothing was written.
    pub packages: Option<BTreeMap<&'static str, usize>>,
    /// The SBOM's in-toto statement (about the image manifest), written, or found when asked
    /// for; None when the image has no attestation to hold one.
    pub statement: Option<Vec<u8>>,
}

/// Where the fleet keeps the findings of big layers, each under the tag `sha256-<hex>` of the
/// layer's digest: the worker's own repository, which no job can push to.
pub const FINDINGS_REPOSITORY: &str = "apprunner-build/sbom-layers";

/// Layers at least this big (compressed) have their findings kept in the registry: a run image's,
/// a big dependency layer's. Smaller ones are quicker to read again than to fetch.
const SHARED_FROM: u64 = 4 << 20;

/// Attaches the SBOM of the image `index_digest` of `target`'s repository, unless its
/// attestation has one; writes the new index at `target`'s tag. An image that is not an index
/// with an attestation (never one this service pushes) is left as it is. `findings`: where the
/// fleet keeps big layers' findings (`FINDINGS_REPOSITORY` on the worker's registry).
/// `statement`: whether an SBOM found there is read for the caller (to sign it).
pub async fn attach(
    registry: &Registry,
    target: &ImageRef,
    index_digest: &Digest,
    findings: &Repo,
    statement: bool,
) -> Result<Attached, RegistryError> {
    let at = target.repo();
    let mut unchanged = Attached { index_digest: index_digest.clone(), index: None, packages: None, statement: None };
    let Some(top) = registry.manifest(&at, index_digest).await? else { return Ok(unchanged) };
    if !top.is_index() {
        return Ok(unchanged);
    }
    unchanged.index = Some(top.bytes.clone());
    let index = top.index()?;
    let Some(image_entry) = index.for_platform("linux", crate::edge::buildkit::export::oci_architecture()).cloned()
    else {
        return Ok(unchanged);
    };
    let Some(att_entry) = index.attestation_of(&image_entry.digest).cloned() else { return Ok(unchanged) };
    let missing = |d: &Digest| RegistryError::Malformed(format!("{target}: index names {d}, which the registry lacks"));
    let attestation =
        registry.manifest(&at, &att_entry.digest).await?.ok_or_else(|| missing(&att_entry.digest))?.image()?;
    let spdx = |l: &&Descriptor| l.annotation(PREDICATE_TYPE) == Some(sbom::SPDX_PREDICATE);
    if let Some(found) = attestation.layers.iter().find(spdx) {
        if statement {
            unchanged.statement = Some(registry.blob(&at, &found.digest).await?);
        }
        return Ok(unchanged);
    }
    let image =
        registry.manifest(&at, &image_entry.digest).await?.ok_or_else(|| missing(&image_entry.digest))?.image()?;
    let config: ImageConfig =
        oci::parse(&registry.blob(&at, &image.config.digest).await?, "image config", &target.to_string())?;
    let created = config.other.get("created").and_then(|c| c.as_str()).unwrap_or("1970-01-01T00:00:00Z").to_string();

    // Each layer on its own, at once: the fetches overlap, the scans use every core.
    let scans =
        futures_util::future::try_join_all(image.layers.iter().map(|l| layer_scan(registry, &at, l, findings))).await?;
    let merged = sbom::merge(scans.iter().map(AsRef::as_ref));
    let name = format!("{}/{}", at.registry, at.repository);
    let tool = format!("apprunner-build-{}", env!("CARGO_PKG_VERSION"));
    let document = sbom::document(&merged, &name, &image_entry.digest, &created, &tool);
    let counts = count(&merged);
    let statement = sbom::statement(&name, &image_entry.digest, &document);

    // The attestation manifest with the statement as one more layer, its config naming it too.
    registry.put_blob(&at, &statement).await?;
    let mut layer = Descriptor::of(IN_TOTO, &statement);
    layer.annotations = Some(BTreeMap::from([(PREDICATE_TYPE.to_string(), sbom::SPDX_PREDICATE.to_string())]));
    let mut att_config: ImageConfig =
        oci::parse(&registry.blob(&at, &attestation.config.digest).await?, "attestation config", &target.to_string())?;
    att_config.rootfs.diff_ids.push(layer.digest.to_string());
    let att_config = oci::to_bytes(&att_config);
    // New with each build: it names the statements, and the provenance names the build's times.
    registry.upload_blob(&at, &att_config).await?;
    let mut new_attestation = attestation.clone();
    new_attestation.config = Descriptor::of(OCI_CONFIG, &att_config);
    new_attestation.layers.push(layer);
    let att_bytes = oci::to_bytes(&new_attestation);
    let written = Descriptor::of(OCI_MANIFEST, &att_bytes);
    registry.put_manifest(&at, &written.digest, &att_bytes, OCI_MANIFEST).await?;

    let new_index = with_attestation(&index, &att_entry.digest, &written);
    let bytes = oci::to_bytes(&new_index);
    let media_type = new_index.media_type.clone().unwrap_or_else(|| top.media_type.clone());
    let reference = target.tag.clone().unwrap_or_else(|| Digest::of(&bytes).to_string());
    let index_digest = registry.put_manifest(&at, &reference, &bytes, &media_type).await?;
    Ok(Attached { index_digest, index: Some(bytes), packages: Some(counts), statement: Some(statement) })
}

/// `index` with the attestation entry `old` replaced by `new` (its annotations and platform kept).
fn with_attestation(index: &ImageIndex, old: &Digest, new: &Descriptor) -> ImageIndex {
    let mut index = index.clone();
    for entry in &mut index.manifests {
        if entry.digest == *old {
            entry.digest.clone_from(&new.digest);
            entry.size = new.size;
        }
    }
    index
}

/// How many packages of each ecosystem the merged layers record (once per purl).
fn count(merged: &sbom::Merged) -> BTreeMap<&'static str, usize> {
    let mut purls: BTreeMap<String, sbom::Ecosystem> = BTreeMap::new();
    for p in merged.files.values().flatten() {
        purls.insert(sbom::purl(p, merged.os.as_ref()), p.ecosystem);
    }
    let mut counts = BTreeMap::new();
    for e in purls.values() {
        *counts.entry(ecosystem_label(*e)).or_insert(0) += 1;
    }
    counts
}

pub fn ecosystem_label(e: sbom::Ecosystem) -> &'static str {
    match e {
        sbom::Ecosystem::Deb => "Debian",
        sbom::Ecosystem::Pypi => "Python",
        sbom::Ecosystem::Npm => "npm",
        sbom::Ecosystem::Gem => "Ruby",
        sbom::Ecosystem::Composer => "Composer",
        sbom::Ecosystem::Golang => "Go",
        sbom::Ecosystem::Maven => "Maven",
    }
}

/// The layer scans this process has made or read, by layer digest (a few hundred at most).
fn known() -> &'static Mutex<HashMap<Digest, Arc<LayerScan>>> {
    static KNOWN: OnceLock<Mutex<HashMap<Digest, Arc<LayerScan>>>> = OnceLock::new();
    KNOWN.get_or_init(Mutex::default)
}

/// Where layer scans are kept between processes: `$XDG_CACHE_HOME/apprunner-build/sbom-layers`
/// (or `~/.cache/…`); None without a home.
fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("apprunner-build").join("sbom-layers"))
}

/// The scan of `layer`: from memory, from disk, from the fleet's findings, or read from the
/// registry and scanned.
async fn layer_scan(
    registry: &Registry,
    at: &Repo,
    layer: &Descriptor,
    findings: &Repo,
) -> Result<Arc<LayerScan>, RegistryError> {
    let digest = layer.digest.clone();
    if let Some(scan) = known().lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&digest) {
        return Ok(scan.clone());
    }
    let file = cache_dir().map(|d| d.join(format!("sha256-{}.json", digest.hex())));
    let from_disk = file.as_ref().and_then(|f| {
        // Our own files, named by content digest; one that does not parse is made again.
        std::fs::symlink_metadata(f).ok().filter(|m| m.is_file() && m.len() < (64 << 20))?;
        serde_json::from_slice::<LayerScan>(&std::fs::read(f).ok()?).ok()
    });
    let shared = layer.size >= SHARED_FROM;
    let tag = format!("sha256-{}", digest.hex());
    // The fleet's findings save work and nothing more: one that cannot be read or written is
    // made here (a registry that is really gone fails the layer's own fetch).
    let from_fleet = if from_disk.is_none() && shared {
        crate::edge::image::content_file(registry, findings, &tag, 64 << 20)
            .await
            .ok()
            .flatten()
            .and_then(|bytes| serde_json::from_slice::<LayerScan>(&bytes).ok())
    } else {
        None
    };
    let scan = if let Some(scan) = from_disk.or(from_fleet) {
        Arc::new(scan)
    } else {
        let bytes = registry.blob(at, &digest).await?;
        let scan = tokio::task::spawn_blocking(move || scan_layer(&bytes))
            .await
            .map_err(|e| RegistryError::Malformed(format!("scanning layer {}: {e}", layer.digest)))?;
        if shared {
            let json = serde_json::to_vec(&scan).unwrap_or_default();
            if let Ok(packed) = crate::edge::source::pack_file("findings.json", &json, 0o644) {
                let _ = crate::edge::image::tag_new_content(registry, findings, &packed, &tag).await;
            }
        }
        if let Some(f) = &file {
            let _ = f.parent().map(std::fs::create_dir_all);
            let tmp = f.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, serde_json::to_vec(&scan).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, f);
            }
        }
        Arc::new(scan)
    };
    let mut known = known().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if known.len() >= 512 {
        known.clear();
    }
    known.insert(digest, scan.clone());
    Ok(scan)
}
