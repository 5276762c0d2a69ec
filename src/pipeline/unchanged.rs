//! A deployment of its service's unchanged inputs, recognised before anything is fetched
//! (`core::redeploy`): the commit asked of the remote (one `git ls-remote`, none for a full
//! hash), the runtime tags resolved, and the service's current image taken under a new index.
//! No clone, no plan, no `BuildKit`.

use super::image_reuse::take_image;
use super::narration::Narration;
use super::prepare::{ca_bundle_layer, runtime_ref, Prepared};
use super::settings::Settings;
use crate::core::digest::Digest;
use crate::core::plan::deployment_annotations;
use crate::core::provenance::AnyProvenance;
use crate::core::redeploy::{self, KnownInputs};
use crate::core::request::{BuildRequest, ConfigInput, SourceLocation};
use crate::core::result::{BuildResult, PhaseTimings, PriorBuild, ReportedBuild};
use crate::core::shown::redact_userinfo;
use crate::edge::build_id::own_build_id;
use crate::edge::registry::Registry;
use crate::edge::{image, source};
use crate::error::BuildError;
use crate::log::DeploymentLog;
use std::collections::BTreeMap;
use std::time::Instant;

/// The known inputs of `req` building `commit`; None when they cannot be said (a local
/// directory, a binary without a build id, a source directory that leaves the repository).
fn known_inputs(
    settings: &Settings,
    req: &BuildRequest,
    commit: &str,
    ca_bundle: Option<String>,
) -> Option<KnownInputs> {
    let SourceLocation::Git(url) = &req.location else { return None };
    // Every setting is named here, so a new one is sorted into "shapes an image" or not.
    let Settings {
        buildkit: _,
        registry,
        ca_bundle: _, // by its content: `ca_bundle`
        network,
        timeout: _,
        registry_auth: _,
        insecure_registries: _,
        git_credentials: _,
        allowed_targets: _,
        pack_limits,
        fleet_cache,
        warm_steps,
        image_reuse: _,
        no_cache,
        runtime_pins,
        sbom,
        signer,
        builder_id: _, // the provenance's, not the image's
        runtime_holds,
        stand_ins: _,
        handles: _,
    } = settings;
    let shaping = BTreeMap::from([
        ("registry", registry.clone()),
        ("network", format!("{network:?}")),
        ("pack limits", format!("{pack_limits:?}")),
        ("fleet cache", format!("{fleet_cache:?}")),
        ("warm steps", warm_steps.to_string()),
        ("no cache", no_cache.to_string()),
        ("runtime pins", format!("{runtime_pins:?}")),
        ("sbom", sbom.to_string()),
        ("signer", format!("{:?}", signer.as_ref().map(|s| &s.fingerprint))),
        ("runtime holds", format!("{runtime_holds:?}")),
    ]);
    Some(KnownInputs {
        builder: own_build_id()?.to_string(),
        repository: redact_userinfo(url),
        commit: commit.to_string(),
        source_dir: source::normalize_source_dir(&req.source_dir).ok()?,
        configuration: match &req.config {
            ConfigInput::Repository => "repository".to_string(),
            ConfigInput::Api(values) => values.to_string(),
        },
        target_repository: req.target.name(),
        settings: shaping,
        ca_bundle,
    })
}

/// What the service's record keeps of a build that gave `prepared`'s image with `build_key`;
/// None when a redeploy could not be recognised by it (a working tree, a runtime image not
/// pinned, no build id).
pub(super) fn prior_build(
    settings: &Settings,
    req: &BuildRequest,
    prepared: &Prepared,
    build_key: Option<&str>,
) -> Option<PriorBuild> {
    let commit =
        prepared.checkout.commit.as_deref().filter(|c| redeploy::is_full_commit(c) && !prepared.checkout.dirty)?;
    if prepared.runtime_images.len() != 2 {
        return None;
    }
    let ca = prepared.ca_layer.as_ref().map(|l| l.digest.to_string());
    let inputs = known_inputs(settings, req, commit, ca)?;
    Some(PriorBuild {
        fingerprint: redeploy::fingerprint(&inputs),
        build_key: build_key?.to_string(),
        runtime_images: prepared.runtime_images.clone(),
        reported: ReportedBuild::of(&prepared.plan, &prepared.config),
        index: None,
    })
}

/// When `req` deploys its service's unchanged inputs (`req.prior`, of `req.current_image`):
/// writes an index for this deployment over the current image's manifests at the target and
/// returns the build's result, its index not yet sealed, and (with a signing key) the current
/// image's signed provenance. None (a miss) whenever that cannot be said for sure, or a key
/// finds no provenance of its own to carry; the ordinary build follows.
pub(super) async fn redeploy(
    settings: &Settings,
    registry: &Registry,
    req: &BuildRequest,
    log: &DeploymentLog,
) -> Result<Option<(BuildResult, Digest, Option<AnyProvenance>)>, BuildError> {
    let (Some(prior), Some(current)) = (&req.prior, &req.current_image) else { return Ok(None) };
    if current.repo() != req.target.repo() || current.digest.is_none() {
        return Ok(None);
    }
    let asking = Instant::now();
    let Some(commit) = source::remote_commit(&req.location, &req.revision, settings.git_credentials.as_deref()).await
    else {
        return Ok(None);
    };
    let ca = ca_bundle_layer(settings)?.map(|l| l.digest.to_string());
    let Some(inputs) = known_inputs(settings, req, &commit, ca) else { return Ok(None) };
    if redeploy::fingerprint(&inputs) != prior.fingerprint {
        return Ok(None);
    }
    for (reference, digest) in &prior.runtime_images {
        let now = image::image_facts(registry, &runtime_ref(settings, reference)?).await.ok().flatten();
        if now.and_then(|f| f.digest).as_deref() != Some(digest) {
            return Ok(None);
        }
    }
    let built = super::seal::signed_provenance(settings, registry, current).await?;
    if settings.signer.is_some() && built.is_none() {
        return Ok(None);
    }
    let fetch = asking.elapsed().as_secs_f64();
    let taking = Instant::now();
    let deployment = deployment_annotations(&req.operation_id);
    let target = &req.target;
    // The record's own copy of the current index spares reading it (a digest names its bytes).
    let known = current.digest.as_ref().and_then(|d| prior.index_of(d));
    let Some(taken) = take_image(registry, target, current, known, &prior.build_key, &deployment).await? else {
        return Ok(None);
    };
    let key = &prior.build_key[..12];
    Narration(log).redeployed(&current.to_string(), &target.to_string(), &commit, key, taken.built_by.as_deref());
    let phases = PhaseTimings { fetch, plan: 0.0, solve: 0.0, export: taking.elapsed().as_secs_f64() };
    let image = target.with_digest(&taken.digest);
    let prior = prior.clone().with_index(Some(&taken.index));
    let result = prior.reported.clone().result(image, Some(commit), Vec::new(), false, phases, Some(prior));
    Ok(Some((result, taken.digest, built)))
}
