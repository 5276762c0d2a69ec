//! `rebase` at the registry: reads the image, its provenance and both run images, writes the
//! moved image beside it. Registry operations only: the new run image's layers are mounted
//! into the image's repository (copied only across hosts), nothing is built or pulled whole.

use crate::core::catalog::RuntimeCatalog;
use crate::core::digest::Digest;
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::labels;
use crate::core::media_types::OCI_INDEX;
use crate::core::oci::{self, ImageConfig, ImageIndex, Platform, Statement};
pub use crate::core::rebase::Rebased;
use crate::core::rebase::{self, ImageParts, Refusal, RunImage};
use crate::edge::buildkit::export::oci_architecture;
use crate::edge::image::ImageError;
use crate::edge::registry::{Manifest, Registry, RegistryError};
use crate::edge::stand_in::RuntimeImages;
use crate::error::BuildError;
use std::collections::BTreeMap;
use std::time::Instant;

/// What a rebase came to: the image moved (or was on the version already), or a refusal that
/// says why it may not move and points to a rebuild. A refusal is an outcome, not a failure:
/// a roll-out rebuilds such a service.
#[derive(Debug, Clone, PartialEq)]
pub enum RebaseOutcome {
    Moved(Rebased),
    Refused(Refusal),
}

/// An image as stored: the top manifest (an index or the image), the image manifest for this
/// platform, its config, and the provenance statement if the index carries one. (`verify`
/// reads an image the same way.)
pub(crate) struct Stored {
    pub(crate) top: Manifest,
    pub(crate) index: Option<ImageIndex>,
    pub(crate) image: Manifest,
    pub(crate) parts: ImageParts,
    pub(crate) platform: Platform,
    pub(crate) provenance: Option<Statement>,
}

pub(crate) async fn read(registry: &Registry, r: &ImageRef, what: &str) -> Result<Option<Stored>, BuildError> {
    let at = r.repo();
    let Some(top) = registry.manifest(&at, &r.reference()).await? else { return Ok(None) };
    let (image, index) = if top.is_index() {
        let digest = top.platform_manifest("linux", oci_architecture())?;
        let missing =
            || RegistryError::Malformed(format!("{what} {r}: its index names {digest}, which the registry lacks"));
        (registry.manifest(&at, digest.as_str()).await?.ok_or_else(missing)?, Some(top.index()?))
    } else {
        (top.clone(), None)
    };
    let manifest = image.image()?;
    let config_bytes = registry.blob(&at, &manifest.config.digest).await?;
    let config: ImageConfig =
        oci::parse(&config_bytes, "image config", &format!("the config of {r}")).map_err(RegistryError::from)?;
    let platform = index
        .as_ref()
        .and_then(|i| i.manifests.iter().find(|m| m.digest == image.digest)?.platform.clone())
        .unwrap_or_else(|| Platform::new(&config.os, &config.architecture));
    let mut provenance = None;
    if let Some(att) = index.as_ref().and_then(|i| i.attestation_of(&image.digest)) {
        if let Some(m) = registry.manifest(&at, att.digest.as_str()).await? {
            if let Some(layer) = m.image()?.layers.first() {
                let bytes = registry.blob(&at, &layer.digest).await?;
                provenance = Some(
                    oci::parse(&bytes, "in-toto statement", &format!("the provenance of {r}"))
                        .map_err(RegistryError::from)?,
                );
            }
        }
    }
    Ok(Some(Stored { top, index, image, parts: ImageParts { manifest, config }, platform, provenance }))
}

/// Moves the image at `from` onto the run image of `to_version` of its runtime (from the
/// runtime registry of `images`, made first if it is missing and may be), writing it to
/// `target` (its tag, or by digest), with the
/// per-deployment annotations `deployment` on its index. The inner error: the image may not
/// move (the caller rebuilds it, or tells the user to); the outer: the registry failed.
pub async fn rebase(
    registry: &Registry,
    images: RuntimeImages<'_>,
    catalog: &RuntimeCatalog,
    from: &ImageRef,
    to_version: &str,
    target: &ImageRef,
    deployment: &BTreeMap<String, String>,
) -> Result<RebaseOutcome, BuildError> {
    let began = Instant::now();
    let shown = from.to_string();
    let old = read(registry, from, "image")
        .await?
        .ok_or_else(|| BuildError::user(format!("there is no image {shown} to rebase; give REGISTRY/REPOSITORY:TAG or @sha256:DIGEST of an image apprunner-build built")))?;
    let old_labels = old.parts.config.labels();
    let movable = match rebase::check(&shown, &old_labels, catalog, to_version) {
        Ok(m) => m,
        Err(refusal) => return Ok(RebaseOutcome::Refused(refusal)),
    };
    let commit = old_labels.get(labels::OCI_REVISION).cloned();

    let mut done = movable.rebased(target, to_version, commit);
    done.from_digest = Some(old.top.digest.clone());
    if movable.from_version == to_version {
        let image = name_again(registry, &old, from, target, &movable.runtime, to_version).await?;
        let seconds = began.elapsed().as_secs_f64();
        return Ok(RebaseOutcome::Moved(Rebased { image, unchanged: true, seconds, ..done }));
    }

    let base_ref = ImageRef::parse(&movable.base_name)?;
    let base_at = ImageRef { digest: Some(movable.base_digest.clone()), ..base_ref };
    let Some(old_run) = read(registry, &base_at, "run image").await? else {
        return Ok(RebaseOutcome::Refused(Refusal::BaseMissing {
            image: shown,
            base: format!("{}@{}", movable.base_name, movable.base_digest),
        }));
    };
    let (run_ref, new_run) = run_image_of(registry, &images, catalog, &movable.runtime, to_version).await?;

    let moved = match rebase::rebase_image(
        &shown,
        &old.parts,
        &old.image.digest,
        &movable,
        &old_run.parts,
        &new_run,
        to_version,
    ) {
        Ok(m) => m,
        Err(refusal) => return Ok(RebaseOutcome::Refused(refusal)),
    };
    let subject = rebase::purl(&target.to_string(), None);
    let statement = rebase::rebased_provenance(
        old.provenance.as_ref(),
        &subject,
        &moved,
        &old.image.digest,
        &movable,
        &new_run,
        to_version,
    );
    let attestation = rebase::attestation(&statement);
    let index = rebase::rebased_index(old.index.as_ref(), &old.platform, &moved, &attestation, deployment);

    let written =
        Written { moved: &moved, media_type: &old.image.media_type, attestation: &attestation, index: &index };
    let (index_digest, copied) =
        write(registry, target, &written, [(&run_ref, &moved.run_layers), (from, &moved.app_layers)]).await?;
    done.copied_bytes = copied;
    done.image = target.at(&index_digest);
    done.run_image = new_run.reference;
    done.run_image_digest = Some(new_run.digest);
    done.seconds = began.elapsed().as_secs_f64();
    Ok(RebaseOutcome::Moved(done))
}

/// A rebase onto the version the image is on already: the target names the same image, in the
/// same repository (under another it would be a copy, not a rebase). Returns the image.
async fn name_again(
    registry: &Registry,
    old: &Stored,
    from: &ImageRef,
    target: &ImageRef,
    runtime: &str,
    version: &str,
) -> Result<ImageRef, BuildError> {
    if target.name() != from.name() {
        return Err(BuildError::user(format!(
            "{from} is on {runtime} {version} already: there is nothing to move; to have it under {} too, copy it with your registry's tools, or give an --output in {}",
            target.name(),
            from.name()
        )));
    }
    let tag = target.tag.clone().unwrap_or_else(|| old.top.digest.to_string());
    registry.put_manifest(&target.repo(), &tag, &old.top.bytes, &old.top.media_type).await?;
    Ok(target.at(&old.top.digest))
}

/// The run image of `runtime` `to_version` in the runtime images' registry, made first by the
/// stand-in builder when it is missing and one can be; its reference and what it holds.
async fn run_image_of(
    registry: &Registry,
    images: &RuntimeImages<'_>,
    catalog: &RuntimeCatalog,
    runtime: &str,
    to_version: &str,
) -> Result<(ImageRef, RunImage), BuildError> {
    let rt = catalog.lookup(runtime)?;
    let runtime_host = images.host;
    let run_name = format!("{runtime_host}/{}", rt.images(to_version).1);
    let run_ref = ImageRef::parse(&run_name)?;
    let mut found = read(registry, &run_ref, "run image").await?;
    if let (None, Some(builder)) = (&found, images.builder.filter(|_| rt.stand_in.is_some())) {
        builder.build(&run_name, runtime_host, &rt.name, to_version, images.log).await?;
        found = read(registry, &run_ref, "run image").await?;
    }
    let found = found.ok_or_else(|| ImageError::MissingRuntimeImage {
        what: "run image".into(),
        reference: run_name.clone(),
        registry: runtime_host.to_string(),
        remedy: crate::edge::stand_in::remedy(rt, to_version, runtime_host, images.builder),
    })?;
    let run = RunImage { reference: run_ref.to_string(), digest: found.top.digest.clone(), parts: found.parts };
    Ok((run_ref, run))
}

/// What a rebase writes at the target.
struct Written<'a> {
    moved: &'a rebase::RebasedImage,
    /// The image manifest's media type (the old one's).
    media_type: &'a str,
    attestation: &'a rebase::Attestation,
    index: &'a [u8],
}

/// Writes the moved image to `target`: the layers first (from the repositories that hold them),
/// then the blobs and manifests that name them, the index last. Returns the index's digest and
/// the bytes copied.
async fn write(
    registry: &Registry,
    target: &ImageRef,
    w: &Written<'_>,
    layers: [(&ImageRef, &Vec<Digest>); 2],
) -> Result<(Digest, usize), BuildError> {
    let at = target.repo();
    let sources: Vec<(Repo, &Vec<Digest>)> = layers.iter().map(|(from, digests)| (from.repo(), *digests)).collect();
    let carried = sources
        .iter()
        .flat_map(|(from, digests)| digests.iter().map(move |d| (from, d)))
        .map(|(from, d)| registry.carry_blob(&at, d, from));
    let copied = futures_util::future::try_join_all(carried).await?.iter().sum();
    registry.put_blob(&at, &w.moved.config).await?;
    registry.put_manifest(&at, w.moved.manifest_digest.as_str(), &w.moved.manifest, w.media_type).await?;
    registry.put_blob(&at, &w.attestation.statement).await?;
    registry.put_blob(&at, &w.attestation.config).await?;
    let attestation_digest = Digest::of(&w.attestation.manifest);
    registry
        .put_manifest(&at, attestation_digest.as_str(), &w.attestation.manifest, crate::core::media_types::OCI_MANIFEST)
        .await?;
    let index_digest = Digest::of(w.index);
    let reference = target.tag.clone().unwrap_or_else(|| index_digest.to_string());
    registry.put_manifest(&at, &reference, w.index, OCI_INDEX).await?;
    Ok((index_digest, copied))
}
