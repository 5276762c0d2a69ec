//! The queue, by responsibility:
//! - `transport`: `RabbitMQ` connections and topology, confirmed publishing, and the lease
//!   that keeps one build per operation;
//! - `wire`: the messages (job, events, failed entry);
//! - `worker`: the job handler, with its pure decisions in `outcome`;
//! - `rollout`: moving a fleet to a runtime's new version, with `ledger`, the registry's
//!   record of what was built and reported and of each service's image;
//! - `client` and `subscription`: submitting, and the one way to hear events and log lines;
//! - `metrics`.

pub mod cancel;
pub mod client;
pub mod error;
pub mod history;
pub mod ledger;
pub mod metrics;
pub mod outcome;
pub mod rollout;
pub mod subscription;
pub mod transport;
pub mod wire;
pub mod worker;
