//! `rebase` at the registry: reads the image, its provenance and both run images, writes the
//! moved image beside it. Registry operations only: the new run image's layers are mounted
//! into the image's repository (copied only across hosts), nothing is built or pulled whole.

use crate::core::catalog::RuntimeCatalog;
use crate::core::digest::sha256_digest;
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
        (registry.manifest(&at, &digest).await?.ok_or_else(missing)?, Some(top.index()?))
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
        if let Some(m) = registry.manifest(&at, &att.digest).await? {
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
    let tag_or = |digest: &str| target.tag.clone().unwrap_or_else(|| digest.to_string());
    let at = target.repo();

    let mut done = Rebased {
        image: String::new(),
        runtime: movable.runtime.clone(),
        from_version: movable.from_version.clone(),
        to_version: to_version.to_string(),
        run_image: movable.base_name.clone(),
        unchanged: false,
        copied_bytes: 0,
        seconds: 0.0,
        commit,
    };
    if movable.from_version == to_version {
        // Already there: the target names the same image.
        if target.name() != from.name() {
            return Err(BuildError::user(format!(
                "{shown} is on {} {to_version} already: there is nothing to move; to have it under {} too, copy it with your registry's tools, or give an --output in {}",
                movable.runtime,
                target.name(),
                from.name()
            )));
        }
        registry.put_manifest(&at, &tag_or(&old.top.digest), &old.top.bytes, &old.top.media_type).await?;
        done.image = target.with_digest(&old.top.digest);
        done.unchanged = true;
        done.seconds = began.elapsed().as_secs_f64();
        return Ok(RebaseOutcome::Moved(done));
    }

    let base_ref = ImageRef::parse(&movable.base_name)?;
    let base_at = ImageRef { digest: Some(movable.base_digest.clone()), ..base_ref };
    let Some(old_run) = read(registry, &base_at, "run image").await? else {
        return Ok(RebaseOutcome::Refused(Refusal::BaseMissing {
            image: shown,
            base: format!("{}@{}", movable.base_name, movable.base_digest),
        }));
    };
    let rt = catalog.lookup(&movable.runtime)?;
    let runtime_host = images.host;
    let run_name = format!("{runtime_host}/{}", rt.images(to_version).1);
    let run_ref = ImageRef::parse(&run_name)?;
    let mut new_run = read(registry, &run_ref, "run image").await?;
    if let (None, Some(builder)) = (&new_run, images.builder.filter(|_| rt.stand_in.is_some())) {
        builder.build(&run_name, runtime_host, &rt.name, to_version, images.log).await?;
        new_run = read(registry, &run_ref, "run image").await?;
    }
    let new_run = new_run.ok_or_else(|| ImageError::MissingRuntimeImage {
        what: "run image".into(),
        reference: run_name.clone(),
        registry: runtime_host.to_string(),
        remedy: crate::edge::stand_in::remedy(rt, to_version, runtime_host, images.builder),
    })?;
    let new_run = RunImage { reference: run_ref.to_string(), digest: new_run.top.digest.clone(), parts: new_run.parts };

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
    done.image = target.with_digest(&index_digest);
    done.run_image = new_run.reference;
    done.seconds = began.elapsed().as_secs_f64();
    Ok(RebaseOutcome::Moved(done))
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
    layers: [(&ImageRef, &Vec<String>); 2],
) -> Result<(String, usize), BuildError> {
    let at = target.repo();
    let sources: Vec<(Repo, &Vec<String>)> = layers.iter().map(|(from, digests)| (from.repo(), *digests)).collect();
    let carried = sources
        .iter()
        .flat_map(|(from, digests)| digests.iter().map(move |d| (from, d)))
        .map(|(from, d)| registry.carry_blob(&at, d, from));
    let copied = futures_util::future::try_join_all(carried).await?.iter().sum();
    registry.put_blob(&at, &w.moved.config).await?;
    registry.put_manifest(&at, &w.moved.manifest_digest, &w.moved.manifest, w.media_type).await?;
    registry.put_blob(&at, &w.attestation.statement).await?;
    registry.put_blob(&at, &w.attestation.config).await?;
    let attestation_digest = sha256_digest(&w.attestation.manifest);
    registry
        .put_manifest(&at, &attestation_digest, &w.attestation.manifest, crate::core::media_types::OCI_MANIFEST)
        .await?;
    let index_digest = sha256_digest(w.index);
    let reference = target.tag.clone().unwrap_or_else(|| index_digest.clone());
    registry.put_manifest(&at, &reference, w.index, OCI_INDEX).await?;
    Ok((index_digest, copied))
}
