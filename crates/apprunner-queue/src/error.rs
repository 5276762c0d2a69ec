//! What goes wrong on the queue's side, sorted into the three classes a build's errors are: the
//! worker's ack, retry and dead-letter decisions and the clients' exit codes read the class.

use crate::core::error::{Cause, Classified, ErrorClass};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    /// A setting of a queue command (`--amqp`, an age) is not one it takes: the user's.
    #[error("{0}")]
    Setting(String),
    /// The broker could not be reached, refused a message or did not confirm it: tried again.
    /// `what` says what was being done; `cause` is the client's own error, when one came.
    #[error("{}", broker_message(.what, .cause.as_ref()))]
    Broker {
        what: String,
        #[source]
        cause: Option<lapin::Error>,
    },
    /// This worker lost the operation's lease mid-build; the redelivery reports the outcome.
    #[error("job {job_id}: lost its lease during the build; its outcome is left to the redelivery")]
    LostLease { job_id: String },
    /// No outcome came within the time a follower was given; the deployment may still run.
    #[error("{0}")]
    NoOutcome(String),
    /// The registry that keeps the service records failed (`cause`), or holds one that cannot
    /// be read; `what` says which record and what was wrong.
    #[error("{}", with_cause(.what, .cause.as_ref()))]
    Record {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A value could not be written as JSON: a bug.
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
}

impl QueueError {
    /// The broker's client failed while doing `what`.
    pub fn broker(what: &str, cause: lapin::Error) -> Self {
        Self::Broker { what: what.to_string(), cause: Some(cause) }
    }

    /// The broker did not do what was asked (no answer, a refusal), with no client error to keep.
    pub fn broker_fault(what: impl Into<String>) -> Self {
        Self::Broker { what: what.into(), cause: None }
    }

    /// This error, as a broker fault met while doing `what`: a broker error keeps its cause,
    /// any other is taken into the description (and is transient from here on).
    #[must_use]
    pub fn within(self, what: &str) -> Self {
        match self {
            Self::Broker { what: inner, cause } if inner.is_empty() => Self::Broker { what: what.to_string(), cause },
            Self::Broker { what: inner, cause } => Self::Broker { what: format!("{what}: {inner}"), cause },
            other => Self::broker_fault(format!("{what}: {other}")),
        }
    }

    /// `value` as JSON, or an `Encode` error naming `what` it was.
    pub fn json(what: &'static str, value: &impl serde::Serialize) -> Result<Vec<u8>, Self> {
        serde_json::to_vec(value).map_err(|e| Self::Encode { what, detail: e.to_string() })
    }
}

impl QueueError {
    /// The service record `what` could not be had, because of `cause`.
    pub fn record(what: impl Into<String>, cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Record { what: what.into(), cause: Some(Cause::new(cause)) }
    }
}

/// `what`, then the cause's own words when there is one.
fn with_cause(what: &str, cause: Option<&Cause>) -> String {
    match cause {
        Some(cause) => format!("{what}: {cause}"),
        None => what.to_string(),
    }
}

impl From<lapin::Error> for QueueError {
    fn from(cause: lapin::Error) -> Self {
        Self::Broker { what: String::new(), cause: Some(cause) }
    }
}

/// One line: what was being done, then the client's error.
fn broker_message(what: &str, cause: Option<&lapin::Error>) -> String {
    match cause {
        None => what.to_string(),
        Some(cause) if what.is_empty() => cause.to_string(),
        Some(cause) => format!("{what}: {cause}"),
    }
}

impl Classified for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            QueueError::Setting(_) => ErrorClass::User,
            QueueError::Broker { .. }
            | QueueError::LostLease { .. }
            | QueueError::NoOutcome(_)
            | QueueError::Record { .. } => ErrorClass::Transient,
            QueueError::Encode { .. } => ErrorClass::Internal,
        }
    }
}
crate::core::error::classified_into_build_error!(QueueError);
