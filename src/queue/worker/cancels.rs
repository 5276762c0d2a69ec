//! Cancel requests reaching a worker: a listener on the control exchange (`cancel.*`) tells the
//! deployment it names, if this worker runs it. A request that comes while no build of the
//! operation runs here is the registry marker's to carry (`Ledger::cancelled`), which every
//! worker reads before it builds.

use crate::queue::transport::{self, Brokers, Topology};
use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// The deployments this worker runs, each with a way to tell it it was cancelled.
#[derive(Default)]
pub struct Cancels {
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
}

/// A running deployment's end of a cancel request; unregisters when dropped.
pub struct Cancellation {
    cancels: Arc<Cancels>,
    operation_id: String,
    rx: watch::Receiver<bool>,
}

impl Cancellation {
    /// Resolves when the deployment is cancelled (never, if it is not).
    pub async fn requested(&mut self) {
        if self.rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Cancellation {
    fn drop(&mut self) {
        self.cancels.running.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.operation_id);
    }
}

impl Cancels {
    /// Registers a running deployment of `operation_id`.
    pub fn register(self: &Arc<Self>, operation_id: &str) -> Cancellation {
        let (tx, rx) = watch::channel(false);
        self.running.lock().unwrap_or_else(PoisonError::into_inner).insert(operation_id.to_string(), tx);
        Cancellation { cancels: self.clone(), operation_id: operation_id.to_string(), rx }
    }

    fn cancel(&self, operation_id: &str) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.get(operation_id).is_some_and(|tx| tx.send(true).is_ok())
    }

    /// Hears cancel requests until the process ends, reconnecting whenever the broker goes.
    pub async fn listen(self: Arc<Self>, brokers: Brokers, topology: Topology, name: String) {
        loop {
            if let Err(e) = self.listen_once(&brokers, &topology, &name).await {
                tracing::warn!("cancel requests: {e}; listening again in 1s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn listen_once(&self, brokers: &Brokers, topology: &Topology, name: &str) -> lapin::Result<()> {
        let conn = brokers.connect(name).await?;
        let ch = conn.create_channel().await?;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(topology.control().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        let queue = transport::private_queue(&ch).await?;
        let key = Topology::cancel_key("*");
        ch.queue_bind(
            queue.as_str().into(),
            topology.control().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let mut consumer = ch.basic_consume(queue.into(), "".into(), no_ack, FieldTable::default()).await?;
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery?;
            let operation_id = String::from_utf8_lossy(&delivery.data).to_string();
            if self.cancel(&operation_id) {
                tracing::info!("operation {operation_id}: cancelled; stopping its build");
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.close(200, "listening again".into())).await;
        Ok(())
    }
}
