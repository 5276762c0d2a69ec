//! Confirmed publishing: a message the broker has taken, or an error saying it may not have;
//! the headers a job carries between attempts.

use super::{Brokers, Channel as Opened, Lane, Link, ATTEMPT_HEADER, BATCH_HEADER, BEHIND_COPY_HEADER, DUE_HEADER};
use crate::error::QueueError;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use std::time::Duration;
use tokio::sync::Mutex;

/// One message to publish.
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub payload: &'a [u8],
    pub message_id: Option<&'a str>,
    pub attempt: Option<u32>,
    /// For a waiting job: when it is due back (milliseconds since the epoch), and to which lane.
    pub due_ms: Option<u64>,
    pub lane: Lane,
    /// A waiting job that waits behind another copy of its operation.
    pub behind_copy: bool,
}

impl<'a> Outgoing<'a> {
    pub fn new(exchange: &'a str, routing_key: &'a str, payload: &'a [u8]) -> Self {
        Self {
            exchange,
            routing_key,
            payload,
            message_id: None,
            attempt: None,
            due_ms: None,
            lane: Lane::User,
            behind_copy: false,
        }
    }

    fn properties(&self) -> BasicProperties {
        let mut p = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_timestamp(u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0));
        if let Some(id) = self.message_id {
            p = p.with_message_id(id.into());
        }
        let mut h = FieldTable::default();
        if let Some(a) = self.attempt {
            h.insert(ATTEMPT_HEADER.into(), AMQPValue::LongLongInt(i64::from(a)));
        }
        if let Some(due) = self.due_ms {
            h.insert(DUE_HEADER.into(), AMQPValue::LongLongInt(i64::try_from(due).unwrap_or(i64::MAX)));
        }
        if self.lane == Lane::Batch {
            h.insert(BATCH_HEADER.into(), AMQPValue::Boolean(true));
        }
        if self.behind_copy {
            h.insert(BEHIND_COPY_HEADER.into(), AMQPValue::Boolean(true));
        }
        if h.inner().is_empty() {
            p
        } else {
            p.with_headers(h)
        }
    }
}

/// Tries of one confirmed publish: 0.4 + 0.8 + 1.6 + 3.2 + 5 s each after, about a minute.
const PUBLISH_TRIES: u32 = 15;

/// Longest wait for a message to be handed over, or for its confirm. A connection whose node
/// went may still say it is connected for a moment, and what is sent on it then may never
/// complete (a hang AMQP clients are known for); bounded so no publisher waits forever. (It
/// did not cure the broker-cluster test's follower that misses lines: that cause is open.)
pub const CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// Publishes with publisher confirms over a connection of its own, reconnecting when it is lost.
pub struct Publisher {
    brokers: Brokers,
    name: String,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    pub fn new(brokers: &Brokers, name: &str) -> Self {
        Self { brokers: brokers.clone(), name: name.to_string(), state: Mutex::new(None) }
    }

    /// A publisher that starts on `conn` and its channel `ch`, which its caller opened (a
    /// client's only ones: a channel more costs the broker as much as a publish), and connects
    /// anew as any publisher does if that one is lost.
    pub async fn on(brokers: &Brokers, name: &str, Link(conn): Link, Opened(ch): Opened) -> Result<Self, QueueError> {
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| QueueError::broker("opening a publishing channel", e))?;
        Ok(Self { brokers: brokers.clone(), name: name.to_string(), state: Mutex::new(Some((conn, ch))) })
    }

    /// The publishing channel (confirm mode), connected anew if the last one was lost.
    async fn channel(&self) -> Result<Channel, QueueError> {
        let mut state = self.state.lock().await;
        if let Some((conn, ch)) = state.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let Link(conn) = self.brokers.connect(&self.name).await?;
        // Bounded: a new connection to a node that is going may never answer its first steps.
        let opened = tokio::time::timeout(CONFIRM_WAIT, async {
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(ch)
        })
        .await;
        let Ok(opened) = opened else {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONFIRM_WAIT, conn.close(200, "channel unanswered".into())).await;
            });
            return Err(QueueError::broker_fault("the broker did not open a channel in time"));
        };
        let ch = opened?;
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }

    /// A new channel on the publishing connection, for a declaration that may be refused
    /// (a refusal closes its channel, which must not be the publishing one).
    pub async fn side_channel(&self) -> Result<Opened, QueueError> {
        self.channel().await?;
        let state = self.state.lock().await;
        match state.as_ref() {
            Some((conn, _)) => Ok(Opened(conn.create_channel().await?)),
            None => Err(QueueError::broker_fault("the publishing connection closed")),
        }
    }

    /// Publishes and waits for the broker to confirm, retrying over a new connection for up
    /// to about a minute; an error means the message may not have been taken. A minute,
    /// because a queue the message goes to may be between leaders after a node loss (an
    /// election takes seconds, longer on a loaded broker), and the broker refuses what it
    /// cannot store meanwhile.
    pub async fn publish(&self, msg: &Outgoing<'_>) -> Result<(), QueueError> {
        let mut last = QueueError::broker_fault("not tried");
        // Whether an earlier try may have been taken (handed over, no answer): the message may
        // then be on the wire twice, under one message id, and the log says so.
        let mut maybe_taken = false;
        for attempt in 0..PUBLISH_TRIES {
            if attempt > 0 {
                tracing::debug!("publish to {} {}: try {attempt} failed: {last}", msg.exchange, msg.routing_key);
                tokio::time::sleep(Duration::from_millis((200u64 << attempt.min(5)).min(5000))).await;
            }
            let ch = match self.channel().await {
                Ok(c) => c,
                Err(e) => {
                    last = e.within("cannot reach the broker");
                    continue;
                }
            };
            let Some(res) = confirmed(&ch, msg).await else {
                last =
                    QueueError::broker_fault(format!("the broker did not confirm within {}s", CONFIRM_WAIT.as_secs()));
                maybe_taken = true;
                self.forget().await;
                continue;
            };
            match res {
                // A message for a queue that no queue took (one whose node is down) is
                // returned, not lost quietly: it has not been sent.
                Ok(c) if c.is_ack() => match c.take_message() {
                    None => {
                        if maybe_taken {
                            tracing::warn!(
                                "published {} to {} {} again after a try the broker may have taken (no confirm came, or a queue refused it): it may be on the wire twice",
                                msg.message_id.unwrap_or("a message"),
                                msg.exchange,
                                msg.routing_key
                            );
                        }
                        return Ok(());
                    }
                    Some(_) => {
                        last = QueueError::broker_fault(format!("no queue took the message for {}", msg.routing_key));
                    }
                },
                Ok(_) => {
                    last = QueueError::broker_fault("the broker refused the message (nack)");
                    // Through an exchange it may go to several queues: those that took it keep it.
                    maybe_taken |= !msg.exchange.is_empty();
                }
                Err(e) => {
                    last = QueueError::broker("publishing failed", e);
                    maybe_taken = true;
                    self.forget().await;
                }
            }
        }
        Err(last)
    }

    /// Publishes without waiting; the returned future resolves with the broker's confirm.
    /// Log lines use this so a chatty build is not slowed to one round trip per line.
    /// The confirm may never come (see [`CONFIRM_WAIT`]): wait for it within a bound.
    pub async fn publish_pipelined(&self, msg: &Outgoing<'_>) -> Result<PendingConfirm, QueueError> {
        let ch = self.channel().await.map_err(|e| e.within("cannot reach the broker"))?;
        let Ok(sent) = tokio::time::timeout(CONFIRM_WAIT, send(&ch, msg)).await else {
            self.forget().await;
            return Err(QueueError::broker_fault(format!(
                "the broker did not take a message within {}s",
                CONFIRM_WAIT.as_secs()
            )));
        };
        sent.map(PendingConfirm).map_err(|e| QueueError::broker("publishing failed", e))
    }

    /// Drops the publishing connection after a publish on it failed or went unanswered; the
    /// next publish connects anew. It is closed in the background, within a bound: a node that
    /// is slow rather than gone would otherwise keep a stray connection alive by its heartbeats.
    async fn forget(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CONFIRM_WAIT, conn.close(200, "publish unanswered".into())).await;
            });
        }
    }

    pub async fn close(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            let _ = conn.close(200, "bye".into()).await;
        }
    }
}

/// A message handed to the broker whose confirm has not come yet (`Publisher::publish_pipelined`).
pub struct PendingConfirm(lapin::PublisherConfirm);

impl PendingConfirm {
    /// Waits for the confirm at most `limit`: Some(true) when the broker took the message,
    /// Some(false) when it refused it or the channel failed first, None when nothing came.
    pub async fn taken_within(&mut self, limit: Duration) -> Option<bool> {
        match tokio::time::timeout(limit, &mut self.0).await {
            Ok(Ok(confirmation)) => Some(confirmation.is_ack()),
            Ok(Err(_)) => Some(false),
            Err(_) => None,
        }
    }
}

/// How long a publish waits for its confirm while its connection still answers. A queue the
/// message goes to may be between leaders after a node loss (seconds, longer on a loaded
/// broker), and the broker confirms once it has one; publishing again meanwhile would put the
/// message on the wire twice.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(90);

/// Hands `msg` over on `ch` and waits for its confirm, for as long as the connection answers
/// (up to [`CONFIRM_PATIENCE`]); None when it was not handed over, or the connection stopped
/// answering before the confirm came (it never will: the caller publishes again elsewhere).
async fn confirmed(ch: &Channel, msg: &Outgoing<'_>) -> Option<lapin::Result<lapin::Confirmation>> {
    let confirm = match tokio::time::timeout(CONFIRM_WAIT, send(ch, msg)).await.ok()? {
        Ok(confirm) => confirm,
        Err(e) => return Some(Err(e)),
    };
    tokio::pin!(confirm);
    let began = std::time::Instant::now();
    loop {
        if let Ok(res) = tokio::time::timeout(CONFIRM_WAIT, &mut confirm).await {
            return Some(res);
        }
        if began.elapsed() >= CONFIRM_PATIENCE || !answers(ch).await {
            return None;
        }
        tracing::debug!("no confirm for {} yet; its connection answers, so it is waited for", msg.routing_key);
    }
}

/// Whether the broker answers on `ch`'s connection (a `basic.qos`, which changes nothing on a
/// publishing channel): a connection whose node went may not know it yet.
async fn answers(ch: &Channel) -> bool {
    let asked = ch.basic_qos(0, lapin::options::BasicQosOptions::default());
    matches!(tokio::time::timeout(Duration::from_secs(5), asked).await, Ok(Ok(())))
}

/// Publishes `msg` once on `ch` (put in confirm mode here), waiting for the broker's confirm
/// for at most [`CONFIRM_WAIT`]; an error if it was not taken. For a client's one message on
/// a channel of its own, where trying again is the caller's to decide.
pub async fn publish_confirmed_once(Opened(ch): &Opened, msg: &Outgoing<'_>) -> Result<(), QueueError> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirmed = tokio::time::timeout(CONFIRM_WAIT, async { send(ch, msg).await?.await }).await;
    match confirmed {
        Ok(Ok(c)) if c.is_ack() => match c.take_message() {
            None => Ok(()),
            Some(_) => Err(QueueError::broker_fault(format!("no queue took the message for {}", msg.routing_key))),
        },
        Ok(Ok(_)) => Err(QueueError::broker_fault("the broker refused the message (nack)")),
        Ok(Err(e)) => Err(QueueError::broker("publishing failed", e)),
        Err(_) => {
            Err(QueueError::broker_fault(format!("the broker did not confirm within {}s", CONFIRM_WAIT.as_secs())))
        }
    }
}

/// Hands `msg` to the broker on `ch`; the returned confirm resolves when the broker takes it.
async fn send(ch: &Channel, msg: &Outgoing<'_>) -> lapin::Result<lapin::PublisherConfirm> {
    // Straight to a queue (the default exchange): mandatory, so an unroutable message comes
    // back. Events and log lines may have no listener at all.
    let options = BasicPublishOptions { mandatory: msg.exchange.is_empty(), ..Default::default() };
    ch.basic_publish(msg.exchange.into(), msg.routing_key.into(), options, msg.payload, msg.properties()).await
}
