//! One connection to `BuildKit` and one session on it, shared by every build of a process: a
//! worker runs build after build, and connecting (an HTTP upgrade, an HTTP/2 handshake, an
//! `Info`) and attaching a session cost the daemon work each time. Made on first use, and anew
//! once the session's connection has ended or a build found `BuildKit` unavailable.

use super::session::Session;
use super::{Buildkit, BuildkitAddr, ConnectError};
use apprunner_registry::Registry;
use std::sync::Arc;
use tokio::sync::Mutex;

/// A connection and the session on it.
type Linked = (Buildkit, Arc<Session>);

/// The shared connection and session (cloning shares them).
#[derive(Clone, Default)]
pub struct BuildkitLink(Arc<Mutex<Option<Linked>>>);

impl std::fmt::Debug for BuildkitLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BuildkitLink")
    }
}

impl BuildkitLink {
    /// The connection and session to `addr`, made if there are none alive; the session answers
    /// `BuildKit`'s credential requests from `registry`.
    pub async fn get(&self, addr: &BuildkitAddr, registry: Registry) -> Result<Linked, ConnectError> {
        let mut held = self.0.lock().await;
        if let Some((buildkit, session)) = held.as_ref() {
            if buildkit.addr() == addr && session.alive() {
                return Ok((buildkit.clone(), session.clone()));
            }
        }
        *held = None;
        let buildkit = Buildkit::connect(addr).await?;
        let session = Arc::new(Session::attach(addr, registry).await?);
        *held = Some((buildkit.clone(), session.clone()));
        Ok((buildkit, session))
    }

    /// Drops them: the next build connects anew (this one found `BuildKit` unavailable).
    pub async fn reset(&self) {
        self.0.lock().await.take();
    }
}
