//! What `BuildKit` reports about our steps, turned into deployment-log lines and stage timings.
//! Pure: events and the time they were seen in, lines out; the clock is the caller's.

use crate::core::log::LineSource;
use crate::core::plan::{BuildPlan, StageRole};
use crate::core::request::StageTiming;
use std::collections::HashMap;
use std::time::Instant;

/// What a step's vertex stands for, so Status updates can be told apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VertexInfo {
    pub stage: String,
    /// Index into the stage's steps; None for the copy and image ops.
    pub step: Option<usize>,
    pub name: String,
}

/// What happened to a named vertex of ours, as `BuildKit` reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum SolveEvent {
    Started(VertexInfo),
    Cached(VertexInfo),
    Completed {
        vertex: VertexInfo,
        seconds: f64,
    },
    Failed {
        vertex: VertexInfo,
        error: String,
    },
    /// One line a step printed; stream 1 is stdout, 2 stderr.
    Line {
        vertex: VertexInfo,
        stream: i64,
        text: String,
    },
    /// Something `BuildKit` did that is not one of our steps (pulling an image, say).
    Other {
        name: String,
        cached: bool,
        done: bool,
    },
}

impl SolveEvent {
    /// The plan stage the event is about; None for what is not one of our steps.
    pub fn stage(&self) -> Option<&str> {
        self.vertex().map(|v| v.stage.as_str())
    }

    fn vertex(&self) -> Option<&VertexInfo> {
        match self {
            SolveEvent::Started(v)
            | SolveEvent::Cached(v)
            | SolveEvent::Completed { vertex: v, .. }
            | SolveEvent::Failed { vertex: v, .. }
            | SolveEvent::Line { vertex: v, .. } => Some(v),
            SolveEvent::Other { .. } => None,
        }
    }
}

/// The state of one build's report: when each stage started, whether any step of it ran.
pub struct Progress<'p> {
    plan: &'p BuildPlan,
    started: HashMap<String, Instant>,
    ran: HashMap<String, bool>,
    timings: Vec<StageTiming>,
}

impl<'p> Progress<'p> {
    pub fn new(plan: &'p BuildPlan) -> Self {
        Self { plan, started: HashMap::new(), ran: HashMap::new(), timings: Vec::new() }
    }

    /// The log lines `ev`, seen at `now`, makes.
    pub fn on_event(&mut self, ev: &SolveEvent, now: Instant) -> Vec<(LineSource, String)> {
        let Some(info) = ev.vertex() else { return Vec::new() };
        let mut out = Vec::new();
        if !self.started.contains_key(&info.stage) {
            self.started.insert(info.stage.clone(), now);
            let what = match self.plan.stage(&info.stage).map(|s| s.role) {
                Some(StageRole::Image) => " (becomes the image)",
                Some(StageRole::Check) => " (must succeed; not part of the image)",
                _ => "",
            };
            out.push((LineSource::AppRunner, format!("Stage {} started{what}.", info.stage)));
        }
        match ev {
            SolveEvent::Started(v) => out.push((LineSource::AppRunner, format!("{} started.", v.name))),
            SolveEvent::Cached(v) => out.push((LineSource::AppRunner, format!("{} cached.", v.name))),
            SolveEvent::Completed { vertex, seconds } => {
                *self.ran.entry(vertex.stage.clone()).or_default() = true;
                out.push((LineSource::AppRunner, format!("{} finished in {seconds:.1}s.", vertex.name)));
            }
            SolveEvent::Failed { vertex, error } => {
                let error = crate::error::one_line(error.clone());
                out.push((LineSource::AppRunner, format!("{} failed: {error}", vertex.name)));
            }
            SolveEvent::Line { text, .. } => out.push((LineSource::Build, text.clone())),
            SolveEvent::Other { .. } => {}
        }
        let done = matches!(ev, SolveEvent::Cached(_) | SolveEvent::Completed { .. });
        let last_step = self.plan.stage(&info.stage).map(|s| s.steps.len().checked_sub(1));
        let is_end = done && last_step == Some(info.step);
        if is_end && !self.timings.iter().any(|t| t.stage == info.stage) {
            let secs = now.saturating_duration_since(self.started[&info.stage]).as_secs_f64();
            let cached = !self.ran.get(&info.stage).copied().unwrap_or(false);
            let note = if cached { " (all cached)" } else { "" };
            out.push((LineSource::AppRunner, format!("Stage {} finished in {secs:.1}s{note}.", info.stage)));
            self.timings.push(StageTiming { stage: info.stage.clone(), seconds: secs, cached });
        }
        out
    }

    /// Each stage that finished, with its time and whether all of it came from the cache.
    pub fn timings(self) -> Vec<StageTiming> {
        self.timings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::catalog::RuntimeCatalog;
    use crate::core::config;
    use crate::core::plan::{self, ImageFacts, PlanInput, StepNetwork};
    use std::time::Duration;

    fn plan() -> BuildPlan {
        let yaml = "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - a\n      - b\nrun:\n  command: c\n";
        let cfg = config::from_yaml(yaml, "apprunner.yaml", RuntimeCatalog::builtin()).unwrap();
        let catalog = RuntimeCatalog::builtin();
        let runtime = catalog.resolve(catalog.lookup("python3").unwrap(), None).unwrap();
        let facts = |r: &str| ImageFacts { reference: r.into(), digest: None, env: vec![], labels: Default::default() };
        plan::plan(
            &cfg,
            &PlanInput {
                build_image: facts("r/b:1"),
                run_image: facts("r/r:1"),
                runtime,
                source_image: "r/s@sha256:0".into(),
                source_dir: "/".into(),
                repository: None,
                revision: None,
                operation_id: "op".into(),
                ca_bundle_image: None,
                network: StepNetwork::Sandbox,
            },
        )
    }

    fn step(stage: &str, i: usize) -> VertexInfo {
        VertexInfo { stage: stage.into(), step: Some(i), name: format!("[{stage}] build command {}/2", i + 1) }
    }

    #[test]
    fn stages_start_finish_and_are_timed_by_the_given_clock() {
        let plan = plan();
        let mut p = Progress::new(&plan);
        let t0 = Instant::now();
        let lines = p.on_event(&SolveEvent::Started(step("build", 0)), t0);
        assert_eq!(
            lines,
            [
                (LineSource::AppRunner, "Stage build started.".to_string()),
                (LineSource::AppRunner, "[build] build command 1/2 started.".to_string())
            ]
        );
        let line = SolveEvent::Line { vertex: step("build", 0), stream: 1, text: "hello".into() };
        assert_eq!(p.on_event(&line, t0), [(LineSource::Build, "hello".to_string())]);
        p.on_event(&SolveEvent::Completed { vertex: step("build", 0), seconds: 1.0 }, t0 + Duration::from_secs(1));
        let end = p.on_event(&SolveEvent::Cached(step("build", 1)), t0 + Duration::from_millis(2500));
        assert_eq!(end.last().unwrap().1, "Stage build finished in 2.5s.");
        // The run stage comes wholly from the cache.
        p.on_event(&SolveEvent::Cached(step("run", 0)), t0 + Duration::from_secs(3));
        let end = p.on_event(&SolveEvent::Cached(step("run", 1)), t0 + Duration::from_secs(3));
        assert!(end[1].1.starts_with("Stage run finished in 0.0s (all cached)"), "{end:?}");
        assert!(p.on_event(&SolveEvent::Other { name: "pull".into(), cached: false, done: true }, t0).is_empty());
        let t = p.timings();
        assert_eq!((t[0].stage.as_str(), t[0].seconds, t[0].cached), ("build", 2.5, false));
        assert_eq!((t[1].stage.as_str(), t[1].cached), ("run", true));
    }
}
