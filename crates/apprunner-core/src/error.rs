//! The three kinds of failure a build can end in, and what the queue does with each.
//!
//! Each edge has its own error enum (`SourceError`, `RegistryError`, `BuildkitError`, …) that
//! knows its class; [`BuildError`] is what a build ends in: a class and one line a person can
//! act on. The queue's ack, retry and dead-letter decisions read only the class.

use std::fmt;

/// Who has to act when a build fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorClass {
    /// The user's mistake (bad configuration, a failing build command): fail the build and say why.
    User,
    /// A fault of something we depend on (`BuildKit`, registry, git host unreachable): retry.
    Transient,
    /// Our bug: fail loudly, keep the job for a person.
    Internal,
}

impl ErrorClass {
    pub fn key(self) -> &'static str {
        match self {
            ErrorClass::User => "USER",
            ErrorClass::Transient => "TRANSIENT",
            ErrorClass::Internal => "INTERNAL",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for ErrorClass {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        match s.to_ascii_uppercase().as_str() {
            "USER" => Ok(ErrorClass::User),
            "TRANSIENT" => Ok(ErrorClass::Transient),
            "INTERNAL" => Ok(ErrorClass::Internal),
            _ => Err(Invalid(format!("`{s}` is not an error class; expected USER, TRANSIENT or INTERNAL"))),
        }
    }
}

/// An error that knows whose it is.
pub trait Classified: fmt::Display {
    fn class(&self) -> ErrorClass;
}

/// The error something else gave, kept as a variant's `#[source]` so a report can walk the
/// chain (`error_chain`): shared, so the error that holds it stays `Clone`, and compared by
/// what it says, so it stays `PartialEq` for the tests that match on variants.
#[derive(Debug, Clone)]
pub struct Cause(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(std::sync::Arc::from(e.into()))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Cause {}

/// A value no rule accepts: what is wrong with it and what would be accepted, in one line. The
/// caller says which key or setting held it; it is the user's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Classified for Invalid {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}
crate::classified_into_build_error!(Invalid);

/// The longest error message kept; what is past it is cut with `…`.
pub const MAX_MESSAGE_CHARS: usize = 8 * 1024;

/// A build failure: its class and one line a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    pub class: ErrorClass,
    /// One line.
    pub message: String,
    /// For a failure of several problems, one line each (the message joins them).
    pub lines: Vec<String>,
}

impl BuildError {
    /// One line, without any credential a URL in it carried, control characters escaped.
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        let line = one_line(crate::shown::redact_userinfo(&message.into()));
        Self { class, message: crate::shown::message(&line, MAX_MESSAGE_CHARS), lines: Vec::new() }
    }
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::User, message)
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Transient, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Internal, message)
    }
    /// The same failure with context in front of its message.
    #[must_use]
    pub fn context(self, what: &str) -> Self {
        Self { class: self.class, message: format!("{what}: {}", self.message), lines: self.lines }
    }
}

/// Every classified edge error becomes a build error of its class, its text kept.
#[macro_export]
macro_rules! classified_into_build_error {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for $crate::error::BuildError {
            fn from(e: $t) -> Self {
                $crate::error::BuildError::new($crate::error::Classified::class(&e), e.to_string())
            }
        }
    )*};
}
pub use crate::classified_into_build_error;

/// An image reference that does not parse is the user's to correct.
impl Classified for crate::image_ref::ImageRefError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}
classified_into_build_error!(crate::image_ref::ImageRefError);

/// Errors are promised to be single lines; collapse whatever a dependency handed us.
pub fn one_line(s: String) -> String {
    if !s.contains(['\n', '\r']) {
        return s;
    }
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" | ")
}

/// The message and the chain of causes below it, each once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn messages_are_single_lines() {
        assert_eq!(BuildError::user("a\n  b\r\n").message, "a | b");
    }

    #[test]
    fn classes_parse_in_any_case() {
        assert_eq!("transient".parse::<ErrorClass>(), Ok(ErrorClass::Transient));
        assert!("bad".parse::<ErrorClass>().unwrap_err().0.contains("USER, TRANSIENT or INTERNAL"));
    }
}
