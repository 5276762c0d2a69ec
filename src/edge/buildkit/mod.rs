//! `BuildKit`: reaching a daemon (`connect`), its Control API (`control`), solving LLB with its
//! progress (`solve`), and the two kinds of daemon the worker drives (`backend`).

pub mod backend;
pub mod connect;
pub mod control;
mod docker;
mod solve;

pub use backend::Backend;
pub use connect::BuildkitAddr;
pub use docker::PushError;

use crate::core::progress::VertexInfo;
use crate::error::{error_chain, Classified, ErrorClass};
use control::ControlClient;

/// `BuildKit` could not be reached at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach BuildKit at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("BuildKit at {addr} does not answer: {detail}")]
    NotAnswering { addr: String, detail: String },
}

impl Classified for ConnectError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Transient
    }
}
crate::error::classified_into_build_error!(ConnectError);

/// How a solve ended badly.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveFailure {
    /// One of our steps exited non-zero.
    #[error("{}", step_failed(vertex, *exit_code))]
    Step { vertex: VertexInfo, exit_code: Option<i32>, message: String },
    /// `BuildKit` could not be reached or dropped us.
    #[error("BuildKit unavailable: {0}")]
    Unavailable(String),
    /// `BuildKit` could not reach a registry: a fault of the service, not of the user.
    #[error("{0}")]
    RegistryUnreachable(String),
    /// Anything else `BuildKit` refused (a missing image, say).
    #[error("{0}")]
    Refused(String),
}

fn step_failed(vertex: &VertexInfo, exit_code: Option<i32>) -> String {
    match exit_code {
        Some(code) => format!("{} failed with exit code {code}", vertex.name),
        None => format!("{} failed", vertex.name),
    }
}

impl Classified for SolveFailure {
    fn class(&self) -> ErrorClass {
        match self {
            SolveFailure::Step { .. } | SolveFailure::Refused(_) => ErrorClass::User,
            SolveFailure::Unavailable(_) | SolveFailure::RegistryUnreachable(_) => ErrorClass::Transient,
        }
    }
}
crate::error::classified_into_build_error!(SolveFailure);

#[derive(Clone)]
pub struct Buildkit {
    addr: BuildkitAddr,
    client: ControlClient,
}

impl Buildkit {
    pub async fn connect(addr: &BuildkitAddr) -> Result<Self, ConnectError> {
        let channel = connect::channel(addr)
            .await
            .map_err(|e| ConnectError::Unreachable { addr: addr.to_string(), detail: error_chain(&e) })?;
        let mut client = ControlClient::new(channel);
        client
            .list_workers()
            .await
            .map_err(|e| ConnectError::NotAnswering { addr: addr.to_string(), detail: e.message().to_string() })?;
        Ok(Self { addr: addr.clone(), client })
    }

    pub fn addr(&self) -> &BuildkitAddr {
        &self.addr
    }
}
