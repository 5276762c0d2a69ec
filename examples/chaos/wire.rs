//! What the broker carried, as the soak's checker sees it: a raw consumer of the events and logs
//! exchanges (a queue of its own on the node no fault touches, no acks, nothing dropped as a
//! repeat), and the registry read over plain HTTP. It shares no code with the worker's reporting:
//! events are read as JSON values, not as the project's types.

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One event as it arrived.
#[derive(Debug, Clone)]
pub struct Event {
    pub status: String,
    pub worker: Option<String>,
    pub image: Option<String>,
    pub error: Option<String>,
}

/// Everything heard so far, per operation.
#[derive(Debug, Default)]
pub struct Heard {
    pub events: HashMap<String, Vec<Event>>,
    /// Messages of log lines: (message id, the lines as a follower prints them without time).
    pub logs: HashMap<String, Vec<(String, Vec<String>)>>,
    /// The consumer's stream ended (its connection went): what was heard may be incomplete.
    pub consumer_ended: bool,
}

impl Heard {
    pub fn terminal(&self, op: &str) -> Vec<&Event> {
        let ended = ["SUCCEEDED", "FAILED", "CANCELLED"];
        self.events
            .get(op)
            .map(|e| e.iter().filter(|e| ended.contains(&e.status.as_str())).collect())
            .unwrap_or_default()
    }

    /// Operations with a build in progress now, and the worker building each.
    pub fn in_progress(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|(op, _)| self.terminal(op).is_empty())
            .filter_map(|(op, events)| {
                let last = events.iter().rev().find(|e| e.status == "IN_PROGRESS")?;
                Some((op.clone(), last.worker.clone()?))
            })
            .collect()
    }

    /// The lines published for `op`, one list per build (`published::by_build`).
    pub fn published(&self, op: &str) -> Vec<Vec<String>> {
        super::published::by_build(self.logs.get(op).map(Vec::as_slice).unwrap_or_default())
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// Starts hearing `prefix`'s events and log lines on `uri`; returns what it hears, shared.
pub async fn listen(uri: &str, prefix: &str) -> anyhow::Result<Arc<Mutex<Heard>>> {
    let conn = lapin::Connection::connect(uri, lapin::ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    let q = ch.queue_declare("".into(), exclusive, FieldTable::default()).await?.name().to_string();
    let durable = lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() };
    for (exchange, key) in [(format!("{prefix}.events"), "#"), (format!("{prefix}.logs"), "deployment.#")] {
        ch.exchange_declare(exchange.as_str().into(), lapin::ExchangeKind::Topic, durable, FieldTable::default())
            .await?;
        ch.queue_bind(
            q.as_str().into(),
            exchange.as_str().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer = ch.basic_consume(q.as_str().into(), "".into(), no_ack, FieldTable::default()).await?;
    let heard = Arc::new(Mutex::new(Heard::default()));
    let into = heard.clone();
    let events_exchange = format!("{prefix}.events");
    tokio::spawn(async move {
        let _conn = conn;
        while let Some(Ok(d)) = consumer.next().await {
            let id = d.properties.message_id().as_ref().map(ToString::to_string).unwrap_or_default();
            let mut heard = into.lock().unwrap_or_else(PoisonError::into_inner);
            if d.exchange.as_str() == events_exchange {
                let Ok(v) = serde_json::from_slice::<Value>(&d.data) else { continue };
                let Some(operation) = text(&v, "operation_id") else { continue };
                let event = Event {
                    status: text(&v, "status").unwrap_or_default(),
                    worker: text(&v, "worker"),
                    image: text(&v, "image"),
                    error: v.get("error").and_then(|e| text(e, "message")),
                };
                heard.events.entry(operation).or_default().push(event);
            } else {
                let Ok(Value::Array(lines)) = serde_json::from_slice::<Value>(&d.data) else { continue };
                let op = d.routing_key.as_str().trim_start_matches("deployment.").to_string();
                let shown = lines
                    .iter()
                    .map(|l| {
                        format!("[{}] {}", text(l, "source").unwrap_or_default(), text(l, "text").unwrap_or_default())
                    })
                    .collect();
                heard.logs.entry(op).or_default().push((id, shown));
            }
        }
        into.lock().unwrap_or_else(PoisonError::into_inner).consumer_ended = true;
    });
    Ok(heard)
}

/// The registry over HTTP: a manifest's digest at a tag, and an image's labels.
pub struct Registry {
    http: reqwest::Client,
    base: String,
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

impl Registry {
    pub fn new(host: &str) -> Self {
        Self { http: reqwest::Client::new(), base: format!("http://{host}/v2") }
    }

    async fn get(&self, repo: &str, reference: &str) -> anyhow::Result<Option<(String, Value)>> {
        let resp = self
            .http
            .get(format!("{}/{repo}/manifests/{reference}", self.base))
            .header("Accept", ACCEPT)
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = resp.error_for_status()?;
        let digest =
            resp.headers().get("Docker-Content-Digest").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        Ok(Some((digest, resp.json().await?)))
    }

    /// The digest of the manifest at `repo:tag`, and what names the image: the index's (or
    /// manifest's) annotations over its image config's labels (a deployment's own, such as its
    /// operation id, are annotations: the image config is the same for every build of the same
    /// inputs).
    pub async fn image(&self, repo: &str, tag: &str) -> anyhow::Result<Option<(String, HashMap<String, String>)>> {
        let Some((digest, manifest)) = self.get(repo, tag).await? else { return Ok(None) };
        let strings = |v: Option<&Value>| -> HashMap<String, String> {
            v.and_then(Value::as_object)
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default()
        };
        let mut image = manifest.clone();
        if let Some(list) = manifest.get("manifests").and_then(Value::as_array) {
            let first = list
                .iter()
                .find(|m| m.pointer("/platform/os").and_then(Value::as_str) != Some("unknown"))
                .and_then(|m| text(m, "digest"))
                .ok_or_else(|| anyhow::anyhow!("an index without an image"))?;
            image = self.get(repo, &first).await?.ok_or_else(|| anyhow::anyhow!("{first} missing"))?.1;
        }
        let config =
            image.pointer("/config/digest").and_then(Value::as_str).ok_or_else(|| anyhow::anyhow!("no config"))?;
        let config: Value = self
            .http
            .get(format!("{}/{repo}/blobs/{config}", self.base))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut labels = strings(config.pointer("/config/Labels"));
        labels.extend(strings(image.get("annotations")));
        labels.extend(strings(manifest.get("annotations")));
        Ok(Some((digest, labels)))
    }
}
