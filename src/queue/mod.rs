//! The queue: the message formats (`job`), `RabbitMQ` topology and confirmed publishing (`amqp`),
//! the worker loop (`worker`) with its pure decisions (`outcome`) and the registry's record of
//! what was built and reported and of each service's image (`ledger`), the clients (`client`),
//! a runtime roll-out (`rollout`: the survey of the recorded services and its pure decision per
//! service), the one way to hear events
//! and log lines (`subscription`), and the metrics.

pub mod amqp;
pub mod client;
pub mod error;
pub mod event;
pub mod job;
pub mod lease;
pub mod ledger;
pub mod metrics;
pub mod outcome;
pub mod rollout;
pub mod subscription;
pub mod worker;
