//! One build, end to end: source -> configuration -> runtime -> plan -> LLB -> `BuildKit` ->
//! image, and a rebase. The pure steps are in `core` and `llb`; this is where they meet the
//! edges: `prepare` (before `BuildKit`), `image_reuse` (the build key, an image taken again), `solve`
//! (the solves and their narration), `seal` (SBOM, signature, signed provenance), `settings` (how
//! the services are reached).

mod image_reuse;
mod narration;
mod prepare;
mod recent;
mod run;
mod seal;
mod settings;
mod solve;
mod turns;
mod unchanged;
mod verify;

pub use narration::{Narration, ReusedFrom};
pub use prepare::{prepare, read_config, ImageLookup, Prepared};
pub use recent::RecentImages;
pub use settings::{Handles, Settings, CACHE_REPOSITORY, CA_REPOSITORY, SOURCE_REPOSITORY};
pub use turns::SolveTurns;
pub use verify::{verify, Overrides, Verdict, VERIFY_TAG};

use crate::core::catalog::RuntimeCatalog;
use crate::core::digest::Digest;
use crate::core::image_ref::ImageRef;
use crate::core::request::{self, BuildRequest};
use crate::core::result::BuildResult;
use crate::edge::rebase::RebaseOutcome;
use crate::edge::stand_in::{self};
use crate::error::BuildError;
use crate::log::DeploymentLog;

/// Which attempt of a deployment a build is: the first of one, for a build run once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub number: u32,
    pub of: u32,
    /// The deployment's log has begun on a worker that stopped or was lost before it ended:
    /// this one goes on with it.
    pub resumed: bool,
}

impl Attempt {
    pub const ONLY: Attempt = Attempt { number: 1, of: 1, resumed: false };

    /// Whether a deployment that failed with `e` on this attempt is tried again: a transient
    /// fault, with attempts left. (The queue's retry decision is this.)
    pub fn will_retry(self, e: &BuildError) -> bool {
        e.class == crate::error::ErrorClass::Transient && self.number < self.of
    }
}

/// Runs a whole build, streaming the deployment log; the result on success.
pub async fn run(settings: &Settings, req: &BuildRequest, log: &DeploymentLog) -> Result<BuildResult, BuildError> {
    run_attempt(settings, req, log, Attempt::ONLY).await
}

/// Runs attempt `attempt` of a deployment. The log has one start and one end per deployment:
/// the first attempt says the deployment started, a later one that it is one, one that goes on
/// after its worker stopped that it resumed; an attempt that
/// will be retried ends without the failure lines (its caller says what happens next).
pub async fn run_attempt(
    settings: &Settings,
    req: &BuildRequest,
    log: &DeploymentLog,
    attempt: Attempt,
) -> Result<BuildResult, BuildError> {
    let say = Narration(log);
    if attempt.resumed {
        say.resumed(&req.operation_id);
    } else if attempt.number <= 1 {
        say.started(&req.operation_id, &req.trigger);
    } else {
        say.attempt_started(attempt);
    }
    // The time limit bounds the whole build: fetch, plan, solve, push. Whatever is running when
    // it expires is dropped: git processes are killed, BuildKit's solves cancelled.
    let result = match tokio::time::timeout(settings.timeout, Box::pin(run::run(settings, req, log))).await {
        Ok(result) => result,
        Err(_) => Err(BuildError::user(format!(
            "the build did not finish within its time limit of {} seconds and was cancelled",
            settings.timeout.as_secs()
        ))),
    };
    match &result {
        Ok(o) => say.succeeded(&req.operation_id, &o.image),
        Err(e) if attempt.will_retry(e) => {}
        Err(e) => say.failed(&req.operation_id, e),
    }
    result
}

/// Moves the image `from` onto the run image of `to_version`, writing `target` with the
/// deployment `operation_id`; says in the log what it did, or why it could not (the inner error).
pub async fn rebase(
    settings: &Settings,
    from: &ImageRef,
    to_version: &str,
    target: &ImageRef,
    operation_id: &str,
    log: &DeploymentLog,
) -> Result<RebaseOutcome, BuildError> {
    request::check_target(target, &settings.allowed_targets)?;
    let started_on = seal::now();
    let registry = settings.registry_client();
    let say = Narration(log);
    say.rebasing(&from.to_string(), to_version);
    let deployment = crate::core::plan::deployment_annotations(operation_id);
    let catalog = RuntimeCatalog::builtin();
    let images = stand_in::RuntimeImages { host: &settings.registry, builder: settings.stand_ins.as_ref(), log };
    let rebasing = crate::edge::rebase::rebase(&registry, images, catalog, from, to_version, target, &deployment);
    let out = tokio::time::timeout(settings.timeout, rebasing).await.map_err(|_| {
        BuildError::transient(format!("the rebase did not finish within {} seconds", settings.timeout.as_secs()))
    })??;
    let mut out = out;
    if let RebaseOutcome::Moved(r) = &mut out {
        let written = r.image.digest.clone().ok_or_else(|| BuildError::internal("a rebase named no digest"))?;
        // On the version already, the image is the one it was, its attestations with it.
        let provenance = if r.unchanged {
            None
        } else {
            rebase_provenance(settings, &registry, from, r, operation_id, &started_on).await?
        };
        let (digest, _) = seal::seal(settings, &registry, target, written, log, provenance).await?;
        r.image = target.at(&digest);
    }
    match &out {
        RebaseOutcome::Moved(r) => say.rebased(r),
        RebaseOutcome::Refused(refusal) => say.rebase_refused(refusal),
    }
    Ok(out)
}

/// The provenance of the image a rebase moved (`r`) from `from`: the image it came from, the run
/// image it now sits on, and, from `from`'s own signed provenance, how that was built.
async fn rebase_provenance(
    settings: &Settings,
    registry: &crate::edge::registry::Registry,
    from: &ImageRef,
    r: &crate::edge::rebase::Rebased,
    operation_id: &str,
    started_on: &str,
) -> Result<Option<crate::core::provenance::AnyProvenance>, BuildError> {
    use crate::core::provenance::{self, RebaseFacts, RebaseParameters};
    let (Some(_), Some(from_digest), Some(run_digest)) = (&settings.signer, &r.from_digest, &r.run_image_digest) else {
        return Ok(None);
    };
    let moved = from.at(from_digest);
    let built = seal::signed_provenance(settings, registry, &moved).await?;
    let facts = RebaseFacts {
        parameters: RebaseParameters {
            image: moved.to_string(),
            runtime: r.runtime.clone(),
            from_version: r.from_version.clone(),
            to_version: r.to_version.clone(),
            built: built.and_then(|p| provenance::recorded(&p).ok()).map(|rec| rec.source),
        },
        from: from_digest.clone(),
        run_image: (r.run_image.clone(), run_digest.clone()),
    };
    let run = seal::run_of(settings, operation_id, started_on);
    Ok(Some(seal::any(&provenance::of_rebase(facts, &run))))
}

/// Keeps the image just written at `target` (`digest`) as this worker's latest of its build key.
fn remember(settings: &Settings, key: Option<&str>, target: &ImageRef, digest: &Digest) {
    if let Some(key) = key {
        settings.handles.recent_images.remember(key, target.at(digest));
    }
}
