//! What `BuildKit` reports about our steps, turned into deployment-log lines and stage timings.
//! Pure: events and the time they were seen in, lines out; the clock is the caller's.

use crate::log::LineSource;
use crate::plan::{BuildPlan, StageRole};
use crate::result::StageTiming;
use std::collections::HashMap;
use std::time::Instant;

/// What a step's vertex stands for, so Status updates can be told apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VertexInfo {
    pub stage: String,
    /// Index into the stage's steps of the first command this vertex runs; None for the copy
    /// and image ops.
    pub step: Option<usize>,
    /// How many of the stage's steps it runs: a phase's commands run in one shell (B2).
    pub steps: usize,
    pub name: String,
}

/// What a phase's shell prints (on stderr, its own line) before and after each command, so the
/// log can name each command, its exit code and its time: `\x1eapprunner-build:start 2`,
/// `\x1eapprunner-build:end 2 0`.
pub const MARKER: &str = "\u{1e}apprunner-build:";

/// The shell program that runs a phase's commands (its arguments) in order in one shell, so a
/// `cd` or `export` carries to the next command; it stops at the first that fails.
pub const PHASE_SCRIPT: &str = r#"__apprunner_n=0
for __apprunner_c in "$@"; do
  __apprunner_n=$((__apprunner_n + 1))
  printf '\036apprunner-build:start %s\n' "$__apprunner_n" >&2
  set --
  eval "$__apprunner_c"
  __apprunner_s=$?
  printf '\036apprunner-build:end %s %s\n' "$__apprunner_n" "$__apprunner_s" >&2
  [ "$__apprunner_s" -eq 0 ] || exit "$__apprunner_s"
done"#;

/// A marker line's meaning: command `n` (1-based within its vertex) started, or ended with a
/// status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Start(usize),
    End(usize, i32),
}

/// Splits a printed line into what the user's command printed before a marker, and the marker.
fn split_marker(text: &str) -> (&str, Option<Marker>) {
    let Some(i) = text.find(MARKER) else { return (text, None) };
    let mut words = text[i + MARKER.len()..].split_whitespace();
    let marker = match (words.next(), words.next().and_then(|n| n.parse().ok()), words.next()) {
        (Some("start"), Some(n), _) => Some(Marker::Start(n)),
        (Some("end"), Some(n), Some(s)) => s.parse().ok().map(|s| Marker::End(n, s)),
        _ => None,
    };
    match marker {
        Some(m) => (&text[..i], Some(m)),
        None => (text, None),
    }
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
    /// Reported once it is done.
    Other {
        name: String,
        /// What it is, read off its name once (`OtherVertex::of`).
        kind: OtherVertex,
        cached: bool,
        seconds: f64,
        error: Option<String>,
    },
}

/// What a vertex of `BuildKit`'s own is: the one place its names are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OtherVertex {
    /// `importing cache manifest from <reference>`: the fleet cache's import.
    CacheImport { reference: String },
    /// `exporting to image`: the image exporter, which pushes the image.
    ImageExport,
    /// The rest of an export (`exporting …`, `pushing …`, `preparing build cache …`).
    Export,
    /// Anything else (a pull, a metadata resolve).
    Other,
}

impl OtherVertex {
    pub fn of(name: &str) -> Self {
        if let Some(reference) = name.strip_prefix("importing cache manifest from ") {
            return OtherVertex::CacheImport { reference: reference.to_string() };
        }
        match name {
            "exporting to image" => OtherVertex::ImageExport,
            _ if name.starts_with("exporting")
                || name.starts_with("pushing")
                || name.starts_with("preparing build cache") =>
            {
                OtherVertex::Export
            }
            _ => OtherVertex::Other,
        }
    }
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

/// The state of one build's report: when each stage started, whether any step of it ran, and
/// which command of a phase's shell is running.
pub struct Progress<'p> {
    plan: &'p BuildPlan,
    started: HashMap<String, Instant>,
    ran: HashMap<String, bool>,
    timings: Vec<StageTiming>,
    /// Per stage: the step running now and since when.
    running: HashMap<String, (usize, Instant)>,
    /// The step that failed last: (stage, step index).
    failed: Option<(String, usize)>,
    /// Seconds `BuildKit` spent exporting: the image (and its push) and the fleet cache.
    export_seconds: f64,
    /// Steps (phases' commands and copies) that ran, and that came from a cache.
    steps_ran: usize,
    steps_cached: usize,
    /// Whether the fleet cache was imported; None until `BuildKit` says.
    fleet_imported: Option<bool>,
}

impl<'p> Progress<'p> {
    pub fn new(plan: &'p BuildPlan) -> Self {
        Self {
            plan,
            started: HashMap::new(),
            ran: HashMap::new(),
            timings: Vec::new(),
            running: HashMap::new(),
            failed: None,
            export_seconds: 0.0,
            steps_ran: 0,
            steps_cached: 0,
            fleet_imported: None,
        }
    }

    /// What `BuildKit` did besides our steps: the cache import, the exports.
    fn on_other(
        &mut self,
        name: &str,
        kind: &OtherVertex,
        seconds: f64,
        error: Option<&str>,
    ) -> Vec<(LineSource, String)> {
        let app = |text: String| vec![(LineSource::AppRunner, text)];
        match (kind, error) {
            (OtherVertex::CacheImport { reference }, None) => {
                self.fleet_imported = Some(true);
                app(format!("Fleet cache {reference} imported in {seconds:.1}s."))
            }
            (OtherVertex::CacheImport { reference }, Some(e)) => {
                self.fleet_imported = Some(false);
                app(format!(
                    "Fleet cache {reference} not imported ({}); this build fills it.",
                    crate::error::one_line(e.to_string())
                ))
            }
            (OtherVertex::ImageExport | OtherVertex::Export, _) => {
                self.export_seconds += seconds;
                match (kind, error) {
                    (_, Some(e)) if crate::registry_error::is_unreachable(e) => {
                        app(format!("{name} failed: {}", crate::registry_error::unreachable_registry(e)))
                    }
                    (_, Some(e)) => app(format!("{name} failed: {}", crate::error::one_line(e.to_string()))),
                    (OtherVertex::ImageExport, None) => app(format!("Image exported and pushed in {seconds:.1}s.")),
                    _ => Vec::new(),
                }
            }
            (OtherVertex::Other, _) => Vec::new(),
        }
    }

    /// `[build] build command 2/3: npm ci`: how the log names step `index` of `stage`.
    fn step_name(&self, stage: &str, index: usize) -> String {
        match self.plan.stage(stage).and_then(|s| s.steps.get(index)) {
            Some(step) => format!("[{stage}] {}: {}", step.describe(), first_line(&step.command)),
            None => format!("[{stage}] step {}", index + 1),
        }
    }

    /// The log lines `ev`, seen at `now`, makes.
    pub fn on_event(&mut self, ev: &SolveEvent, now: Instant) -> Vec<(LineSource, String)> {
        if let SolveEvent::Other { name, kind, seconds, error, .. } = ev {
            return self.on_other(name, kind, *seconds, error.as_deref());
        }
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
        let app = |text: String| (LineSource::AppRunner, text);
        match (ev, info.step) {
            // A phase's shell: its commands speak for themselves through the markers. What is
            // not one of our steps says nothing.
            (SolveEvent::Started(_), Some(_)) | (SolveEvent::Other { .. }, _) => {}
            (SolveEvent::Started(v), None) => out.push(app(format!("{} started.", v.name))),
            (SolveEvent::Cached(v), Some(first)) => {
                self.steps_cached += v.steps;
                out.extend((first..first + v.steps).map(|i| app(format!("{} cached.", self.step_name(&v.stage, i)))));
            }
            (SolveEvent::Cached(v), None) => {
                self.steps_cached += 1;
                out.push(app(format!("{} cached.", v.name)));
            }
            (SolveEvent::Completed { vertex, seconds }, step) => {
                self.steps_ran += step.map_or(1, |_| vertex.steps);
                *self.ran.entry(vertex.stage.clone()).or_default() = true;
                if step.is_none() {
                    out.push(app(format!("{} finished in {seconds:.1}s.", vertex.name)));
                }
            }
            (SolveEvent::Failed { vertex, error }, step) => {
                let error = crate::error::one_line(error.clone());
                let name = match (step, self.running.get(&vertex.stage)) {
                    (Some(_), Some((i, _))) => self.step_name(&vertex.stage, *i),
                    _ => vertex.name.clone(),
                };
                out.push(app(format!("{name} failed: {error}")));
            }
            (SolveEvent::Line { vertex, text, .. }, step) => {
                let (printed, marker) = split_marker(text);
                if marker.is_none() || !printed.is_empty() {
                    out.push((LineSource::Build, printed.to_string()));
                }
                if let (Some(marker), Some(first)) = (marker, step) {
                    out.extend(self.on_marker(vertex, first, marker, now));
                }
            }
        }
        let done = matches!(ev, SolveEvent::Cached(_) | SolveEvent::Completed { .. });
        if done && self.is_last(info) && !self.timings.iter().any(|t| t.stage == info.stage) {
            let secs = now.saturating_duration_since(self.started[&info.stage]).as_secs_f64();
            let cached = !self.ran.get(&info.stage).copied().unwrap_or(false);
            let note = if cached { " (all cached)" } else { "" };
            out.push(app(format!("Stage {} finished in {secs:.1}s{note}.", info.stage)));
            self.timings.push(StageTiming { stage: info.stage.clone(), seconds: secs, cached });
        }
        out
    }

    /// A command of a phase's shell started or ended.
    fn on_marker(
        &mut self,
        vertex: &VertexInfo,
        first: usize,
        marker: Marker,
        now: Instant,
    ) -> Vec<(LineSource, String)> {
        match marker {
            Marker::Start(n) => {
                let index = first + n.saturating_sub(1);
                self.running.insert(vertex.stage.clone(), (index, now));
                vec![(LineSource::AppRunner, format!("{} started.", self.step_name(&vertex.stage, index)))]
            }
            Marker::End(n, status) => {
                let index = first + n.saturating_sub(1);
                let began = self.running.remove(&vertex.stage).map_or(now, |(_, t)| t);
                let secs = now.saturating_duration_since(began).as_secs_f64();
                let name = self.step_name(&vertex.stage, index);
                if status == 0 {
                    vec![(LineSource::AppRunner, format!("{name} finished in {secs:.1}s."))]
                } else {
                    self.failed = Some((vertex.stage.clone(), index));
                    vec![(LineSource::AppRunner, format!("{name} failed with exit code {status} after {secs:.1}s."))]
                }
            }
        }
    }

    /// Whether `info` is the last vertex of its stage: its last phase, or its copy when the
    /// stage has no steps.
    fn is_last(&self, info: &VertexInfo) -> bool {
        let Some(stage) = self.plan.stage(&info.stage) else { return false };
        match info.step {
            Some(first) => first + info.steps == stage.steps.len(),
            None => stage.steps.is_empty(),
        }
    }

    /// The command that failed (or was running when its shell failed): its stage and step index.
    pub fn failed_step(&self) -> Option<(String, usize)> {
        self.failed.clone().or_else(|| self.running.iter().next().map(|(s, (i, _))| (s.clone(), *i)))
    }

    /// Seconds `BuildKit` spent exporting the image and the cache, as it reported them.
    pub fn export_seconds(&self) -> f64 {
        self.export_seconds
    }

    /// Whether the fleet cache was imported; None when no import was reported.
    pub fn fleet_imported(&self) -> Option<bool> {
        self.fleet_imported
    }

    /// Steps that came from a cache, and steps in all that finished.
    pub fn cached_steps(&self) -> (usize, usize) {
        (self.steps_cached, self.steps_cached + self.steps_ran)
    }

    /// Each stage that finished, with its time and whether all of it came from the cache.
    pub fn timings(self) -> Vec<StageTiming> {
        self.timings
    }
}

/// The first line of a command, with `…` when it has more.
pub fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if s.lines().nth(1).is_some() {
        format!("{line} …")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests;
