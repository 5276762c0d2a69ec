//! The three kinds of failure a build can end in, and what the queue does with each.

use std::fmt;

/// Who has to act when a build fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorClass {
    /// The user's mistake (bad configuration, a failing build command): fail the build and say why.
    User,
    /// A fault of something we depend on (BuildKit, registry, git host unreachable): retry.
    Transient,
    /// Our bug: fail loudly, keep the job for a person.
    Internal,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorClass::User => "USER",
            ErrorClass::Transient => "TRANSIENT",
            ErrorClass::Internal => "INTERNAL",
        })
    }
}

/// A build failure: its class and one line a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub class: ErrorClass,
    pub message: String,
}

impl BuildError {
    pub fn user(message: impl Into<String>) -> Self {
        Self { class: ErrorClass::User, message: one_line(message.into()) }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self { class: ErrorClass::Transient, message: one_line(message.into()) }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self { class: ErrorClass::Internal, message: one_line(message.into()) }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

/// Errors are promised to be single lines; collapse whatever a dependency handed us.
pub fn one_line(s: String) -> String {
    if !s.contains(['\n', '\r']) {
        return s;
    }
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn messages_are_single_lines() {
        assert_eq!(BuildError::user("a\n  b\r\n").message, "a | b");
    }
}
