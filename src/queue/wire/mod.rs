//! What crosses the broker: a build job, the events that report it, a failed job's entry. Plain
//! serde data that depends on nothing else in the queue.

pub mod event;
pub mod job;
