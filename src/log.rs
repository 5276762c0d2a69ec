//! The deployment log: one stream per build, `deployment/<operation-id>`, whose lines are
//! `[AppRunner]` (the worker's own steps) or `[Build]` (what the user's commands print).

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LineSource {
    AppRunner,
    Build,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// `deployment/<operation-id>`
    pub stream: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    pub source: LineSource,
    pub text: String,
}

impl LogLine {
    /// The line as App Runner's log shows it: `[AppRunner] …` or `[Build] …`.
    pub fn render(&self) -> String {
        match self.source {
            LineSource::AppRunner => format!("[AppRunner] {}", self.text),
            LineSource::Build => format!("[Build] {}", self.text),
        }
    }
}

/// Where log lines go (the terminal, the queue's logs exchange, a test's buffer).
pub trait LogSink: Send + Sync {
    fn line(&self, line: &LogLine);
}

/// Writes rendered lines to stdout as they come.
pub struct TerminalSink;

impl LogSink for TerminalSink {
    fn line(&self, line: &LogLine) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.render());
        let _ = out.flush();
    }
}

/// Keeps every line; tests and the worker's failure reports read them back.
#[derive(Default, Clone)]
pub struct MemorySink(pub Arc<Mutex<Vec<LogLine>>>);

impl LogSink for MemorySink {
    fn line(&self, line: &LogLine) {
        self.0.lock().unwrap().push(line.clone());
    }
}

impl MemorySink {
    pub fn rendered(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(LogLine::render).collect()
    }
}

#[derive(Clone)]
pub struct DeploymentLog {
    pub stream: String,
    sinks: Vec<Arc<dyn LogSink>>,
}

impl DeploymentLog {
    pub fn new(operation_id: &str, sinks: Vec<Arc<dyn LogSink>>) -> Self {
        Self { stream: format!("deployment/{operation_id}"), sinks }
    }

    fn emit(&self, source: LineSource, text: String) {
        let timestamp_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let line = LogLine { stream: self.stream.clone(), timestamp_ms, source, text };
        for s in &self.sinks {
            s.line(&line);
        }
    }

    pub fn apprunner(&self, text: impl Into<String>) {
        self.emit(LineSource::AppRunner, text.into());
    }

    pub fn build(&self, text: impl Into<String>) {
        self.emit(LineSource::Build, text.into());
    }
}
