//! What the registry says about an operation: whether its image was built (the image carries
//! its operation id) and whether its success was reported (a marker tag). A redelivered job is
//! recognised from these, so it is neither built nor reported twice.

use crate::core::image_ref::ImageRef;
use crate::core::labels;
use crate::edge::image;
use crate::edge::registry::Registry;
use crate::edge::source::pack_file;
use std::collections::BTreeMap;

/// Where markers say "this operation's success was published".
pub const REPORTED_REPOSITORY: &str = "apprunner-build/reported";

/// An image at the target already built for this operation: its digest and labels.
pub struct Built {
    pub digest: String,
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

    fn marker(&self, operation_id: &str) -> ImageRef {
        ImageRef {
            registry: self.host.clone(),
            repository: REPORTED_REPOSITORY.into(),
            tag: Some(operation_id.chars().take(128).collect()),
            digest: None,
        }
    }

    /// The image at `target`, if it was built for `operation_id`.
    pub async fn built(&self, target: &ImageRef, operation_id: &str) -> Option<Built> {
        let (digest, labels) = image::existing(self.registry, target).await.ok()??;
        (labels.get(labels::OPERATION_ID).map(String::as_str) == Some(operation_id)).then_some(Built { digest, labels })
    }

    /// Whether the operation's success was reported already.
    pub async fn reported(&self, operation_id: &str) -> bool {
        matches!(image::existing(self.registry, &self.marker(operation_id)).await, Ok(Some(_)))
    }

    /// Records that the operation's success was published. Best effort: without the marker a
    /// redelivery reports the success once more, which is the lesser harm.
    pub async fn mark_reported(&self, operation_id: &str, job_id: &str) {
        let marker = self.marker(operation_id);
        let Ok(layer) = pack_file("job", job_id.as_bytes(), 0o644) else { return };
        let Ok(content) = image::push_content(self.registry, &marker.registry, &marker.repository, &layer).await else {
            return;
        };
        let digest = content.pinned.rsplit('@').next().unwrap_or_default().to_string();
        if let Ok(Some(m)) = self.registry.manifest(&marker.registry, &marker.repository, &digest).await {
            let _ = self
                .registry
                .put_manifest(&marker.registry, &marker.repository, &marker.reference(), &m.bytes, &m.media_type)
                .await;
        }
    }
}
