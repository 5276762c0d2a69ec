//! Automatic deployment (`apprunner-build watch`): the services file, and what a new head of a
//! followed branch means for its service. Pure; the watcher's I/O is the service crate's.

pub mod decision;
pub mod services;
pub mod webhook;

pub use decision::{Changes, LastDeployment, Verdict};
pub use services::{read as read_services, ServicesErrors, WatchedService};

#[cfg(test)]
mod tests;
