//! What a worker publishes besides log lines: a deployment's events, and the failed-jobs
//! entries `rebuild-failed` reads; each confirmed by the broker.

use super::Shared;
use crate::queue::error::QueueError;
use crate::queue::transport::{Outgoing, Topology};
use crate::queue::wire::job::{FailedJob, JobEvent};

pub(super) async fn publish_event(shared: &Shared, event: &JobEvent) -> Result<(), QueueError> {
    let payload = QueueError::json("the event", event)?;
    let key = Topology::event_key(&event.operation_id, event.status.key());
    let id = event.new_message_id();
    shared
        .publisher
        .publish(&Outgoing { message_id: Some(&id), ..Outgoing::new(&shared.cfg.topology.events(), &key, &payload) })
        .await
}

pub(super) async fn publish_failed(shared: &Shared, entry: &FailedJob) -> Result<(), QueueError> {
    let payload = QueueError::json("the failed entry", entry)?;
    let failed = shared.cfg.topology.failed();
    shared.publisher.publish(&Outgoing::new("", &failed, &payload)).await
}
