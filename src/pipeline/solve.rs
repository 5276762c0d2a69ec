//! The solves of one build on BuildKit: the dependency warm-ups, the image and its post-build
//! check, the export, the fleet cache; their progress narrated as the deployment log.

use super::narration::Narration;
use super::prepare::Prepared;
use super::settings::Settings;
use crate::core::image_ref::ImageRef;
use crate::core::plan::{BuildPlan, StageRole};
use crate::core::progress::{first_line, OtherVertex, Progress, SolveEvent};
use crate::core::result::StageTiming;
use crate::edge::buildkit::session::Session;
use crate::edge::buildkit::{
    attestations, Buildkit, Exporter, ExporterResponse, FleetCache, SolveFailure, SolveOptions,
};
use crate::edge::registry::is_plain_http;
use crate::error::{BuildError, ErrorClass};
use crate::llb::{self, Solves};
use crate::log::DeploymentLog;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// What the solves of a build gave: the image exporter's response, each stage's timing, and the
/// seconds `BuildKit` spent exporting.
pub(super) struct Solved {
    pub(super) exporter_response: ExporterResponse,
    pub(super) timings: Vec<StageTiming>,
    pub(super) export_seconds: f64,
}

/// One build's time on `BuildKit`: the connection, the session that answers its credential
/// requests, the service's fleet cache, and the deployment log its solves report to. The
/// warm-ups, the image with its check, and the fleet cache's export are its methods.
pub(super) struct SolveSession<'a> {
    buildkit: Buildkit,
    session: Arc<Session>,
    fleet_cache: Option<FleetCache>,
    settings: &'a Settings,
    log: &'a DeploymentLog,
}

impl<'a> SolveSession<'a> {
    /// The connection to `BuildKit` and the session the settings' builds share, for a build that
    /// pushes to `target`.
    pub(super) async fn open(
        settings: &'a Settings,
        target: &ImageRef,
        log: &'a DeploymentLog,
    ) -> Result<Self, BuildError> {
        // BuildKit asks the session for registry credentials: to push, and to reach the fleet cache.
        let (buildkit, session) = settings.handles.buildkit.get(&settings.buildkit, settings.registry_client()).await?;
        let fleet_cache = settings.fleet_cache.as_deref().filter(|_| !settings.no_cache).map(|prefix| {
            let cache_host = prefix.split('/').next().unwrap_or_default();
            FleetCache::for_target(prefix, target, is_plain_http(cache_host, &settings.insecure_registries))
        });
        Ok(Self { buildkit, session, fleet_cache, settings, log })
    }

    /// How every solve of this build is asked for: with `exporter`, exporting the fleet cache
    /// or not.
    fn options(&self, exporter: Option<Exporter>, export_cache: bool) -> SolveOptions {
        SolveOptions {
            exporter,
            cache: self.fleet_cache.as_ref().map(|c| c.options(export_cache)),
            session: Some(self.session.id.clone()),
            entitlements: self.settings.entitlements(),
            frontend_attrs: BTreeMap::new(),
        }
    }

    /// Solves the image and (concurrently) the post-build check, reporting progress as it
    /// comes; the warm-ups first; the fleet cache exported after.
    pub(super) async fn solve(&self, exporter: Exporter, prepared: &Prepared) -> Result<Solved, BuildError> {
        let solved = self.solve_all(exporter, prepared).await;
        // BuildKit (or a registry it pushes to) unavailable: the next build connects anew.
        if solved.as_ref().is_err_and(|e| e.class == ErrorClass::Transient) {
            self.settings.handles.buildkit.reset().await;
        }
        solved
    }

    async fn solve_all(&self, exporter: Exporter, prepared: &Prepared) -> Result<Solved, BuildError> {
        let plan = &prepared.plan;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let reporter = tokio::spawn(report(rx, self.log.clone(), plan.clone()));
        let rebuilt = self.warm_up(prepared, &tx).await?;
        let solves = rebuilt.as_ref().unwrap_or(&prepared.solves);
        let fresh = self.settings.no_cache.then(|| solves.fresh());
        let solving = Instant::now();
        let (image_result, post_result) = self.image_and_check(prepared, solves, fresh.as_ref(), exporter, &tx).await;
        tracing::debug!("{}: solves answered in {:.1}s", self.log.stream, solving.elapsed().as_secs_f64());
        drop(tx);
        let report = reporter.await.unwrap_or_default();
        let failure = |f: SolveFailure| step_failure(plan, report.failed_step.as_ref(), f);
        let exporter_response = image_result.map_err(failure)?;
        post_result.map_err(failure)?;
        let (cached, all) = report.cached_steps;
        if cached > 0 {
            let from = match &self.fleet_cache {
                Some(c) => format!("this BuildKit's cache or the fleet cache {}", c.reference),
                None => "this BuildKit's cache".to_string(),
            };
            Narration(self.log).steps_from_caches(cached, all, &from);
        }
        let mut export_seconds = report.export_seconds;
        // A build whose every step came from a cache while the fleet cache was there adds
        // nothing to it: exporting would only rewrite it (a second or more, paid by every no-op
        // rebuild). Otherwise the image's definition is solved again, all of it cached now, to
        // export every step's result.
        if self.fleet_cache.is_some() && (cached < all || report.fleet_imported != Some(true)) {
            export_seconds += self.export_fleet_cache(&solves.image).await;
            tracing::debug!(
                "{}: fleet cache exported {:.1}s after the solves",
                self.log.stream,
                solving.elapsed().as_secs_f64()
            );
        }
        Ok(Solved { exporter_response, timings: report.timings, export_seconds })
    }

    /// The image's solve (exporting it) beside the post-build check's, their events to `tx`;
    /// `fresh`: the same solves running every step anew, where they run first.
    async fn image_and_check(
        &self,
        prepared: &Prepared,
        solves: &Solves,
        fresh: Option<&Solves>,
        exporter: Exporter,
        tx: &tokio::sync::mpsc::UnboundedSender<SolveEvent>,
    ) -> (Result<ExporterResponse, SolveFailure>, Result<(), SolveFailure>) {
        let buildkit = &self.buildkit;
        let image_options = SolveOptions { frontend_attrs: attestations(), ..self.options(Some(exporter), false) };
        // The warm-ups were reported as they ran, with the fleet cache's import; the image solve
        // finds them cached and imports it again: each said once.
        let warmed = !prepared.solves.warm.is_empty();
        let warm_steps: std::collections::HashSet<String> =
            solves.warm.iter().flat_map(|(_, llb)| llb.vertices.values().map(|v| v.name.clone())).collect();
        let (image_tx, forward_image) = filtered(tx, move |ev| match ev {
            SolveEvent::Cached(v) => !warm_steps.contains(&v.name),
            SolveEvent::Other { kind, .. } => !(warmed && matches!(kind, OtherVertex::CacheImport { .. })),
            _ => true,
        });
        // With a post-build check, the image is pushed only once the check has passed (a failed
        // check must leave the target tag as it was, or a rebuild would find the image there and
        // reuse it): its steps are solved beside the check, then exported by a second solve that
        // finds every step cached.
        let checked = solves.post_build.is_some();
        let first = if checked { self.options(None, false) } else { image_options.clone() };
        let running = fresh.unwrap_or(solves);
        let image_solve = buildkit.solve(&running.image, first, image_tx);
        // The post-build solve shares the build stage with the image's; only its own stage is
        // reported from it, so each step shows once.
        let plan = &prepared.plan;
        let check_stage = plan.stages.iter().find(|s| s.role == StageRole::Check).map(|s| s.name.clone());
        let (post_tx, forward) = filtered(tx, move |ev| ev.stage() == check_stage.as_deref());
        let post_solve = async {
            match &running.post_build {
                Some(llb) => buildkit.solve(llb, self.options(None, false), post_tx).await.map(|_| ()),
                None => Ok(()),
            }
        };
        let (mut image_result, post_result) = tokio::join!(image_solve, post_solve);
        let _ = forward.await;
        let _ = forward_image.await;
        if checked && image_result.is_ok() && post_result.is_ok() {
            // Only the export is news: every step was reported by the first solve.
            let (export_tx, forward_export) = filtered(tx, |ev| match ev {
                SolveEvent::Other { kind, .. } => !matches!(kind, OtherVertex::CacheImport { .. }),
                _ => false,
            });
            image_result = buildkit.solve(&solves.image, image_options, export_tx).await;
            let _ = forward_export.await;
        }
        (image_result, post_result)
    }

    /// Exports the fleet cache of a solved definition; the seconds it took. A cache that cannot
    /// be written is a warning: the image is already pushed.
    async fn export_fleet_cache(&self, llb: &llb::Llb) -> f64 {
        let Some(cache) = &self.fleet_cache else { return 0.0 };
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let result = self.buildkit.solve(llb, self.options(None, true), tx).await;
        let _ = drain.await;
        let seconds = started.elapsed().as_secs_f64();
        Narration(self.log).fleet_cache_exported(&cache.reference, result.map(|_| seconds).map_err(|e| e.to_string()));
        seconds
    }

    /// Solves the stages' dependency warm-ups, reporting them as they run. One that fails is
    /// left out and the build goes on without it: the solves without those warm-ups, when there
    /// were any.
    async fn warm_up(
        &self,
        prepared: &Prepared,
        tx: &tokio::sync::mpsc::UnboundedSender<SolveEvent>,
    ) -> Result<Option<Solves>, BuildError> {
        let options = self.options(None, false);
        let fresh = self.settings.no_cache.then(|| prepared.solves.fresh());
        let warm = &fresh.as_ref().unwrap_or(&prepared.solves).warm;
        let warmed = futures_util::future::join_all(warm.iter().map(|(stage, llb)| {
            let options = options.clone();
            async move { (stage.clone(), self.buildkit.solve(llb, options, tx.clone()).await) }
        }))
        .await;
        let mut cold: Vec<String> = Vec::new();
        for (stage, result) in warmed {
            match result {
                Ok(_) => {}
                Err(e @ SolveFailure::Unavailable(_)) => return Err(e.into()),
                Err(e) => {
                    Narration(self.log).warm_up_left_out(&stage, &e.to_string());
                    cold.push(stage);
                }
            }
        }
        if cold.is_empty() {
            return Ok(None);
        }
        let mut plan = prepared.plan.clone();
        for stage in plan.stages.iter_mut().filter(|s| cold.contains(&s.name)) {
            stage.warm = None;
        }
        Ok(Some(llb::from_plan(&plan)))
    }
}

/// A failed solve as the user's error: the command that failed (as its shell's markers said,
/// else the phase's step) and its exit code; any other failure as its class says.
fn step_failure(plan: &BuildPlan, failed_step: Option<&(String, usize)>, f: SolveFailure) -> BuildError {
    match &f {
        SolveFailure::Step { vertex, exit_code, .. } => {
            let failed = failed_step.filter(|(stage, _)| *stage == vertex.stage);
            let step = failed.map(|(_, i)| *i).or(vertex.step);
            let found = plan.stage(&vertex.stage).and_then(|s| step.and_then(|i| s.steps.get(i)));
            let phase = found.map_or("build", |s| s.phase.key());
            let what = match (failed.and(found), exit_code) {
                (Some(s), Some(code)) => {
                    format!(
                        "[{}] {}: {} failed with exit code {code}",
                        vertex.stage,
                        s.describe(),
                        first_line(&s.command)
                    )
                }
                _ => f.to_string(),
            };
            BuildError::user(format!("Failed to execute '{phase}' command: {what}"))
        }
        _ => BuildError::from(f),
    }
}

/// A sender whose events reach `tx` only where `keep` says so; the task ends when the sender
/// is dropped.
fn filtered(
    tx: &tokio::sync::mpsc::UnboundedSender<SolveEvent>,
    keep: impl Fn(&SolveEvent) -> bool + Send + 'static,
) -> (tokio::sync::mpsc::UnboundedSender<SolveEvent>, tokio::task::JoinHandle<()>) {
    let (sender, mut rx) = tokio::sync::mpsc::unbounded_channel::<SolveEvent>();
    let tx = tx.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if keep(&ev) {
                let _ = tx.send(ev);
            }
        }
    });
    (sender, task)
}

/// What the report of a build's solves found.
#[derive(Default)]
struct SolveReport {
    timings: Vec<StageTiming>,
    failed_step: Option<(String, usize)>,
    export_seconds: f64,
    cached_steps: (usize, usize),
    /// Whether the fleet cache was found (None: not asked for).
    fleet_imported: Option<bool>,
}

/// Turns solve events into deployment-log lines as they come; what they told in the end.
async fn report(mut rx: UnboundedReceiver<SolveEvent>, log: DeploymentLog, plan: BuildPlan) -> SolveReport {
    let mut progress = Progress::new(&plan);
    while let Some(ev) = rx.recv().await {
        for (source, text) in progress.on_event(&ev, Instant::now()) {
            log.emit(source, &text);
        }
    }
    SolveReport {
        failed_step: progress.failed_step(),
        export_seconds: progress.export_seconds(),
        cached_steps: progress.cached_steps(),
        fleet_imported: progress.fleet_imported(),
        timings: progress.timings(),
    }
}
