//! The build queue on `RabbitMQ`, by responsibility:
//! - `transport`: connections to a cluster's nodes, the topology, channels, consumers and
//!   messages, confirmed publishing, and the leases that keep one build per operation. The AMQP
//!   client is named nowhere else: the rest of this crate and its users speak in its types.
//! - `wire`: the messages (job, events, failed entry), the job checked once into `CheckedJob`;
//! - `history`: the broker's record of every deployment, and the service lines read from it;
//! - `client` and `subscription`: submitting, and the one way to hear events and log lines;
//! - `error`: what goes wrong on the queue's side, sorted into the build's three classes.

pub mod client;
pub mod error;
pub mod history;
pub mod subscription;
pub mod transport;
pub mod wire;

/// The pure core, under the name the moved modules use for it.
use apprunner_core as core;
