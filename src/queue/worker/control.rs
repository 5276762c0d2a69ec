//! The worker's end of the control exchange (`<p>.control`): the deployments this worker runs,
//! told when a cancel request names one (`cancel.<operation-id>`), and answering a worker that
//! asks whether anyone still builds an operation (`building.<operation-id>`, see [`Builders`]).
//! A cancel request that comes while no build of the operation runs here is the registry
//! marker's to carry (`Ledger::cancelled`), which every worker reads before it builds.

use crate::queue::error::QueueError;
use crate::queue::transport::{self, Brokers, Topology};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A deployment running here: its token (which copy of the job it is) and its cancel switch.
struct Entry {
    token: String,
    cancel: watch::Sender<bool>,
}

/// The deployments this worker runs.
#[derive(Default)]
pub struct Running {
    running: Mutex<HashMap<String, Entry>>,
}

/// A running deployment's registration: how it hears a cancel, and the token it asks other
/// workers with. Unregisters when dropped.
pub struct Registration {
    running: Arc<Running>,
    operation_id: String,
    pub token: String,
    rx: watch::Receiver<bool>,
}

impl Registration {
    /// Resolves when the deployment is cancelled (never, if it is not).
    pub async fn cancelled(&mut self) {
        if self.rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut running = self.running.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.get(&self.operation_id).is_some_and(|e| e.token == self.token) {
            running.remove(&self.operation_id);
        }
    }
}

impl Running {
    /// Registers a running deployment of `operation_id`. (A worker runs one copy of an
    /// operation at a time: it holds the operation's lease until that copy ends.)
    pub fn register(self: &Arc<Self>, operation_id: &str) -> Registration {
        let (tx, rx) = watch::channel(false);
        let token = uuid::Uuid::new_v4().simple().to_string();
        let entry = Entry { token: token.clone(), cancel: tx };
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(operation_id.to_string(), entry);
        Registration { running: self.clone(), operation_id: operation_id.to_string(), token, rx }
    }

    fn cancel(&self, operation_id: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.get(operation_id).is_some_and(|e| e.cancel.send(true).is_ok())
    }

    /// Whether a copy of `operation_id` other than the asker's (`token`) runs here.
    fn builds(&self, operation_id: &str, token: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.get(operation_id).is_some_and(|e| e.token != token)
    }

    /// Hears the control exchange until the process ends, reconnecting whenever the broker goes.
    pub async fn listen(self: Arc<Self>, brokers: Brokers, topology: Topology, name: String, worker_id: String) {
        loop {
            if let Err(e) = self.listen_once(&brokers, &topology, &name, &worker_id).await {
                tracing::warn!("control requests: {e}; listening again in 1s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn listen_once(
        &self,
        brokers: &Brokers,
        topology: &Topology,
        name: &str,
        worker_id: &str,
    ) -> Result<(), QueueError> {
        let conn = brokers.connect(name).await?;
        let ch = conn.channel().await?;
        ch.declare_topic(&topology.control()).await?;
        let queue = ch.private_queue().await?;
        for key in [Topology::cancel_key("*"), Topology::building_key("*")] {
            ch.bind(&queue, &topology.control(), &key).await?;
        }
        let mut consumer = ch.consume_unacked(&queue).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            let operation_id = String::from_utf8_lossy(delivery.body()).to_string();
            if delivery.routing_key().starts_with("building.") {
                let Some(token) = delivery.correlation_id() else { continue };
                if self.builds(&operation_id, token) {
                    ch.answer(&delivery, worker_id.as_bytes()).await?;
                }
            } else if self.cancel(&operation_id) {
                tracing::info!("operation {operation_id}: cancelled; stopping its build");
            }
        }
        transport::close_for_next_session(&conn, "listening again", transport::CLOSE_BEFORE_AGAIN).await;
        Ok(())
    }
}

/// How long an ask waits for answers.
const ANSWERS: Duration = Duration::from_secs(1);
/// How often the markers and the other workers are asked while another copy may run.
const ASK_EVERY: Duration = Duration::from_secs(2);
/// Asks in a row that nobody answered, and how long since the copy began (or last heard
/// another), before it takes itself to be alone: a live copy's worker answers within a second,
/// or within seconds of its control connection coming back after a node loss.
const UNANSWERED: u32 = 3;
const SILENT_FOR: Duration = Duration::from_secs(10);

/// Asks the fleet whether another copy of an operation still runs: a builder whose lease went
/// with its broker connection (the node it was on stopped) goes on building and publishing its
/// log, and a redelivery of its job must not end the deployment before it is done, or a
/// follower would end without its last lines. Asked over `<p>.control`; every worker answers
/// for the copies it runs (its `Running`), the asker's own excepted.
pub struct Builders<'a> {
    pub brokers: &'a Brokers,
    pub topology: &'a Topology,
    pub name: String,
}

impl Builders<'_> {
    /// Waits until no copy of `operation_id` but the asker's (`token`, which began at `since`)
    /// is heard of ([`UNANSWERED`] asks in a row, [`SILENT_FOR`] since it began or last heard
    /// one), or `done` says the other copy finished (its markers), or `limit` has passed.
    /// Ok(true) if another copy answered at all.
    pub async fn wait_until_alone<F, Fut>(
        &self,
        operation_id: &str,
        token: &str,
        since: Instant,
        limit: Duration,
        done: F,
    ) -> Result<bool, QueueError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let conn = self.brokers.connect(&self.name).await?;
        let waited = async {
            // Bounded: a node that accepted the connection may not answer (it is going).
            let opened = tokio::time::timeout(SILENT_FOR, async {
                let ch = conn.channel().await?;
                let queue = ch.private_queue().await?;
                let answers = ch.consume_unacked(&queue).await?;
                Ok::<_, QueueError>((ch, queue, answers))
            });
            let (ch, queue, mut answers) =
                opened.await.map_err(|_| QueueError::broker_fault("the broker did not answer"))??;
            let (began, mut heard_last, mut unanswered, mut heard_any) = (Instant::now(), since, 0, false);
            loop {
                if done().await {
                    return Ok(heard_any);
                }
                let (control, key) = (self.topology.control(), Topology::building_key(operation_id));
                let asked = ch.ask(&control, &key, operation_id.as_bytes(), &queue, token);
                tokio::time::timeout(ANSWERS, asked)
                    .await
                    .map_err(|_| QueueError::broker_fault("the broker did not take the question"))??;
                let until = tokio::time::Instant::now() + ANSWERS;
                let mut answered = None;
                while let Ok(Some(Ok(d))) = tokio::time::timeout_at(until, answers.next()).await {
                    if d.correlation_id() == Some(token) {
                        answered = Some(String::from_utf8_lossy(d.body()).to_string());
                    }
                }
                if let Some(worker) = answered {
                    if !heard_any {
                        tracing::info!(
                            "operation {operation_id}: worker {worker} still builds it; waiting for it to end"
                        );
                    }
                    (heard_any, heard_last, unanswered) = (true, Instant::now(), 0);
                } else {
                    unanswered += 1;
                }
                if unanswered >= UNANSWERED && heard_last.elapsed() >= SILENT_FOR {
                    return Ok(heard_any);
                }
                if began.elapsed() >= limit {
                    tracing::warn!("operation {operation_id}: another copy still runs after {limit:?}; going on");
                    return Ok(heard_any);
                }
                tokio::time::sleep(ASK_EVERY.saturating_sub(ANSWERS)).await;
            }
        }
        .await;
        conn.close_within("asked", Duration::from_secs(5)).await;
        waited
    }
}
