//! Solving LLB on `BuildKit`: Control.Solve with Control.Status read alongside, turned into
//! per-step events with the users' output split into lines.

use super::control::{CacheOptions, SolveRequest, StatusResponse, Vertex};
use super::{Buildkit, Exporter, ExporterResponse, SolveFailure};
use apprunner_core::llb::Llb;
use apprunner_core::progress::{OtherVertex, SolveEvent, VertexInfo};
use apprunner_core::registry_error::{is_unreachable, unreachable_registry};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_stream::StreamExt;

/// What a solve does besides solving: where its result and its cache go, which session
/// `BuildKit` calls back on, what its steps may do.
#[derive(Debug, Clone, Default)]
pub struct SolveOptions {
    pub exporter: Option<Exporter>,
    pub cache: Option<CacheOptions>,
    pub session: Option<String>,
    pub entitlements: Vec<String>,
    /// Attestations to make, and what they record.
    pub frontend_attrs: BTreeMap<String, String>,
}

impl Buildkit {
    /// Solves `llb` as `options` say, sending events as they come; the exporter's response.
    /// Status is read until `BuildKit` closes it, so the last lines of a failed step are not lost.
    /// A solve whose step's container could not be started (the step never ran) is solved again,
    /// a second later, up to [`CONTAINER_TRIES`] times.
    pub async fn solve(
        &self,
        llb: &Llb,
        options: SolveOptions,
        events: UnboundedSender<SolveEvent>,
    ) -> Result<ExporterResponse, SolveFailure> {
        let mut tried = 1;
        loop {
            match self.solve_once(llb, options.clone(), events.clone()).await {
                Err(SolveFailure::NotStarted { vertex, detail }) if tried < CONTAINER_TRIES => {
                    tracing::warn!("{}: its container did not start ({detail}); solving again", vertex.name);
                    tried += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                solved => return solved,
            }
        }
    }

    async fn solve_once(
        &self,
        llb: &Llb,
        options: SolveOptions,
        events: UnboundedSender<SolveEvent>,
    ) -> Result<ExporterResponse, SolveFailure> {
        let r#ref = uuid::Uuid::new_v4().simple().to_string();
        let (mut status_client, status_ref) = (self.client.clone(), r#ref.clone());
        let told: Arc<Mutex<Told>> = Arc::default();
        let mut reader = StatusReader::new(llb.vertices.clone(), events, told.clone());
        let mut status_task = tokio::spawn(async move {
            let Ok(mut stream) = status_client.status(&status_ref).await else { return };
            while let Some(Ok(update)) = stream.next().await {
                reader.read(update);
            }
            reader.finish();
        });

        // A solve dropped half way (its build's time limit) takes its Status reader with it.
        let _abort_status = AbortOnDrop(status_task.abort_handle());
        let (exporter, exporter_attrs) =
            options.exporter.map(|e| (e.kind.to_string(), e.attributes)).unwrap_or_default();
        let req = SolveRequest {
            r#ref,
            definition: Some(llb.definition()),
            exporter,
            exporter_attrs,
            session: options.session.unwrap_or_default(),
            frontend_attrs: options.frontend_attrs,
            cache: options.cache,
            entitlements: options.entitlements,
            internal: true,
        };
        let mut client = self.client.clone();
        let result = client.solve(req).await;
        // Status ends once BuildKit has flushed the job; give it a bounded moment.
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut status_task).await;
        match result {
            Ok(resp) => Ok(ExporterResponse(resp.exporter_response)),
            Err(status) => Err(failure(&status, &told.lock().unwrap_or_else(PoisonError::into_inner))),
        }
    }
}

/// What the runtime writes into a step's output when it could not start the step's container
/// (seen under load: `read init-p: connection reset by peer`): the step never ran.
const CONTAINER_NOT_STARTED: &str = "runc run failed: unable to start container process";

/// Solves of one definition while its steps' containers do not start.
pub const CONTAINER_TRIES: u32 = 3;

/// What Status told of a failed solve: the step that failed (its digest, itself, its error),
/// and the steps whose container never started, with the runtime's words.
#[derive(Default)]
struct Told {
    failed: Option<(String, VertexInfo, String)>,
    not_started: HashMap<String, String>,
}

/// What a failed solve's status says went wrong, given what Status told.
fn failure(status: &tonic::Status, told: &Told) -> SolveFailure {
    let message = status.message().to_string();
    if lost_connection(status) && told.failed.is_none() {
        return SolveFailure::Unavailable(format!("{message} ({:?})", status.code()));
    }
    if let Some((digest, vertex, error)) = told.failed.clone() {
        if let Some(said) = told.not_started.get(&digest) {
            return SolveFailure::NotStarted { vertex, detail: said.clone() };
        }
        if vertex.step.is_some() {
            return SolveFailure::Step {
                exit_code: exit_code(&error).or_else(|| exit_code(&message)),
                vertex,
                message,
            };
        }
    }
    // BuildKit says whether it could not reach a registry only in its words.
    if is_unreachable(&message) {
        return SolveFailure::RegistryUnreachable(unreachable_registry(&message));
    }
    SolveFailure::Refused(summarize(&message))
}

/// Control.Status read into events: each step started, its output as lines, and how it ended
/// (the step that failed kept, for the solve's error).
struct StatusReader {
    vertices: BTreeMap<String, VertexInfo>,
    events: UnboundedSender<SolveEvent>,
    told: Arc<Mutex<Told>>,
    lines: LineSplitter,
    /// Per vertex: whether it was seen started, and done.
    seen: HashMap<String, (bool, bool)>,
}

impl StatusReader {
    fn new(
        vertices: BTreeMap<String, VertexInfo>,
        events: UnboundedSender<SolveEvent>,
        told: Arc<Mutex<Told>>,
    ) -> Self {
        Self { vertices, events, told, lines: LineSplitter::default(), seen: HashMap::new() }
    }

    fn send(&self, event: SolveEvent) {
        let _ = self.events.send(event);
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A line of a step's output; one that says its container never started is kept.
    fn line(&self, digest: &str, vertex: &VertexInfo, stream: i64, text: String) {
        if text.starts_with(CONTAINER_NOT_STARTED) {
            self.told().not_started.insert(digest.to_string(), text.clone());
        }
        self.send(SolveEvent::Line { vertex: vertex.clone(), stream, text });
    }

    /// One update, in the order things happened: steps started, their output, steps ended.
    fn read(&mut self, update: StatusResponse) {
        let seen: Vec<((bool, bool), (bool, bool))> = update
            .vertexes
            .iter()
            .map(|v| {
                let now = (v.started.is_some(), v.completed.is_some());
                (self.seen.insert(v.digest.clone(), now).unwrap_or((false, false)), now)
            })
            .collect();
        for (v, (before, now)) in update.vertexes.iter().zip(&seen) {
            if let Some(info) = self.vertices.get(&v.digest) {
                if now.0 && !before.0 && !v.cached {
                    self.send(SolveEvent::Started(info.clone()));
                }
            }
        }
        for log in update.logs {
            if let Some(info) = self.vertices.get(&log.vertex) {
                for (stream, text) in self.lines.push(&log.vertex, log.stream, &log.msg) {
                    self.line(&log.vertex, info, stream, text);
                }
            }
        }
        for (v, (before, now)) in update.vertexes.iter().zip(seen) {
            if now.1 && !before.1 {
                self.ended(v);
            }
        }
    }

    fn ended(&mut self, v: &Vertex) {
        let seconds = vertex_seconds(v);
        let Some(info) = self.vertices.get(&v.digest).cloned() else {
            self.send(other_event(v, seconds));
            return;
        };
        for (stream, text) in self.lines.flush(&v.digest) {
            self.line(&v.digest, &info, stream, text);
        }
        if !v.error.is_empty() {
            let not_started = {
                let mut told = self.told();
                told.failed = Some((v.digest.clone(), info.clone(), v.error.clone()));
                told.not_started.contains_key(&v.digest)
            };
            // A step that never ran did not fail: the solve is tried again, or fails as the
            // machine's fault, and says so.
            if !not_started {
                self.send(SolveEvent::Failed { vertex: info, error: v.error.clone() });
            }
        } else if v.cached {
            self.send(SolveEvent::Cached(info));
        } else {
            self.send(SolveEvent::Completed { vertex: info, seconds });
        }
    }

    /// The stream is over: whatever is left is a last line without a newline.
    fn finish(mut self) {
        let vertices = std::mem::take(&mut self.vertices);
        for (digest, info) in &vertices {
            for (stream, text) in self.lines.flush(digest) {
                self.line(digest, info, stream, text);
            }
        }
    }
}

/// How long a finished vertex ran, as `BuildKit`'s clock says.
/// A finished vertex of `BuildKit`'s own, classified by its name once, here.
fn other_event(v: &super::control::Vertex, seconds: f64) -> SolveEvent {
    SolveEvent::Other {
        kind: OtherVertex::of(&v.name),
        name: v.name.clone(),
        cached: v.cached,
        seconds,
        error: Some(v.error.clone()).filter(|e| !e.is_empty()),
    }
}

fn vertex_seconds(v: &super::control::Vertex) -> f64 {
    match (&v.started, &v.completed) {
        (Some(a), Some(b)) => (b.seconds - a.seconds) as f64 + f64::from(b.nanos - a.nanos) / 1e9,
        _ => 0.0,
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether the call failed because the connection to `BuildKit` went (a transient fault), not
/// because `BuildKit` said no: UNAVAILABLE or CANCELLED, or a status made here from a transport
/// error (it carries that error as its source; one `BuildKit` sent carries none). Seen with a
/// connection cut mid-solve: UNKNOWN "transport error".
fn lost_connection(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Cancelled)
        || (status.code() == tonic::Code::Unknown && std::error::Error::source(status).is_some())
}

/// `executor failed running [/bin/sh -c false]: exit code: 1` -> 1
fn exit_code(message: &str) -> Option<i32> {
    let tail = &message[message.rfind("exit code:")? + "exit code:".len()..];
    tail.trim().split(|c: char| !c.is_ascii_digit() && c != '-').next()?.parse().ok()
}

fn summarize(message: &str) -> String {
    // BuildKit wraps errors in layers of context; the innermost is what a person needs.
    if let Some(i) = message.find("failed to load cache key: ") {
        return format!("BuildKit could not prepare an input: {}", &message[i + 26..]);
    }
    format!("BuildKit refused the build: {message}")
}

/// Splits `BuildKit`'s log chunks into lines, per vertex and stream.
#[derive(Default)]
struct LineSplitter {
    partial: HashMap<(String, i64), Vec<u8>>,
}

impl LineSplitter {
    fn push(&mut self, vertex: &str, stream: i64, chunk: &[u8]) -> Vec<(i64, String)> {
        let buf = self.partial.entry((vertex.to_string(), stream)).or_default();
        buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            out.push((stream, clean(&line[..line.len() - 1])));
        }
        out
    }

    fn flush(&mut self, vertex: &str) -> Vec<(i64, String)> {
        let mut out = Vec::new();
        for stream in [1, 2] {
            if let Some(buf) = self.partial.remove(&(vertex.to_string(), stream)) {
                if !buf.is_empty() {
                    out.push((stream, clean(&buf)));
                }
            }
        }
        out
    }
}

fn clean(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    // A progress bar redraws with \r; the last frame is what a log should keep.
    s.rsplit('\r').find(|p| !p.is_empty()).unwrap_or("").to_string()
}

#[cfg(test)]
mod tests;
