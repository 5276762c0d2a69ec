//! The AMQP client behind the queue's own small types: a `Link` (a connection to one node), its
//! `Channel`s, an `Inbox` (a consumer) and the `Message`s it yields. Only the few things the
//! queue does are here, each under the name of what it is for; what the client returns comes
//! back as a `QueueError::Broker` that keeps it as its source.

use crate::error::QueueError;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, ExchangeKind};
use std::time::Duration;

/// A connection to one node of the broker (`Brokers::connect`).
pub struct Link(pub(super) lapin::Connection);

impl Link {
    /// A new channel on this connection.
    pub async fn channel(&self) -> Result<Channel, QueueError> {
        Ok(Channel(self.0.create_channel().await?))
    }

    /// Whether the connection is still up, as far as this side knows.
    pub fn is_open(&self) -> bool {
        self.0.status().connected()
    }

    /// Closes the connection and waits for the broker's answer.
    pub async fn close(&self, why: &str) {
        let _ = self.0.close(200, why.into()).await;
    }

    /// Closes the connection, waiting for the broker's answer at most `limit`.
    pub async fn close_within(&self, why: &str, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.0.close(200, why.into())).await;
    }
}

/// A channel of a `Link`. A refusal by the broker (a queue that is not there, a declaration
/// whose arguments differ) closes the channel it came on. Clones share it.
#[derive(Clone)]
pub struct Channel(pub(super) lapin::Channel);

/// Where a consumer of a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOffset {
    /// The oldest message the stream keeps.
    First,
    /// The message at this offset (the next after the last one read).
    At(u64),
    /// The first chunk written at or after this time (the broker's clock, seconds since the epoch).
    Time(u64),
}

/// What a passive look at a queue finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueState {
    /// Messages ready to be delivered (not those delivered and unacked).
    pub ready: u32,
    pub consumers: u32,
}

impl Channel {
    /// At most `count` messages delivered and unacked at once on this channel.
    pub async fn prefetch(&self, count: u16) -> Result<(), QueueError> {
        Ok(self.0.basic_qos(count, BasicQosOptions::default()).await?)
    }

    /// Consumes `queue` under the consumer tag `tag` (empty: the broker names it); each message
    /// must be acked, or it comes again.
    pub async fn consume(&self, queue: &str, tag: &str) -> Result<Inbox, QueueError> {
        let options = BasicConsumeOptions::default();
        Ok(Inbox(self.0.basic_consume(queue.into(), tag.into(), options, FieldTable::default()).await?))
    }

    /// Consumes the stream `stream` from `from`. Its messages stay in the stream; an ack only
    /// makes room for the next ones within the prefetch.
    pub async fn consume_stream(&self, stream: &str, from: StreamOffset) -> Result<Inbox, QueueError> {
        let mut args = FieldTable::default();
        let offset = match from {
            StreamOffset::First => AMQPValue::LongString("first".into()),
            StreamOffset::At(n) => AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)),
            StreamOffset::Time(t) => AMQPValue::Timestamp(t),
        };
        args.insert("x-stream-offset".into(), offset);
        Ok(Inbox(self.0.basic_consume(stream.into(), "".into(), BasicConsumeOptions::default(), args).await?))
    }

    /// Consumes `queue` with no acks: what is delivered is gone from it (answers, requests).
    pub async fn consume_unacked(&self, queue: &str) -> Result<Inbox, QueueError> {
        let options = BasicConsumeOptions { no_ack: true, ..Default::default() };
        Ok(Inbox(self.0.basic_consume(queue.into(), "".into(), options, FieldTable::default()).await?))
    }

    /// Ends the consumer `tag`: nothing more is delivered to it.
    pub async fn cancel(&self, tag: &str) -> Result<(), QueueError> {
        Ok(self.0.basic_cancel(tag.into(), BasicCancelOptions::default()).await?)
    }

    /// Takes one message of `queue`, if it has one ready; it must be acked.
    pub async fn get(&self, queue: &str) -> Result<Option<Message>, QueueError> {
        Ok(self.0.basic_get(queue.into(), BasicGetOptions::default()).await?.map(|m| Message(m.delivery)))
    }

    /// Looks at `queue` without declaring it (a passive declaration). A queue that is not
    /// there closes the channel.
    pub async fn look(&self, queue: &str) -> Result<QueueState, QueueError> {
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let q = self.0.queue_declare(queue.into(), passive, FieldTable::default()).await?;
        Ok(QueueState { ready: q.message_count(), consumers: q.consumer_count() })
    }

    /// A queue of this channel's connection alone, named by the broker, gone with the connection.
    pub async fn private_queue(&self) -> Result<String, QueueError> {
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        Ok(self.0.queue_declare("".into(), options, FieldTable::default()).await?.name().to_string())
    }

    /// Declares the durable topic exchange `name` (idempotent).
    pub async fn declare_topic(&self, name: &str) -> Result<(), QueueError> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        Ok(self.0.exchange_declare(name.into(), ExchangeKind::Topic, durable, FieldTable::default()).await?)
    }

    /// Binds `queue` to `exchange` for the routing keys `key` matches.
    pub async fn bind(&self, queue: &str, exchange: &str, key: &str) -> Result<(), QueueError> {
        let (options, args) = (QueueBindOptions::default(), FieldTable::default());
        Ok(self.0.queue_bind(queue.into(), exchange.into(), key.into(), options, args).await?)
    }

    /// Deletes `queue` and what it holds.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), QueueError> {
        self.0.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
        Ok(())
    }

    /// Sends `body` to `exchange` under `key`, asking for answers in `reply_to`, marked
    /// `correlation_id` (which the answers carry back). No confirm: a question, not a record.
    pub async fn ask(
        &self,
        exchange: &str,
        key: &str,
        body: &[u8],
        reply_to: &str,
        correlation_id: &str,
    ) -> Result<(), QueueError> {
        let props =
            BasicProperties::default().with_reply_to(reply_to.into()).with_correlation_id(correlation_id.into());
        self.0.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), body, props).await?;
        Ok(())
    }

    /// Answers a question (`ask`): `body` to the queue it named, with its correlation id.
    pub async fn answer(&self, question: &Message, body: &[u8]) -> Result<(), QueueError> {
        let (Some(to), Some(id)) = (question.reply_to(), question.correlation_id()) else { return Ok(()) };
        let props = BasicProperties::default().with_correlation_id(id.into());
        self.0.basic_publish("".into(), to.into(), BasicPublishOptions::default(), body, props).await?;
        Ok(())
    }

    /// Whether this channel is still open, as far as this side knows.
    pub fn is_open(&self) -> bool {
        self.0.status().connected()
    }

    /// Closes this channel (its connection stays).
    pub async fn close(&self, why: &str) {
        let _ = self.0.close(200, why.into()).await;
    }
}

/// The messages a consumer is delivered, in order.
pub struct Inbox(lapin::Consumer);

impl Inbox {
    /// The next message; None when the consumer ended (cancelled, or its channel closed).
    pub async fn next(&mut self) -> Option<Result<Message, QueueError>> {
        Some(self.0.next().await?.map(Message).map_err(QueueError::from))
    }
}

/// One delivered message: its body, what the broker and its publisher said of it, and its ack.
pub struct Message(lapin::message::Delivery);

impl Message {
    pub fn body(&self) -> &[u8] {
        &self.0.data
    }
    pub fn exchange(&self) -> &str {
        self.0.exchange.as_str()
    }
    pub fn routing_key(&self) -> &str {
        self.0.routing_key.as_str()
    }
    /// Whether the broker delivered it before (to a consumer whose channel closed unacked).
    pub fn redelivered(&self) -> bool {
        self.0.redelivered
    }
    /// When it was published (seconds since the epoch), as its publisher said.
    pub fn timestamp(&self) -> Option<u64> {
        *self.0.properties.timestamp()
    }
    pub fn message_id(&self) -> Option<&str> {
        self.0.properties.message_id().as_ref().map(ShortString::as_str)
    }
    pub fn correlation_id(&self) -> Option<&str> {
        self.0.properties.correlation_id().as_ref().map(ShortString::as_str)
    }
    pub fn reply_to(&self) -> Option<&str> {
        self.0.properties.reply_to().as_ref().map(ShortString::as_str)
    }

    /// The header `key` as a whole number, if it carries one.
    pub fn header_u64(&self, key: &str) -> Option<u64> {
        let headers = self.0.properties.headers().as_ref()?;
        match headers.inner().get(&ShortString::from(key))? {
            AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
            AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
            AMQPValue::LongUInt(v) => Some(u64::from(*v)),
            AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
            AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
            AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
            AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
            _ => None,
        }
    }

    pub fn header_u32(&self, key: &str) -> Option<u32> {
        self.header_u64(key).and_then(|v| u32::try_from(v).ok())
    }

    /// Whether the message carries the header `key` (a flag).
    pub fn has_header(&self, key: &str) -> bool {
        self.0.properties.headers().as_ref().is_some_and(|h| h.inner().contains_key(key))
    }

    /// Done with: the queue lets it go.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.0.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Not done with: the queue delivers it again (to this consumer or another).
    pub async fn requeue(&self) -> Result<(), QueueError> {
        self.0.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;
        Ok(())
    }
}
