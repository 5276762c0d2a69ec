//! What crosses the broker: a build job (and the job once checked), the events that report it,
//! a failed job's entry. Plain serde data that depends on nothing else in the queue.

pub mod checked;
pub mod event;
pub mod job;
