//! What the registry says about an operation: whether its image was built (the image carries
//! its operation id) and whether its success was reported (a marker tag). A redelivered job is
//! recognised from these, so it is neither built nor reported twice. And what it says about a
//! service: its current image and the job that made it (a record per service), which
//! `roll-out` reads.

use crate::core::digest::{sha256_digest, Digest};
use crate::core::image_ref::{ImageRef, Repo};
use crate::core::labels;
use crate::core::result::PriorBuild;
use crate::edge::image;
use crate::edge::registry::Registry;
use crate::edge::source::pack_file;
use crate::error::BuildError;
use crate::queue::error::QueueError;
use crate::queue::wire::checked::CheckedJob;
use crate::queue::wire::job::{now_rfc3339, BuildJob};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where markers say "this operation's success was published".
pub const REPORTED_REPOSITORY: &str = "apprunner-build/reported";
/// Where markers say "this operation's builder lost its lease and has published its whole log":
/// a redelivery that reports the build waits for it, so a follower hears every line first.
pub const LOGGED_REPOSITORY: &str = "apprunner-build/logged";
/// Where markers say "this operation was cancelled": a worker that takes its job ends it.
pub const CANCELLED_REPOSITORY: &str = "apprunner-build/cancelled";

/// An image at the target already built for this operation: its digest and labels.
pub struct Built {
    pub digest: Digest,
    pub labels: BTreeMap<String, String>,
}

pub struct Ledger<'r> {
    registry: &'r Registry,
    /// Registry host the markers live on.
    host: String,
}

impl<'r> Ledger<'r> {
    pub fn new(registry: &'r Registry, host: &str) -> Self {
        Self { registry, host: host.to_string() }
    }

    /// The repository of the services' records.
    fn records(&self) -> Repo {
        Repo::new(&self.host, SERVICES_REPOSITORY)
    }

    fn marker(&self, repository: &str, operation_id: &str) -> ImageRef {
        ImageRef {
            registry: self.host.clone(),
            repository: repository.into(),
            tag: Some(operation_id.chars().take(128).collect()),
            digest: None,
        }
    }

    async fn has_marker(&self, repository: &str, operation_id: &str) -> bool {
        matches!(image::existing(self.registry, &self.marker(repository, operation_id)).await, Ok(Some(_)))
    }

    /// Writes the marker; the same bytes for every operation: only the tag says which, and
    /// after the first marker its blobs are there already.
    async fn write_marker(&self, repository: &str, operation_id: &str) -> Result<(), BuildError> {
        let marker = self.marker(repository, operation_id);
        let layer = pack_file("marker", b"marker\n", 0o644)?;
        image::tag_content(self.registry, &marker.repo(), &layer, &marker.reference()).await?;
        Ok(())
    }

    /// The image at `target`, if it was built for `operation_id`.
    pub async fn built(&self, target: &ImageRef, operation_id: &str) -> Option<Built> {
        let (digest, labels) = image::existing(self.registry, target).await.ok()??;
        (labels.get(labels::OPERATION_ID).map(String::as_str) == Some(operation_id)).then_some(Built { digest, labels })
    }

    /// Whether the operation's success was reported already.
    pub async fn reported(&self, operation_id: &str) -> bool {
        self.has_marker(REPORTED_REPOSITORY, operation_id).await
    }

    /// Records that the operation's success was published. Best effort: without the marker a
    /// redelivery may report it once more (under the same event id, which followers drop).
    pub async fn mark_reported(&self, operation_id: &str) {
        let _ = self.write_marker(REPORTED_REPOSITORY, operation_id).await;
    }

    /// Whether the operation's builder, having lost its lease, published its whole log.
    pub async fn logged(&self, operation_id: &str) -> bool {
        self.has_marker(LOGGED_REPOSITORY, operation_id).await
    }

    /// Records that this builder (its lease lost) published its whole log. Best effort: without
    /// it the redelivery that reports the build waits its bound.
    pub async fn mark_logged(&self, operation_id: &str) {
        let _ = self.write_marker(LOGGED_REPOSITORY, operation_id).await;
    }

    /// Whether the operation was cancelled.
    pub async fn cancelled(&self, operation_id: &str) -> bool {
        self.has_marker(CANCELLED_REPOSITORY, operation_id).await
    }

    /// Records that the operation is cancelled, for the worker that takes its job next.
    pub async fn mark_cancelled(&self, operation_id: &str) -> Result<(), BuildError> {
        self.write_marker(CANCELLED_REPOSITORY, operation_id).await
    }

    /// Whether the service has a record.
    pub async fn has_record(&self, service: &str) -> bool {
        matches!(self.registry.manifest(&self.records(), &service_tag(service)).await, Ok(Some(_)))
    }

    /// Records `image` as the service's current image, made by `job` (kept without credentials
    /// and without its roll-out part, so a roll-out can rebuild it). `current` is the record
    /// read when the deployment took the service's lease (no other deployment of the service
    /// has written one since): a record of a deployment submitted later stays, for of a
    /// service's deployments the last submitted has the last word, whatever order they end in.
    pub async fn record_service(
        &self,
        job: &CheckedJob,
        image: &str,
        current: Option<&ServiceRecord>,
        build: Option<&PriorBuild>,
    ) -> Result<(), QueueError> {
        if let Some(ours) = job.submitted {
            if let Some(current) = current.filter(|c| c.job.submitted().is_some_and(|theirs| theirs > ours)) {
                tracing::info!(
                    "job {}: service {}'s record is of a later deployment ({}); it stays",
                    job.job_id,
                    job.service.name,
                    current.job.operation_id
                );
                return Ok(());
            }
        }
        let mut kept = job.without_credentials();
        kept.rollout = None;
        let record = ServiceRecord {
            service: job.service.name.clone(),
            image: image.to_string(),
            job: kept,
            at: now_rfc3339(),
            build: build.cloned(),
        };
        let json = serde_json::to_string(&record)
            .map_err(|e| QueueError::Encode { what: "the service record", detail: e.to_string() })?;
        let tag = service_tag(&record.service);
        // All in the manifest's annotations: one request to write, one to read.
        let annotations = BTreeMap::from([(RECORD_ANNOTATION.to_string(), json)]);
        image::tag_annotations(self.registry, &self.records(), &tag, RECORD_ARTIFACT, annotations)
            .await
            .map(drop)
            .map_err(|e| QueueError::record(format!("service record of {}", record.service), e))
    }

    /// The records of `only` these services (every service's when empty), read a few at a
    /// time; a record that cannot be read is named. A service without a record is left out.
    pub async fn services(&self, only: &[String]) -> Result<Vec<Result<ServiceRecord, QueueError>>, BuildError> {
        use futures_util::stream::{self, StreamExt};
        let all = self.registry.tags(&self.records()).await?;
        let tags: Vec<String> = if only.is_empty() {
            all
        } else {
            only.iter().map(|s| service_tag(s)).filter(|t| all.contains(t)).collect()
        };
        let read = |tag: String| async move {
            self.read_record(&tag)
                .await?
                .ok_or_else(|| QueueError::Record { what: format!("service record {tag}: not a record"), cause: None })
        };
        Ok(stream::iter(tags).map(read).buffered(16).collect().await)
    }

    /// The service's record, if it has a readable one.
    pub async fn record(&self, service: &str) -> Option<ServiceRecord> {
        self.read_record(&service_tag(service)).await.ok().flatten()
    }

    /// The record at `tag`, if there is one: in its manifest's annotations, or, as workers
    /// before those wrote it, in the file of its one layer.
    async fn read_record(&self, tag: &str) -> Result<Option<ServiceRecord>, QueueError> {
        let what = || format!("service record {tag}");
        let unreadable = |e: Box<dyn std::error::Error + Send + Sync>| QueueError::record(what(), e);
        let records = self.records();
        let Some(manifest) = self.registry.manifest(&records, tag).await.map_err(|e| unreadable(e.into()))? else {
            return Ok(None);
        };
        let manifest = manifest.image().map_err(|e| unreadable(e.into()))?;
        let bytes = match manifest.annotations.as_ref().and_then(|a| a.get(RECORD_ANNOTATION)) {
            Some(json) if json.len() as u64 <= MAX_RECORD_BYTES => Some(json.as_bytes().to_vec()),
            Some(_) => return Err(unreadable(format!("larger than {MAX_RECORD_BYTES} bytes").into())),
            None => match manifest.layers.first() {
                Some(layer) => {
                    let gzip = self.registry.blob(&records, &layer.digest).await.map_err(|e| unreadable(e.into()))?;
                    crate::edge::source::unpack_file(&gzip, MAX_RECORD_BYTES)
                }
                None => None,
            },
        };
        bytes.map(|b| serde_json::from_slice::<ServiceRecord>(&b).map_err(|e| unreadable(e.into()))).transpose()
    }
}

/// Where each service's record lives: one tag per service.
pub const SERVICES_REPOSITORY: &str = "apprunner-build/services";
/// The annotation of a record's manifest that holds the record (JSON).
const RECORD_ANNOTATION: &str = "dev.apprunner-build.service-record";
/// What a record's manifest is, as an OCI artifact.
const RECORD_ARTIFACT: &str = "application/vnd.apprunner-build.service-record.v1+json";
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// A service's current image and the job that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub service: String,
    /// `registry/repository@sha256:…`
    pub image: String,
    pub job: BuildJob,
    /// RFC 3339
    pub at: String,
    /// What the build that made `image` took in and reported, by which a deployment of the same
    /// inputs takes `image` before fetching anything; absent in records of a rebase, of an older
    /// worker, or of a build whose inputs could not all be named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<PriorBuild>,
}

/// The service's name when it is a valid tag, else a digest of it.
fn service_tag(name: &str) -> String {
    let valid = name.len() <= 128
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if valid {
        name.to_string()
    } else {
        sha256_digest(name.as_bytes()).replace(':', "-")[..47].to_string()
    }
}
