//! One build per operation, and one deployment per service, at a time across the fleet: a
//! lease is an exclusive queue named after the operation (or the service), declared on a
//! connection of the worker's own. The broker refuses a second declaration while the first
//! connection lives and deletes the queue when that connection goes, so a lease survives
//! nothing but its holder. A build reports its outcome
//! only while its lease still holds.

use super::{Brokers, Link, Topology};
use crate::error::QueueError;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Mutex as AsyncMutex;

/// A held lease; release it with [`Leases::release`].
#[derive(Debug)]
pub struct Lease {
    /// Its queue's name.
    queue: String,
    /// Which connection holds it: a reconnect means the lease was lost.
    generation: u64,
}

/// The lease connection, its generation (a reconnect means every lease on it was lost), and the
/// channel lease steps go on.
type Held = (Connection, u64, Option<lapin::Channel>);

pub struct Leases {
    brokers: Brokers,
    name: String,
    topology: Topology,
    /// Kept, channel included: a channel opened and closed per step cost the broker as much as
    /// the steps.
    conn: AsyncMutex<Option<Held>>,
    /// Operations this worker is building: its own connection could declare them again.
    mine: Mutex<HashSet<String>>,
    /// Lease connections made so far.
    generations: AtomicU64,
}

/// Why no lease was had.
#[derive(Debug)]
pub enum NoLease {
    /// Another build of the operation is running (here or on another worker).
    Held,
    /// The broker could not be asked.
    Broker(QueueError),
}

/// Longest a lease step (connecting included) may take.
const STEP: Duration = Duration::from_secs(15);

fn unanswered() -> QueueError {
    QueueError::broker_fault(format!("the broker did not answer a lease step within {}s", STEP.as_secs()))
}

impl Leases {
    pub fn new(brokers: &Brokers, name: &str, topology: Topology) -> Self {
        Self {
            brokers: brokers.clone(),
            name: name.to_string(),
            topology,
            conn: AsyncMutex::new(None),
            mine: Mutex::default(),
            generations: AtomicU64::new(0),
        }
    }

    /// The lease channel (connected anew if the connection was lost, opened anew if a refusal
    /// closed it) and the connection's generation; called with the state locked, so lease steps
    /// go one at a time: a refusal closes the channel, which must not fail another's step.
    async fn channel(&self, state: &mut Option<Held>) -> Result<(lapin::Channel, u64), QueueError> {
        if let Some((conn, generation, kept)) = state.as_mut() {
            if conn.status().connected() {
                if let Some(ch) = kept.as_ref().filter(|ch| ch.status().connected()) {
                    return Ok((ch.clone(), *generation));
                }
                // A connection whose node just went may not know it yet: then a new one.
                if let Ok(ch) = conn.create_channel().await {
                    *kept = Some(ch.clone());
                    return Ok((ch, *generation));
                }
            }
        }
        // Never reused, so a lease taken on an earlier connection never matches a later one.
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let Link(conn) = self.brokers.connect(&self.name).await.map_err(|e| e.within("cannot reach the broker"))?;
        let ch = conn.create_channel().await?;
        *state = Some((conn, generation, Some(ch.clone())));
        Ok((ch, generation))
    }

    /// Forgets the lease channel after a step on it failed (a refusal closes it).
    fn drop_channel(state: &mut Option<Held>) {
        if let Some((_, _, kept)) = state.as_mut() {
            *kept = None;
        }
    }

    /// Forgets the lease connection after a step on it went unanswered or failed: the next step
    /// connects anew (a new generation, so no lease taken on this one is held any more). It is
    /// closed in the background, within a bound.
    fn drop_connection(state: &mut Option<Held>) {
        if let Some((conn, _, _)) = state.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(STEP, conn.close(200, "lease step unanswered".into())).await;
            });
        }
    }

    /// Takes the lease of `operation_id`, unless a build of it runs anywhere.
    pub async fn acquire(&self, operation_id: &str) -> Result<Lease, NoLease> {
        self.take(self.topology.lease(operation_id)).await
    }

    /// Takes the lease of `service`, unless a deployment of it runs anywhere.
    pub async fn acquire_service(&self, service: &str) -> Result<Lease, NoLease> {
        self.take(self.topology.service_lease(service)).await
    }

    async fn take(&self, queue: String) -> Result<Lease, NoLease> {
        if !self.mine.lock().unwrap_or_else(PoisonError::into_inner).insert(queue.clone()) {
            return Err(NoLease::Held);
        }
        let taken = async {
            let mut state = self.conn.lock().await;
            // Bounded, with the state locked: a step on a connection whose node just went, before
            // lapin knows it is gone, may never be answered, and every other lease step (and
            // `holds`) waits for this one.
            let step = tokio::time::timeout(STEP, async {
                let (ch, generation) = self.channel(&mut state).await.map_err(NoLease::Broker)?;
                let options = QueueDeclareOptions { exclusive: true, auto_delete: false, ..Default::default() };
                match ch.queue_declare(queue.as_str().into(), options, FieldTable::default()).await {
                    Ok(_) => Ok(Lease { queue: queue.clone(), generation }),
                    // RESOURCE_LOCKED: another connection holds it.
                    Err(e) => match e.kind() {
                        lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 405 => Err(NoLease::Held),
                        _ => Err(NoLease::Broker(e.into())),
                    },
                }
            })
            .await;
            match step {
                Ok(Ok(lease)) => Ok(lease),
                Ok(Err(refused)) => {
                    // A refused declaration closed the channel.
                    Self::drop_channel(&mut state);
                    Err(refused)
                }
                // Unanswered: the connection is not trusted again (its leases go with it).
                Err(_) => {
                    Self::drop_connection(&mut state);
                    Err(NoLease::Broker(unanswered()))
                }
            }
        }
        .await;
        if taken.is_err() {
            self.mine.lock().unwrap_or_else(PoisonError::into_inner).remove(&queue);
        }
        taken
    }

    /// Whether `lease` still holds: its connection is the one that took it, and alive.
    pub async fn holds(&self, lease: &Lease) -> bool {
        let state = self.conn.lock().await;
        Self::held_in(state.as_ref(), lease)
    }

    fn held_in(state: Option<&Held>, lease: &Lease) -> bool {
        state.is_some_and(|(conn, generation, _)| *generation == lease.generation && conn.status().connected())
    }

    /// Gives the lease up (its queue goes; a lost connection took it already).
    pub async fn release(&self, lease: Lease) {
        let mut state = self.conn.lock().await;
        if Self::held_in(state.as_ref(), &lease) {
            let deleted = tokio::time::timeout(STEP, async {
                let (ch, _) = self.channel(&mut state).await?;
                ch.queue_delete(lease.queue.as_str().into(), QueueDeleteOptions::default()).await?;
                Ok::<_, QueueError>(())
            })
            .await;
            match deleted {
                Ok(Ok(())) => {}
                Ok(Err(_)) => Self::drop_channel(&mut state),
                // Unanswered: dropping the connection gives up every lease on it, this one too.
                Err(_) => Self::drop_connection(&mut state),
            }
        }
        drop(state);
        self.mine.lock().unwrap_or_else(PoisonError::into_inner).remove(&lease.queue);
    }

    pub async fn close(&self) {
        if let Some((conn, _, _)) = self.conn.lock().await.take() {
            let _ = conn.close(200, "bye".into()).await;
        }
    }
}
