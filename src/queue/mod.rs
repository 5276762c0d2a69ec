//! The queue, by responsibility:
//! - the crate `apprunner-queue` (crates/apprunner-queue), re-exported here: `transport`
//!   (the broker, with the AMQP client behind it), `wire` (the messages), `history`, `client`
//!   and `subscription`, `error`;
//! - `worker`: the job handler, with its pure decisions in `outcome`;
//! - `rollout`: moving a fleet to a runtime's new version, with `ledger`, the registry's
//!   record of what was built and reported and of each service's image;
//! - `cancel`, and `metrics`.

pub use apprunner_queue::{client, error, history, subscription, transport, wire};

pub mod cancel;
pub mod ledger;
pub mod metrics;
pub mod outcome;
pub mod rollout;
pub mod worker;
