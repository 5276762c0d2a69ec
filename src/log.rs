//! The deployment log of one build and where its lines go (the terminal, the queue's logs
//! exchange, a test's buffer). The lines themselves are `core::log::LogLine`.

pub use crate::core::log::{LineSource, LogLine};
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// Where log lines go.
pub trait LogSink: Send + Sync {
    fn line(&self, line: &LogLine);
}

/// Writes rendered lines to stdout as they come, with App Runner's time prefix unless told not to.
pub struct TerminalSink {
    pub timestamps: bool,
}

impl LogSink for TerminalSink {
    fn line(&self, line: &LogLine) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", if self.timestamps { line.render_timed() } else { line.render() });
        let _ = out.flush();
    }
}

/// Keeps every line; tests read them back.
#[derive(Default, Clone)]
pub struct MemorySink(pub Arc<Mutex<Vec<LogLine>>>);

impl LogSink for MemorySink {
    fn line(&self, line: &LogLine) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(line.clone());
    }
}

impl MemorySink {
    pub fn rendered(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().map(LogLine::render).collect()
    }
}

/// One build's log stream, `deployment/<operation-id>`: stamps each line and hands it to every sink.
#[derive(Clone)]
pub struct DeploymentLog {
    pub stream: String,
    sinks: Vec<Arc<dyn LogSink>>,
}

impl DeploymentLog {
    pub fn new(operation_id: &str, sinks: Vec<Arc<dyn LogSink>>) -> Self {
        Self { stream: crate::core::log::stream_name(operation_id), sinks }
    }

    /// Stamps and sends one line; a credential in a URL in it is removed first.
    pub fn emit(&self, source: LineSource, text: &str) {
        let text = crate::core::shown::redact_userinfo(text);
        let timestamp_ms =
            i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let line = LogLine { stream: self.stream.clone(), timestamp_ms, source, text };
        for s in &self.sinks {
            s.line(&line);
        }
    }

    pub fn apprunner(&self, text: impl Into<String>) {
        self.emit(LineSource::AppRunner, &text.into());
    }

    pub fn build(&self, text: impl Into<String>) {
        self.emit(LineSource::Build, &text.into());
    }
}
