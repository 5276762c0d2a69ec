//! One build per operation, and one deployment per service, at a time across the fleet: a
//! lease is an exclusive queue named after the operation (or the service), declared on a
//! connection of the worker's own. The broker refuses a second declaration while the first
//! connection lives and deletes the queue when that connection goes, so a lease survives
//! nothing but its holder. A build reports its outcome
//! only while its lease still holds.

use super::{Brokers, Topology};
use crate::queue::error::QueueError;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::Connection;
use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};
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
type Link = (Connection, u64, Option<lapin::Channel>);

pub struct Leases {
    brokers: Brokers,
    name: String,
    topology: Topology,
    /// Kept, channel included: a channel opened and closed per step cost the broker as much as
    /// the steps.
    conn: AsyncMutex<Option<Link>>,
    /// Operations this worker is building: its own connection could declare them again.
    mine: Mutex<HashSet<String>>,
}

/// Why no lease was had.
#[derive(Debug)]
pub enum NoLease {
    /// Another build of the operation is running (here or on another worker).
    Held,
    /// The broker could not be asked.
    Broker(QueueError),
}

impl Leases {
    pub fn new(brokers: &Brokers, name: &str, topology: Topology) -> Self {
        Self {
            brokers: brokers.clone(),
            name: name.to_string(),
            topology,
            conn: AsyncMutex::new(None),
            mine: Mutex::default(),
        }
    }

    /// The lease channel (connected anew if the connection was lost, opened anew if a refusal
    /// closed it) and the connection's generation; called with the state locked, so lease steps
    /// go one at a time: a refusal closes the channel, which must not fail another's step.
    async fn channel(&self, state: &mut Option<Link>) -> Result<(lapin::Channel, u64), QueueError> {
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
        let generation = state.as_ref().map_or(1, |(_, g, _)| g + 1);
        let conn =
            self.brokers.connect(&self.name).await.map_err(|e| QueueError::broker("cannot reach the broker", e))?;
        let ch = conn.create_channel().await?;
        *state = Some((conn, generation, Some(ch.clone())));
        Ok((ch, generation))
    }

    /// Forgets the lease channel after a step on it failed (a refusal closes it).
    fn drop_channel(state: &mut Option<Link>) {
        if let Some((_, _, kept)) = state.as_mut() {
            *kept = None;
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
            let (ch, generation) = self.channel(&mut state).await.map_err(NoLease::Broker)?;
            let options = QueueDeclareOptions { exclusive: true, auto_delete: false, ..Default::default() };
            match ch.queue_declare(queue.as_str().into(), options, FieldTable::default()).await {
                Ok(_) => Ok(Lease { queue: queue.clone(), generation }),
                Err(e) => {
                    // A refused declaration closed the channel.
                    Self::drop_channel(&mut state);
                    match e.kind() {
                        // RESOURCE_LOCKED: another connection holds it.
                        lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 405 => Err(NoLease::Held),
                        _ => Err(NoLease::Broker(e.into())),
                    }
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

    fn held_in(state: Option<&Link>, lease: &Lease) -> bool {
        state.is_some_and(|(conn, generation, _)| *generation == lease.generation && conn.status().connected())
    }

    /// Gives the lease up (its queue goes; a lost connection took it already).
    pub async fn release(&self, lease: Lease) {
        let mut state = self.conn.lock().await;
        if Self::held_in(state.as_ref(), &lease) {
            if let Ok((ch, _)) = self.channel(&mut state).await {
                let deleted = ch.queue_delete(lease.queue.as_str().into(), QueueDeleteOptions::default()).await;
                if deleted.is_err() {
                    Self::drop_channel(&mut state);
                }
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
