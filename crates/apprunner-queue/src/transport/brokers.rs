//! The broker's nodes, and a connection to whichever of them answers.

use super::Link;
use crate::error::QueueError;
use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one node may take to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker: one AMQP URI per node of a cluster (or one for a single node, or a load
/// balancer). Every connection of a process tries the node that answered last first, then the
/// others in order, so when a node goes its clients move together to the next reachable one.
/// Clones share that state and the failover count.
#[derive(Clone)]
pub struct Brokers {
    uris: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    failovers: Arc<AtomicU64>,
}

impl Brokers {
    /// One URI, or several separated by commas (`APPRUNNER_AMQP_URI`).
    pub fn parse(list: &str) -> Result<Self, QueueError> {
        Self::new(list.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect())
    }

    pub fn new(uris: Vec<String>) -> Result<Self, QueueError> {
        if uris.is_empty() {
            return Err(QueueError::Setting("no AMQP URI given; give amqp://USER:PASSWORD@HOST:PORT/VHOST (repeat --amqp, or separate them with commas, for each node of a cluster)".into()));
        }
        if let Some(bad) = uris.iter().find(|u| !(u.starts_with("amqp://") || u.starts_with("amqps://"))) {
            return Err(QueueError::Setting(format!(
                "`{}` is not an AMQP URI; expected amqp://USER:PASSWORD@HOST:PORT/VHOST or amqps://…",
                crate::core::shown::cut(&crate::core::shown::redact_userinfo(bad))
            )));
        }
        let uris = uris.into_iter().map(|u| with_frame_max(&u)).collect();
        Ok(Self { uris: Arc::new(uris), current: Arc::default(), failovers: Arc::default() })
    }

    /// `host:port` of node `i`, credentials and vhost left out.
    fn node_of(&self, i: usize) -> String {
        let uri = crate::core::shown::redact_userinfo(&self.uris[i]);
        let rest = uri.split_once("://").map_or(uri.as_str(), |(_, r)| r);
        rest.split(['/', '?']).next().unwrap_or(rest).to_string()
    }

    /// The node connections go to first: the one that answered last.
    pub fn node(&self) -> String {
        self.node_of(self.current.load(Ordering::Relaxed) % self.uris.len())
    }

    /// How many times connections moved to another node.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Ordering::Relaxed)
    }

    /// A connection named `name` to the first node that accepts one, starting with the current.
    pub async fn connect(&self, name: &str) -> Result<Link, QueueError> {
        let n = self.uris.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let properties = ConnectionProperties::default().with_connection_name(LongString::from(name.to_string()));
            match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.uris[i], properties)).await {
                Ok(Ok(conn)) => {
                    // Another connection may have moved already; count each move once.
                    if i != start
                        && self.current.compare_exchange(start, i, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                    {
                        self.failovers.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("broker node {} unreachable; moved to {}", self.node_of(start), self.node_of(i));
                    }
                    return Ok(Link(conn));
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(lapin::Error::from(lapin::ErrorKind::IOError(Arc::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("{} did not answer within {CONNECT_TIMEOUT:?}", self.node_of(i)),
                    )))));
                }
            }
        }
        Err(QueueError::from(last.expect("at least one node")))
    }
}

/// How long a session that failed waits for its connection's close before the next one: a
/// close on a healthy connection takes milliseconds.
pub const CLOSE_BEFORE_AGAIN: Duration = Duration::from_secs(1);

/// Closes `conn` before a new session, unless it is gone already, waiting at most `limit`. A
/// connection whose node went may answer no close: a mover that waited 10 s on one held a due
/// job's retry back that long (the cluster test caught a retry 10.9 s late).
pub async fn close_for_next_session(conn: &Link, why: &str, limit: Duration) {
    if conn.is_open() {
        conn.close_within(why, limit).await;
    }
}

/// The largest AMQP frame a worker's connections ask for, unless the URI says (`frame_max=`).
/// lapin keeps two buffers of 32 frames per connection, zero-filled: at RabbitMQ's 128 KiB
/// frames that was 8 MiB resident per connection, most of an idle worker's memory. Messages
/// larger than a frame go in several.
pub const FRAME_MAX: u32 = 16 * 1024;

/// `uri` asking for [`FRAME_MAX`]-byte frames, unless it names a frame size itself.
fn with_frame_max(uri: &str) -> String {
    match uri.split_once('?') {
        Some((_, query)) if query.split('&').any(|p| p.starts_with("frame_max=")) => uri.to_string(),
        Some(_) => format!("{uri}&frame_max={FRAME_MAX}"),
        None => format!("{uri}?frame_max={FRAME_MAX}"),
    }
}

/// Nodes only: the URIs hold passwords.
impl std::fmt::Debug for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Brokers({self})")
    }
}

impl std::fmt::Display for Brokers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = (0..self.uris.len()).map(|i| self.node_of(i)).collect();
        write!(f, "{}", nodes.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_named_without_their_credentials() {
        let b = Brokers::parse("amqp://u:SECRET@10.0.0.1:5672/%2f, amqps://u:SECRET@mq-2:5671/prod").unwrap();
        assert_eq!(b.node(), "10.0.0.1:5672");
        assert_eq!(format!("{b} {b:?}"), "10.0.0.1:5672, mq-2:5671 Brokers(10.0.0.1:5672, mq-2:5671)");
        let e = Brokers::parse("http://u:SECRET@host").unwrap_err();
        assert_eq!(crate::core::error::Classified::class(&e), crate::core::error::ErrorClass::User);
        let e = e.to_string();
        assert!(e.contains("is not an AMQP URI") && !e.contains("SECRET"), "{e}");
        assert!(Brokers::parse(" , ").unwrap_err().to_string().starts_with("no AMQP URI given"));
    }

    #[test]
    fn connections_ask_for_small_frames_unless_the_uri_says() {
        assert_eq!(with_frame_max("amqp://h/%2f"), "amqp://h/%2f?frame_max=16384");
        assert_eq!(with_frame_max("amqp://h/%2f?heartbeat=10"), "amqp://h/%2f?heartbeat=10&frame_max=16384");
        assert_eq!(with_frame_max("amqp://h/%2f?frame_max=131072"), "amqp://h/%2f?frame_max=131072");
        let b = Brokers::parse("amqp://u:p@h:5672/%2f").unwrap();
        assert_eq!(b.node(), "h:5672");
    }
}
