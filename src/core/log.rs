//! A line of the deployment log: one stream per build, `deployment/<operation-id>`, whose lines
//! are `[AppRunner]` (the worker's own steps) or `[Build]` (what the user's commands print).

use serde::{Deserialize, Serialize};

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

/// The stream a deployment's lines go to.
pub fn stream_name(operation_id: &str) -> String {
    format!("deployment/{operation_id}")
}
