//! One build run: the target checked and a redeploy of unchanged inputs tried; then the
//! prepared build (`Planned`) takes an image built already with its build key, or uploads its
//! source and solves. Its `PhaseClock` says where the time went.

use super::image_reuse::{build_key_of, keyed_exporter, reuse_image};
use super::narration::{Narration, ReusedFrom};
use super::prepare::{prepare, ImageLookup, Prepared};
use super::remember;
use super::seal::{self, seal};
use super::settings::{Settings, CA_REPOSITORY, SOURCE_REPOSITORY};
use super::solve::SolveSession;
use super::unchanged;
use crate::core::digest::Digest;
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::request::{self, BuildRequest};
use crate::core::result::{BuildResult, PhaseTimings, PriorBuild, ReportedBuild, StageTiming};
use crate::edge::buildkit::Exporter;
use crate::edge::image;
use crate::edge::registry::Registry;
use crate::error::BuildError;
use crate::log::DeploymentLog;
use std::time::Instant;

/// Where a build's time went (`PhaseTimings`), from the moments its phases began: fetching and
/// planning from the start, solving once the source is uploaded.
struct PhaseClock {
    began: Instant,
    fetch: f64,
    /// Seconds spent planning and uploading, once they are done.
    plan: Option<f64>,
    /// When solving began.
    solving: Option<Instant>,
}

impl PhaseClock {
    fn start() -> Self {
        Self { began: Instant::now(), fetch: 0.0, plan: None, solving: None }
    }

    /// Planning (with the source's upload) is over.
    fn planned(&mut self) {
        self.plan = Some(self.began.elapsed().as_secs_f64() - self.fetch);
    }

    fn solving(&mut self) {
        self.solving = Some(Instant::now());
    }

    /// The phases so far, of which the last `export` seconds were the export (or the look for
    /// an image to take instead).
    fn phases(&self, export: f64) -> PhaseTimings {
        let (plan, solve) = match (self.plan, self.solving) {
            (Some(plan), Some(solving)) => (plan, (solving.elapsed().as_secs_f64() - export).max(0.0)),
            (plan, _) => {
                (plan.unwrap_or_else(|| (self.began.elapsed().as_secs_f64() - self.fetch - export).max(0.0)), 0.0)
            }
        };
        PhaseTimings { fetch: self.fetch, plan, solve, export }
    }
}

/// Runs one build, without its time limit (`run_attempt` holds that).
pub(super) async fn run(
    settings: &Settings,
    req: &BuildRequest,
    log: &DeploymentLog,
) -> Result<BuildResult, BuildError> {
    let registry = settings.registry_client();
    let target = &req.target;
    request::check_target(target, &settings.allowed_targets)?;
    if target.digest.is_some() {
        return Err(BuildError::user(format!(
            "target image {target} names a digest; give a repository and tag, e.g. {}:latest",
            target.name()
        )));
    }
    let started_on = seal::now();
    let reusing = settings.image_reuse && !settings.no_cache;
    if reusing {
        if let Some((mut redeployed, digest, built)) =
            Box::pin(unchanged::redeploy(settings, &registry, req, log)).await?
        {
            // The image it takes was sealed under the same settings (they are in the
            // fingerprint): its SBOM is there. A signature and attestations are of an index, so
            // with a key this one gets its own, its provenance the image's, run by this
            // deployment; without one there is nothing to add.
            if let Some(built) = built {
                let run = seal::run_of(settings, &req.operation_id, &started_on);
                let carried = Some(crate::core::provenance::carried(built, &run));
                let (sealed, _) = seal(settings, &registry, target, digest, log, carried).await?;
                redeployed.image = target.with_digest(&sealed);
            }
            return Ok(redeployed);
        }
    }
    let mut clock = PhaseClock::start();
    let prepared = prepare(settings, req, ImageLookup::Required(&registry), log).await?;
    clock.fetch = prepared.fetch_seconds;
    Narration(log).planned(&prepared.plan);
    let exporter = keyed_exporter(settings, target, &prepared);
    let key = build_key_of(&exporter.attributes).map(str::to_string);
    let prior = unchanged::prior_build(settings, req, &prepared, key.as_deref());
    let planned = Planned { settings, registry, req, log, prepared, key, prior, reusing, clock, started_on };
    if let Some(taken) = planned.take_built(&exporter).await? {
        return Ok(taken);
    }
    planned.build(exporter).await
}

/// A build once prepared: its plan, its build key, and what a record would keep of it.
struct Planned<'a> {
    settings: &'a Settings,
    registry: Registry,
    req: &'a BuildRequest,
    log: &'a DeploymentLog,
    prepared: Prepared,
    key: Option<String>,
    prior: Option<PriorBuild>,
    reusing: bool,
    clock: PhaseClock,
    /// When the deployment began, as its provenance says.
    started_on: String,
}

impl Planned<'_> {
    /// An image this worker pushed lately with the same build key, by digest (`recent`).
    fn recent(&self) -> Option<ImageRef> {
        self.key.as_deref().and_then(|key| self.settings.handles.recent_images.get(key))
    }

    /// The image at the target, the service's current image or a recent push, when one was built
    /// with this build's key: taken under a new index, nothing uploaded or solved.
    async fn take_built(&self, exporter: &Exporter) -> Result<Option<BuildResult>, BuildError> {
        if !self.reusing {
            return Ok(None);
        }
        let looking = Instant::now();
        let target = &self.req.target;
        let recent = self.recent();
        let candidates: Vec<(ReusedFrom, &ImageRef)> = [
            Some((ReusedFrom::Target, target)),
            self.req.current_image.as_ref().map(|c| (ReusedFrom::ServiceCurrent, c)),
            recent.as_ref().map(|r| (ReusedFrom::RecentPush, r)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let deployment = &self.prepared.plan.image.deployment;
        let found =
            reuse_image(&self.registry, target, &candidates, &exporter.attributes, deployment, self.log).await?;
        match found {
            Some(digest) => Ok(Some(self.taken(digest, looking.elapsed().as_secs_f64()).await?)),
            None => Ok(None),
        }
    }

    /// Uploads the source (and the CA bundle), then solves and seals the image.
    async fn build(mut self, exporter: Exporter) -> Result<BuildResult, BuildError> {
        let (settings, target, say) = (self.settings, &self.req.target, Narration(self.log));
        let plan = &self.prepared.plan;
        let host = settings.registry.as_str();
        let layer = &self.prepared.source_layer;
        let src = image::push_content(&self.registry, &Repo::new(host, SOURCE_REPOSITORY), layer).await?;
        say.source_uploaded(&plan.source_dir, layer.files, src.uploaded.then_some(src.bytes), &src.pinned);
        if layer.special_bits_dropped > 0 {
            say.special_bits_dropped(layer.special_bits_dropped);
        }
        if let Some(ca) = &self.prepared.ca_layer {
            image::push_content(&self.registry, &Repo::new(host, CA_REPOSITORY), ca).await?;
        }
        self.clock.planned();

        let session = SolveSession::open(settings, target, self.log).await?;
        self.clock.solving();
        let turn =
            settings.handles.solve_turns.take(&self.prepared.content_key, || say.waiting_for_same_content()).await;
        // The build we waited for may have pushed this very image (another service of the same
        // app into the same repository): take it rather than export the same layers again.
        if let Some(recent) = self.recent().filter(|_| self.reusing && turn.waited) {
            let looking = Instant::now();
            let (attrs, deployment) = (&exporter.attributes, &self.prepared.plan.image.deployment);
            let from = [(ReusedFrom::RecentPush, &recent)];
            if let Some(digest) = reuse_image(&self.registry, target, &from, attrs, deployment, self.log).await? {
                drop(turn);
                return self.taken(digest, looking.elapsed().as_secs_f64()).await;
            }
        }
        say.building();
        let solved = session.solve(exporter, &self.prepared).await;
        drop(turn);
        let solved = solved?;
        say.built();
        let digest = solved
            .exporter_response
            .image_digest()
            .and_then(|d| Digest::parse(d).ok())
            .ok_or_else(|| BuildError::internal(format!("BuildKit pushed {target} but did not say its digest")))?;
        let provenance = seal::of_build(settings, self.req, &self.prepared, &self.started_on);
        let (digest, index) = seal(settings, &self.registry, target, digest, self.log, provenance).await?;
        remember(settings, self.key.as_deref(), target, &digest);
        let phases = self.clock.phases(solved.export_seconds);
        Ok(self.result(&digest, index.as_deref(), solved.timings, src.uploaded, phases))
    }

    /// The end of a build that took an existing image (`reuse_image` wrote its index at
    /// `digest`), having looked for it `looked` seconds: sealed, and reported.
    async fn taken(&self, digest: Digest, looked: f64) -> Result<BuildResult, BuildError> {
        let target = &self.req.target;
        let phases = self.clock.phases(looked);
        let sealing = Instant::now();
        // Built with this build's key, so from this build's inputs: its provenance is this build's.
        let provenance = seal::of_build(self.settings, self.req, &self.prepared, &self.started_on);
        let (digest, index) = seal(self.settings, &self.registry, target, digest, self.log, provenance).await?;
        remember(self.settings, self.key.as_deref(), target, &digest);
        // Sealing the image taken counts in its export.
        let phases = PhaseTimings { export: phases.export + sealing.elapsed().as_secs_f64(), ..phases };
        Ok(self.result(&digest, index.as_deref(), Vec::new(), false, phases))
    }

    /// What a build that gave the image `digest` (its index's bytes `index`, when at hand)
    /// tells its caller.
    fn result(
        &self,
        digest: &Digest,
        index: Option<&[u8]>,
        stages: Vec<StageTiming>,
        source_uploaded: bool,
        phases: PhaseTimings,
    ) -> BuildResult {
        let reported = ReportedBuild::of(&self.prepared.plan, &self.prepared.config);
        let prior = self.prior.clone().map(|p| p.with_index(index));
        let image = self.req.target.with_digest(digest);
        reported.result(image, self.prepared.checkout.commit.clone(), stages, source_uploaded, phases, prior)
    }
}
