//! Images at the registry: the small one-layer images that carry the source and the CA bundle
//! to `BuildKit`, facts about the runtime images, and the final image's config.

use super::registry::{Registry, RegistryError, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST};
use super::source::Layer;
use crate::core::digest::{sha256_digest, Digest};
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::media_types::{OCI_EMPTY, OCI_MANIFEST};
use crate::core::oci::{self, ContainerConfig, Descriptor, ImageConfig, ImageManifest, RootFs};
use crate::core::plan::ImageFacts;
use crate::error::{Classified, ErrorClass};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `remedy` says how to make it: the command, or that only a pushed image will do.
    #[error("the {what} {reference} is missing from registry {registry}: {remedy}")]
    MissingRuntimeImage { what: String, reference: String, registry: String, remedy: String },
    #[error("the config of {image} is not a valid image config: {detail}")]
    BadConfig { image: String, detail: String },
}

impl Classified for ImageError {
    fn class(&self) -> ErrorClass {
        match self {
            ImageError::Registry(e) => e.class(),
            ImageError::MissingRuntimeImage { .. } => ErrorClass::User,
            ImageError::BadConfig { .. } => ErrorClass::Internal,
        }
    }
}
crate::error::classified_into_build_error!(ImageError);

type Result<T> = std::result::Result<T, ImageError>;

/// A one-layer image pushed for `BuildKit` to pull by digest.
#[derive(Debug, Clone)]
pub struct ContentImage {
    /// `registry/repo@sha256:…`
    pub pinned: String,
    /// Whether this call uploaded anything (false: the registry already had it).
    pub uploaded: bool,
    pub bytes: usize,
}

fn content_manifest(layer: &Layer) -> (Vec<u8>, Vec<u8>) {
    let config = oci::to_bytes(&ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        config: ContainerConfig::default(),
        rootfs: RootFs::layers(vec![layer.diff_id.clone()]),
        history: None,
        other: oci::Other::new(),
    });
    let gzip = Descriptor::new(DOCKER_LAYER_GZIP, layer.gzip.len(), &layer.digest);
    let manifest = ImageManifest::new(DOCKER_MANIFEST, Descriptor::of(DOCKER_CONFIG, &config), vec![gzip]);
    (config, oci::to_bytes(&manifest))
}

/// `host/repo@sha256:…` of the image `push_content` makes of `layer` in `at`, without pushing it.
pub fn content_reference(at: &Repo, layer: &Layer) -> String {
    let (_, manifest) = content_manifest(layer);
    format!("{at}@{}", sha256_digest(&manifest))
}

/// Pushes `layer` as an image to `at`, unless the registry already has that manifest.
pub async fn push_content(registry: &Registry, at: &Repo, layer: &Layer) -> Result<ContentImage> {
    let (config, manifest) = content_manifest(layer);
    let digest = sha256_digest(&manifest);
    let pinned = format!("{at}@{digest}");
    if registry.manifest(at, &digest).await?.is_some() {
        return Ok(ContentImage { pinned, uploaded: false, bytes: 0 });
    }
    let mut bytes = 0;
    if registry.put_blob(at, &layer.gzip).await? {
        bytes += layer.gzip.len();
    }
    registry.put_blob(at, &config).await?;
    // Tagged by content too, so registry garbage collection keeps it while it is in use.
    let tag = format!("sha256-{}", &digest[7..39]);
    registry.put_manifest(at, &tag, &manifest, DOCKER_MANIFEST).await?;
    Ok(ContentImage { pinned, uploaded: true, bytes })
}

/// Pushes `layer` as an image to `at` under `tag` only (a marker); returns its digest. One
/// request once the registry has its blobs (every marker after a repository's first: they have
/// the same bytes); see `put_manifest_first`.
pub async fn tag_content(registry: &Registry, at: &Repo, layer: &Layer, tag: &str) -> Result<Digest> {
    let (config, manifest) = content_manifest(layer);
    put_manifest_first(registry, at, tag, &manifest, DOCKER_MANIFEST, &[&layer.gzip, &config]).await
}

/// Writes at `at:tag` a manifest that is all annotations: an OCI artifact of `artifact_type`
/// with the empty config and no layers (a service's record), read back in one request. Its
/// only blob is the same for every such manifest, so a write is one request too.
pub async fn tag_annotations(
    registry: &Registry,
    at: &Repo,
    tag: &str,
    artifact_type: &str,
    annotations: BTreeMap<String, String>,
) -> Result<Digest> {
    const EMPTY: &[u8] = b"{}";
    let mut manifest = ImageManifest::new(OCI_MANIFEST, Descriptor::of(OCI_EMPTY, EMPTY), Vec::new());
    manifest.annotations = Some(annotations);
    manifest.other.insert("artifactType".into(), artifact_type.into());
    put_manifest_first(registry, at, tag, &oci::to_bytes(&manifest), OCI_MANIFEST, &[EMPTY]).await
}

/// Writes `manifest` at `at:tag`, its `blobs` only if the registry lacks them: the manifest
/// goes first, and a registry without the blobs refuses it (`MANIFEST_BLOB_UNKNOWN`, HTTP 400,
/// in distribution and the OCI spec); then the blobs go up and the manifest again, and a refusal
/// for any other reason is what that second try says.
async fn put_manifest_first(
    registry: &Registry,
    at: &Repo,
    tag: &str,
    manifest: &[u8],
    media_type: &str,
    blobs: &[&[u8]],
) -> Result<Digest> {
    match registry.put_manifest(at, tag, manifest, media_type).await {
        Err(RegistryError::Status { status, .. }) if status.is_client_error() => {}
        written => return Ok(written?),
    }
    for blob in blobs {
        registry.put_blob(at, blob).await?;
    }
    Ok(registry.put_manifest(at, tag, manifest, media_type).await?)
}

/// As `tag_content`, for a layer whose bytes are new (a layer's findings): its blobs are
/// uploaded first, without asking whether the registry has them.
pub async fn tag_new_content(registry: &Registry, at: &Repo, layer: &Layer, tag: &str) -> Result<Digest> {
    let (config, manifest) = content_manifest(layer);
    registry.upload_blob(at, &layer.gzip).await?;
    registry.upload_blob(at, &config).await?;
    Ok(registry.put_manifest(at, tag, &manifest, DOCKER_MANIFEST).await?)
}

/// The file in the one-layer image at `at:reference`, if there is one of at most `max` bytes.
pub async fn content_file(registry: &Registry, at: &Repo, reference: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let Some(manifest) = registry.manifest(at, reference).await? else { return Ok(None) };
    let Some(layer) = manifest.image()?.layers.first().map(|l| l.digest.clone()) else { return Ok(None) };
    let gzip = registry.blob(at, &layer).await?;
    Ok(super::source::unpack_file(&gzip, max))
}

/// The digest and the config of the image at `r`, if the registry has it. The digest is of what
/// `r` names: an index (the image with its attestations) or a manifest; the config is of the
/// image for this machine's platform; the index's annotations, if it is one. With `remember`,
/// what a digest names is kept for the process (it cannot change): a runtime image then costs
/// one request per build, the one that resolves its tag.
async fn manifest_and_config(
    registry: &Registry,
    r: &ImageRef,
    remember: bool,
) -> Result<Option<(Digest, ImageConfig, BTreeMap<String, String>)>> {
    type Known = std::sync::Mutex<std::collections::HashMap<String, (ImageConfig, BTreeMap<String, String>)>>;
    static KNOWN: std::sync::OnceLock<Known> = std::sync::OnceLock::new();
    let known = KNOWN.get_or_init(Known::default);
    let Some(top) = registry.manifest_of(r).await? else { return Ok(None) };
    let key = format!("{}/{}@{}", r.registry, r.repository, top.digest);
    if remember {
        if let Some((config, annotations)) = known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            return Ok(Some((top.digest, config.clone(), annotations.clone())));
        }
    }
    let manifest = if top.is_index() {
        let digest = top.platform_manifest("linux", crate::edge::buildkit::export::oci_architecture())?;
        let missing = || RegistryError::Malformed(format!("{r}: index names {digest}, which the registry lacks"));
        registry.manifest(&r.repo(), digest.as_str()).await?.ok_or_else(missing)?
    } else {
        top.clone()
    };
    let config: ImageConfig = serde_json::from_slice(&registry.blob(&r.repo(), &manifest.config_digest()?).await?)
        .map_err(|e| ImageError::BadConfig { image: r.to_string(), detail: e.to_string() })?;
    let annotations = if top.is_index() { top.index()?.annotations() } else { BTreeMap::new() };
    if remember {
        let mut known = known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Runtime images are a few hundred at most; a bound all the same.
        if known.len() >= 1024 {
            known.clear();
        }
        known.insert(key, (config.clone(), annotations.clone()));
    }
    Ok(Some((top.digest, config, annotations)))
}

/// Digest, Env and Labels of a runtime image; None when the registry lacks it.
pub async fn image_facts(registry: &Registry, r: &ImageRef) -> Result<Option<ImageFacts>> {
    let Some((digest, config, _)) = manifest_and_config(registry, r, true).await? else { return Ok(None) };
    let env = config.env().to_vec();
    let labels = config.labels();
    Ok(Some(ImageFacts {
        reference: format!("{}/{}:{}", r.registry, r.repository, r.tag.clone().unwrap_or_else(|| "latest".into())),
        digest: Some(digest.to_string()),
        env,
        labels,
        history: config.history().to_vec(),
        diff_ids: config.rootfs.diff_ids,
    }))
}

/// The digest and labels of the image at `target`, if there is one, with its index's
/// annotations (what is true of one deployment only) over them.
pub async fn existing(registry: &Registry, target: &ImageRef) -> Result<Option<(Digest, BTreeMap<String, String>)>> {
    Ok(manifest_and_config(registry, target, false).await?.map(|(digest, config, annotations)| {
        let mut labels = config.labels();
        labels.extend(annotations);
        (digest, labels)
    }))
}

/// For each version of each catalog runtime, whether the registry at `host` has both its build
/// and its run image; asked a few at a time.
pub async fn runtime_image_presence(
    registry: &Registry,
    host: &str,
    catalog: &crate::core::catalog::RuntimeCatalog,
) -> std::collections::HashSet<(String, String)> {
    use futures_util::stream::{self, StreamExt};
    let has = |image: String| async move {
        let Ok(r) = ImageRef::parse(&format!("{host}/{image}")) else { return false };
        matches!(registry.manifest_of(&r).await, Ok(Some(_)))
    };
    let wanted = catalog.runtimes().iter().flat_map(|rt| rt.versions().into_iter().map(move |v| (rt, v)));
    stream::iter(wanted)
        .map(|(rt, version)| async move {
            let (build, run) = rt.images(version);
            (has(build).await && has(run).await).then(|| (rt.name.clone(), version.to_string()))
        })
        .buffer_unordered(16)
        .filter_map(|x| async move { x })
        .collect()
        .await
}
