//! What goes wrong on the queue's side, sorted into the three classes a build's errors are: the
//! worker's ack, retry and dead-letter decisions and the clients' exit codes read the class.

use crate::error::{Classified, ErrorClass};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// A setting of a queue command (`--amqp`, an age) is not one it takes: the user's.
    #[error("{0}")]
    Setting(String),
    /// The broker could not be reached, refused a message or did not confirm it: tried again.
    #[error("{0}")]
    Broker(String),
    /// This worker lost the operation's lease mid-build; the redelivery reports the outcome.
    #[error("job {job_id}: lost its lease during the build; its outcome is left to the redelivery")]
    LostLease { job_id: String },
    /// No outcome came within the time a follower was given; the deployment may still run.
    #[error("{0}")]
    NoOutcome(String),
    /// The registry that keeps the service records failed, or holds one that cannot be read.
    #[error("{0}")]
    Record(String),
    /// A value could not be written as JSON: a bug.
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
}

impl QueueError {
    /// The broker failed while doing `what`.
    pub fn broker(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Broker(format!("{what}: {e}"))
    }

    /// `value` as JSON, or an `Encode` error naming `what` it was.
    pub fn json(what: &'static str, value: &impl serde::Serialize) -> Result<Vec<u8>, Self> {
        serde_json::to_vec(value).map_err(|e| Self::Encode { what, detail: e.to_string() })
    }
}

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> Self {
        Self::Broker(e.to_string())
    }
}

impl Classified for QueueError {
    fn class(&self) -> ErrorClass {
        match self {
            QueueError::Setting(_) => ErrorClass::User,
            QueueError::Broker(_) | QueueError::LostLease { .. } | QueueError::NoOutcome(_) | QueueError::Record(_) => {
                ErrorClass::Transient
            }
            QueueError::Encode { .. } => ErrorClass::Internal,
        }
    }
}
crate::error::classified_into_build_error!(QueueError);
