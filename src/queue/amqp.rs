//! `RabbitMQ`: the topology every worker declares at start, and a publisher that waits for the
//! broker's confirm and reconnects when the connection is lost.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use std::time::Duration;
use tokio::sync::Mutex;

/// The names of everything the worker uses, under one prefix (default `apprunner-build`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub prefix: String,
}

/// A job delivered this many times without an ack (a worker dying on it each time) is
/// dead-lettered to the failed-jobs queue instead of looping.
pub const DELIVERY_LIMIT: i64 = 5;
pub const ATTEMPT_HEADER: &str = "x-apprunner-attempt";
/// How many times a quorum queue delivered a message before, without an ack.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

impl Topology {
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string() }
    }
    /// Durable quorum queue of build jobs.
    pub fn jobs(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    /// Durable quorum queue of failed jobs, each with its reason.
    pub fn failed(&self) -> String {
        format!("{}.failed", self.prefix)
    }
    /// Topic exchange of job status changes; routing key `<operation-id>.<STATUS>`.
    pub fn events(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// Topic exchange of deployment log lines; routing key `deployment.<operation-id>`.
    pub fn logs(&self) -> String {
        format!("{}.logs", self.prefix)
    }
    /// A holding queue whose messages return to the jobs queue after `delay`.
    /// The exclusive queue whose existence says an operation is being built: its lease.
    pub fn lease(&self, operation_id: &str) -> String {
        format!("{}.lease.{operation_id}", self.prefix)
    }
    pub fn retry(&self, delay: Duration) -> String {
        format!("{}.retry.{}ms", self.prefix, delay.as_millis())
    }

    pub fn event_key(operation_id: &str, status: &str) -> String {
        format!("{operation_id}.{status}")
    }
    pub fn log_key(operation_id: &str) -> String {
        format!("deployment.{operation_id}")
    }

    fn quorum() -> FieldTable {
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        args
    }

    /// Declares exchanges and queues; idempotent, so every worker does it at start.
    pub async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(self.events().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        ch.exchange_declare(self.logs().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
        let q = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(self.failed().into(), q, Self::quorum()).await?;
        let mut jobs = Self::quorum();
        jobs.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(DELIVERY_LIMIT));
        jobs.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        jobs.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(self.failed().into()));
        ch.queue_declare(self.jobs().into(), q, jobs).await?;
        Ok(())
    }

    pub async fn declare_retry(&self, ch: &Channel, delay: Duration) -> lapin::Result<String> {
        let name = self.retry(delay);
        let mut args = FieldTable::default();
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
        args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(self.jobs().into()));
        ch.queue_declare(name.clone().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args)
            .await?;
        Ok(name)
    }

    /// A private queue that sees one operation's log lines and status events, in publish order.
    pub async fn follow(&self, ch: &Channel, operation_id: &str) -> lapin::Result<String> {
        let name = private_queue(ch).await?;
        ch.queue_bind(
            name.clone().into(),
            self.logs().into(),
            Self::log_key(operation_id).into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_bind(
            name.clone().into(),
            self.events().into(),
            format!("{operation_id}.*").into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        Ok(name)
    }
}

/// A queue of this channel's connection alone, named by the broker, gone with the connection.
pub async fn private_queue(ch: &Channel) -> lapin::Result<String> {
    let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    Ok(ch.queue_declare("".into(), options, FieldTable::default()).await?.name().to_string())
}

pub async fn connect(uri: &str, name: &str) -> lapin::Result<Connection> {
    Connection::connect(uri, ConnectionProperties::default().with_connection_name(LongString::from(name.to_string())))
        .await
}

pub fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(key))? {
        AMQPValue::LongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongLongInt(v) => u32::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(*v),
        AMQPValue::ShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u32::from(*v)),
        AMQPValue::ShortShortInt(v) => u32::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u32::from(*v)),
        _ => None,
    }
}

/// One message to publish.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub payload: &'a [u8],
    pub message_id: Option<&'a str>,
    pub attempt: Option<u32>,
    pub expiration_ms: Option<u64>,
}

impl<'a> Outgoing<'a> {
    pub fn new(exchange: &'a str, routing_key: &'a str, payload: &'a [u8]) -> Self {
        Self { exchange, routing_key, payload, message_id: None, attempt: None, expiration_ms: None }
    }

    fn properties(&self) -> BasicProperties {
        let mut p = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0));
        if let Some(id) = self.message_id {
            p = p.with_message_id(id.into());
        }
        if let Some(a) = self.attempt {
            let mut h = FieldTable::default();
            h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(i64::from(a)));
            p = p.with_headers(h);
        }
        if let Some(ms) = self.expiration_ms {
            p = p.with_expiration(ms.to_string().into());
        }
        p
    }
}

/// Publishes with publisher confirms over a connection of its own, reconnecting when it is lost.
pub struct Publisher {
    uri: String,
    name: String,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(uri: &str, name: &str) -> Self {
        Self { uri: uri.to_string(), name: name.to_string(), state: Mutex::new(None) }
    }

    /// The publishing channel (confirm mode), connected anew if the last one was lost.
    pub async fn channel(&self) -> lapin::Result<Channel> {
        let mut state = self.state.lock().await;
        if let Some((conn, ch)) = state.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = connect(&self.uri, &self.name).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }

    /// Publishes and waits for the broker to confirm, retrying over a new connection a few
    /// times; an error means the message may not have been taken.
    pub async fn publish(&self, msg: &Outgoing<'_>) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let ch = match self.channel().await {
                Ok(c) => c,
                Err(e) => {
                    last = format!("cannot reach the broker: {e}");
                    continue;
                }
            };
            let res = async { send(&ch, msg).await?.await }.await;
            match res {
                Ok(c) if c.is_ack() => return Ok(()),
                Ok(_) => last = "the broker refused the message (nack)".into(),
                Err(e) => {
                    last = format!("publishing failed: {e}");
                    self.state.lock().await.take();
                }
            }
        }
        Err(last)
    }

    /// Publishes without waiting; the returned future resolves with the broker's confirm.
    /// Log lines use this so a chatty build is not slowed to one round trip per line.
    pub async fn publish_pipelined(&self, msg: &Outgoing<'_>) -> Result<lapin::PublisherConfirm, String> {
        let ch = self.channel().await.map_err(|e| format!("cannot reach the broker: {e}"))?;
        send(&ch, msg).await.map_err(|e| format!("publishing failed: {e}"))
    }

    pub async fn close(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            let _ = conn.close(200, "bye".into()).await;
        }
    }
}

/// Hands `msg` to the broker on `ch`; the returned confirm resolves when the broker takes it.
async fn send(ch: &Channel, msg: &Outgoing<'_>) -> lapin::Result<lapin::PublisherConfirm> {
    ch.basic_publish(
        msg.exchange.into(),
        msg.routing_key.into(),
        BasicPublishOptions::default(),
        msg.payload,
        msg.properties(),
    )
    .await
}
