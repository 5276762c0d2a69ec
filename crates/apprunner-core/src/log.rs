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
    /// The line as App Runner's console shows it, time first: `09-24-2023 02:08:09 PM [AppRunner] …`.
    pub fn render_timed(&self) -> String {
        format!("{} {}", time_prefix(self.timestamp_ms), self.render())
    }

    /// The line without its time: `[AppRunner] …` or `[Build] …`.
    pub fn render(&self) -> String {
        match self.source {
            LineSource::AppRunner => format!("[AppRunner] {}", self.text),
            LineSource::Build => format!("[Build] {}", self.text),
        }
    }
}

/// App Runner's time prefix of a deployment log line, `09-24-2023 02:08:09 PM` (UTC here).
/// RFC 3339, as events, failed entries and image configs carry times.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    // Every UTC time of a four-digit year formats; the empty string is never seen in practice.
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub fn time_prefix(timestamp_ms: i64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(timestamp_ms.div_euclid(1000)) else { return String::new() };
    let (hour, pm) = match t.hour() {
        0 => (12, false),
        h @ 1..=11 => (h, false),
        12 => (12, true),
        h => (h - 12, true),
    };
    format!(
        "{:02}-{:02}-{} {hour:02}:{:02}:{:02} {}",
        u8::from(t.month()),
        t.day(),
        t.year(),
        t.minute(),
        t.second(),
        if pm { "PM" } else { "AM" }
    )
}

/// The stream a deployment's lines go to.
pub fn stream_name(operation_id: &str) -> String {
    format!("deployment/{operation_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_app_runners_time_prefix() {
        // 2023-09-24T14:08:09Z, as App Runner's console shows it.
        assert_eq!(time_prefix(1_695_564_489_000), "09-24-2023 02:08:09 PM");
        assert_eq!(time_prefix(1_695_513_600_000), "09-24-2023 12:00:00 AM");
        let line = LogLine {
            stream: "deployment/x".into(),
            timestamp_ms: 1_695_564_489_000,
            source: LineSource::Build,
            text: "hi".into(),
        };
        assert_eq!(line.render_timed(), "09-24-2023 02:08:09 PM [Build] hi");
    }
}
