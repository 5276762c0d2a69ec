//! `BuildKit`: reaching a daemon (`connect`), its Control API (`control`), solving LLB with its
//! progress (`solve`), the session it calls back on for registry credentials (`session`), where a
//! solve's image and cache go (`export`), and what a Docker Engine says of itself (`docker`).

pub mod connect;
pub mod control;
mod docker;
pub mod export;
mod link;
pub mod session;
mod solve;
pub use solve::SolveOptions;

pub use connect::BuildkitAddr;
pub use export::{attestations, image_exporter, Exporter, ExporterResponse, FleetCache};
pub use link::BuildkitLink;

use apprunner_core::error::{error_chain, Classified, ErrorClass};
use apprunner_core::progress::VertexInfo;
use control::ControlClient;

/// `BuildKit` could not be reached at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach BuildKit at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("BuildKit at {addr} does not answer: {detail}")]
    NotAnswering { addr: String, detail: String },
    #[error("cannot open a session with BuildKit at {addr}: {detail}")]
    Session { addr: String, detail: String },
    /// `--buildkit` names no kind of address the worker speaks.
    #[error("`{0}` is not a BuildKit address; expected docker-unix:///var/run/docker.sock, unix:///path/buildkitd.sock or tcp://host:port")]
    BadAddress(String),
    /// What answers is older than the worker drives, or cannot push (what it is, and why).
    #[error("{0}")]
    Unsupported(String),
}

impl Classified for ConnectError {
    fn class(&self) -> ErrorClass {
        match self {
            ConnectError::Unreachable { .. } | ConnectError::NotAnswering { .. } | ConnectError::Session { .. } => {
                ErrorClass::Transient
            }
            ConnectError::BadAddress(_) | ConnectError::Unsupported(_) => ErrorClass::User,
        }
    }
}
apprunner_core::error::classified_into_build_error!(ConnectError);

/// How a solve ended badly.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveFailure {
    /// One of our steps exited non-zero.
    #[error("{}", step_failed(vertex, *exit_code))]
    Step { vertex: VertexInfo, exit_code: Option<i32>, message: String },
    /// `BuildKit` could not be reached or dropped us.
    #[error("BuildKit unavailable: {0}")]
    Unavailable(String),
    /// The runtime could not start a step's container: the step never ran, a fault of the
    /// machine, not of the user's command.
    #[error("{}: BuildKit could not start its container ({detail})", vertex.name)]
    NotStarted { vertex: VertexInfo, detail: String },
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
            SolveFailure::Unavailable(_) | SolveFailure::NotStarted { .. } | SolveFailure::RegistryUnreachable(_) => {
                ErrorClass::Transient
            }
        }
    }
}
apprunner_core::error::classified_into_build_error!(SolveFailure);

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
        // Info, not ListWorkers: BuildKit answers ListWorkers by probing which platforms it can
        // emulate, every time (a process per platform), and this runs on every connection. A
        // BuildKit too old for Info still answered; check_version says what to do about it.
        match client.info().await {
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::Unimplemented => {}
            Err(e) => {
                return Err(ConnectError::NotAnswering { addr: addr.to_string(), detail: e.message().to_string() })
            }
        }
        Ok(Self { addr: addr.clone(), client })
    }

    pub fn addr(&self) -> &BuildkitAddr {
        &self.addr
    }

    /// BuildKit's version (`v0.13.2`); None where the daemon does not say (BuildKit before
    /// v0.11, as Docker Engine 20.10 embeds, has no Info).
    pub async fn version(&self) -> Option<String> {
        let mut client = self.client.clone();
        let info = client.info().await.ok()?;
        info.buildkit_version.map(|v| v.version).filter(|v| !v.is_empty())
    }
}

/// The oldest BuildKit this worker drives (v0.11, Docker Engine 23's); Engine 26, which
/// `docker/stack` installs, embeds v0.13.
pub const MIN_BUILDKIT: (u64, u64) = (0, 11);
/// The oldest Docker Engine, for the Engines that do not say their BuildKit's version
/// (Debian's builds report `v0.0.0+unknown`).
pub const MIN_ENGINE: (u64, u64) = (23, 0);

/// What runs at `addr`, refused when it is older than this worker drives, or an Engine that keeps
/// its images in its classic store (its `BuildKit` cannot push an image or a registry cache).
pub async fn check_version(buildkit: &Buildkit) -> Result<String, ConnectError> {
    let reported = buildkit.version().await;
    let shown = match (&buildkit.addr, reported.as_deref().filter(|v| supported(v, MIN_BUILDKIT))) {
        (BuildkitAddr::Unix(_) | BuildkitAddr::Tcp(_), Some(v)) => return Ok(format!("BuildKit {v}")),
        (BuildkitAddr::Docker(socket), known) => {
            let engine = docker::engine_version(socket).await.unwrap_or_else(|| "of no stated version".into());
            let shown =
                format!("Docker Engine {engine} (BuildKit {})", reported.as_deref().unwrap_or("of no stated version"));
            if known.is_none() && !supported(&engine, MIN_ENGINE) {
                return Err(ConnectError::Unsupported(format!("{shown} is too old")));
            }
            if docker::uses_containerd_store(socket).await == Some(false) {
                return Err(ConnectError::Unsupported(format!(
                    "{shown} keeps its images in its classic store, where its BuildKit cannot push images or a registry cache: set {{\"features\": {{\"containerd-snapshotter\": true}}}} in /etc/docker/daemon.json and restart dockerd (docker/stack does)"
                )));
            }
            shown
        }
        (_, None) => {
            return Err(ConnectError::Unsupported(format!(
                "BuildKit {} is too old",
                reported.unwrap_or_else(|| "older than v0.11 (it does not say its version)".into())
            )))
        }
    };
    Ok(shown)
}

/// Whether a version (`v0.13.2`, `26.1.5+dfsg1`) is at least `min` (major, minor).
pub fn supported(version: &str, min: (u64, u64)) -> bool {
    let mut parts = version.trim_start_matches('v').split(['.', '-', '+']).map(|p| p.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= min
}

/// What BuildKit `addr` names runs, refused when it is older than this worker drives; None
/// when it cannot be reached now (jobs then wait and retry).
pub async fn check(addr: &BuildkitAddr) -> Result<Option<String>, apprunner_core::error::BuildError> {
    let Ok(buildkit) = Buildkit::connect(addr).await else { return Ok(None) };
    let (major, minor) = MIN_BUILDKIT;
    check_version(&buildkit).await.map(Some).map_err(|found| {
        apprunner_core::error::BuildError::user(format!(
            "{found} at {addr}: this worker needs BuildKit v{major}.{minor} or later (Docker Engine 23 or later, with the containerd image store); run docker/stack (Docker Engine 26) or point --buildkit at a newer buildkitd"
        ))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_compared_numerically() {
        use super::{supported, MIN_BUILDKIT, MIN_ENGINE};
        assert!(supported("v0.13.2", MIN_BUILDKIT));
        assert!(supported("0.11.0+dfsg", MIN_BUILDKIT));
        assert!(supported("v1.0.0", MIN_BUILDKIT));
        assert!(!supported("v0.8.3", MIN_BUILDKIT));
        assert!(!supported("v0.0.0+unknown", MIN_BUILDKIT));
        assert!(supported("26.1.5+dfsg1", MIN_ENGINE));
        assert!(!supported("20.10.24+dfsg1", MIN_ENGINE));
    }
}
