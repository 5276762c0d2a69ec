//! What every image pushed gets before it is reported, built, reused, redeployed or rebased: its
//! SBOM beside `BuildKit`'s provenance (a new index, at the target's tag), then, with a signing
//! key, its signature and the worker's own statements about it, signed: its SLSA v1 provenance
//! and its SBOM, in cosign's attestation manifest. The key never reaches a build: it signs here,
//! after the image is pushed.

use super::narration::Narration;
use super::prepare::Prepared;
use super::settings::Settings;
use crate::core::digest::Digest;
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::oci::slsa::SLSA_PROVENANCE_V1;
use crate::core::oci::{Statement, Subject};
use crate::core::provenance::{self, AnyProvenance, Configuration, Run, SourceParameters};
use crate::core::request::{BuildRequest, ConfigInput, Revision, SourceLocation};
use crate::core::sbom::SPDX_PREDICATE;
use crate::core::shown::redact_userinfo;
use crate::edge::registry::Registry;
use crate::edge::signing;
use crate::error::BuildError;
use crate::log::DeploymentLog;
use std::time::Instant;

/// The time now, as provenance writes it (RFC 3339, UTC, seconds).
pub(super) fn now() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// This deployment's run: this builder, from `started_on` until now.
pub(super) fn run_of(settings: &Settings, operation_id: &str, started_on: &str) -> Run {
    Run {
        builder_id: settings.builder_id.clone(),
        builder_version: [("apprunner-build".to_string(), env!("CARGO_PKG_VERSION").to_string())].into(),
        invocation_id: operation_id.to_string(),
        started_on: started_on.to_string(),
        finished_on: now(),
    }
}

/// The provenance of the image `prepared` builds for `req`, when there is a key to sign it.
pub(super) fn of_build(
    settings: &Settings,
    req: &BuildRequest,
    prepared: &Prepared,
    started_on: &str,
) -> Option<AnyProvenance> {
    settings.signer.as_ref()?;
    let checkout = &prepared.checkout;
    let source = SourceParameters {
        repository: match &req.location {
            SourceLocation::Git(url) => redact_userinfo(url),
            SourceLocation::Local(path) => format!("file://{}", path.display()),
        },
        r#ref: match &req.revision {
            Revision::Branch(name) | Revision::Commit(name) => Some(name.clone()),
            Revision::DefaultBranch => checkout.branch.clone(),
            Revision::WorkingTree => None,
        },
        commit: checkout.commit.clone(),
        uncommitted_changes: checkout.dirty,
        source_directory: prepared.plan.source_dir.clone(),
        configuration: Configuration::new(
            match req.config {
                ConfigInput::Repository => "REPOSITORY",
                ConfigInput::Api(_) => "API",
            },
            &prepared.config_digest,
        ),
        runtime: prepared.config.runtime.clone(),
        runtime_version: prepared.config.runtime_version.clone(),
    };
    let run = run_of(settings, &req.operation_id, started_on);
    let built = provenance::of_build(source, &prepared.plan, &prepared.solves.images(), settings.no_cache, &run);
    Some(any(&built))
}

/// A provenance of any parameters, as one read back would be.
pub(super) fn any(provenance: &impl serde::Serialize) -> AnyProvenance {
    let value = serde_json::to_value(provenance).expect("a provenance serialises");
    serde_json::from_value(value).expect("a provenance reads back")
}

/// The provenance `image` (at its digest) carries signed by this worker's key; None without a
/// key, or when it has none by it.
pub(super) async fn signed_provenance(
    settings: &Settings,
    registry: &Registry,
    image: &ImageRef,
) -> Result<Option<AnyProvenance>, BuildError> {
    let (Some(signer), Some(digest)) = (&settings.signer, &image.digest) else { return Ok(None) };
    let found =
        signing::signed_statement(registry, &image.repo(), digest, SLSA_PROVENANCE_V1, &signer.public_key()).await?;
    Ok(found
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Statement<AnyProvenance>>(&bytes).ok())
        .map(|s| s.predicate))
}

/// Seals the image `digest` pushed to `target`: its SBOM, then its signature and, with a key,
/// `provenance` and the SBOM signed as attestations. Returns the digest that names the image,
/// and its index's bytes when they are at hand (the service's record keeps them for a redeploy).
pub(super) async fn seal(
    settings: &Settings,
    registry: &Registry,
    target: &ImageRef,
    digest: Digest,
    log: &DeploymentLog,
    provenance: Option<AnyProvenance>,
) -> Result<(Digest, Option<Vec<u8>>), BuildError> {
    let started = Instant::now();
    let (digest, index, sbom) = if settings.sbom {
        let findings = Repo::new(&settings.registry, crate::edge::sbom::FINDINGS_REPOSITORY);
        let wanted = settings.signer.is_some();
        let attached = crate::edge::sbom::attach(registry, target, &digest, &findings, wanted).await?;
        if let Some(counts) = &attached.packages {
            Narration(log).sbom_attached(counts);
        }
        (attached.index_digest, attached.index, attached.statement)
    } else {
        (digest, None, None)
    };
    let sbom_seconds = started.elapsed().as_secs_f64();
    sign(settings, registry, target, &digest, log, provenance, sbom).await?;
    // docker/bench-rebuild reads this line for what signing costs a rebuild.
    tracing::debug!(
        "sealed {target}: SBOM {sbom_seconds:.3}s, signature and attestations {:.3}s",
        started.elapsed().as_secs_f64() - sbom_seconds
    );
    Ok((digest, index))
}

/// The signature part of `seal`: the image signed, and `provenance` and the SBOM `statement`
/// (about the image manifest) signed about the index `digest`.
async fn sign(
    settings: &Settings,
    registry: &Registry,
    target: &ImageRef,
    digest: &Digest,
    log: &DeploymentLog,
    provenance: Option<AnyProvenance>,
    sbom: Option<Vec<u8>>,
) -> Result<(), BuildError> {
    let Some(signer) = &settings.signer else { return Ok(()) };
    let at = target.repo();
    let name = format!("{}/{}", at.registry, at.repository);
    let mut statements = Vec::new();
    if let Some(p) = &provenance {
        statements.push((SLSA_PROVENANCE_V1, provenance::statement(&name, digest, p)));
    }
    // The SBOM as the index's attestation holds it, about the index instead.
    if let Some(Ok(mut sbom)) = sbom.map(|b| serde_json::from_slice::<Statement<serde_json::Value>>(&b)) {
        sbom.subject = vec![Subject::at(&name, digest)];
        statements.push((SPDX_PREDICATE, crate::core::oci::to_bytes(&sbom)));
    }
    let signed: Vec<(&str, &[u8])> = statements.iter().map(|(t, b)| (*t, b.as_slice())).collect();
    // The signature and the attestations are of the same index, under tags of their own: written
    // at once.
    let attesting = async {
        if signed.is_empty() {
            Ok(None)
        } else {
            signer.attest(registry, &at, digest, &signed).await.map(Some)
        }
    };
    let (signature_tag, attestation_tag) = tokio::try_join!(signer.sign_image(registry, &at, digest), attesting)?;
    let say = Narration(log);
    say.signed(&signer.fingerprint, &signature_tag);
    if let Some(tag) = attestation_tag {
        let what: Vec<&str> =
            statements.iter().map(|(t, _)| if *t == SPDX_PREDICATE { "SBOM" } else { "provenance" }).collect();
        say.attested(&what.join(" and "), &signer.fingerprint, &tag);
    }
    Ok(())
}
