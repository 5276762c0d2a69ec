//! The pure core: configuration, catalog, platform rules, the plan, and the data that crosses
//! the seams (request, result, log lines, progress). No I/O, no clock.

pub mod caches;
pub mod catalog;
pub mod config;
pub mod digest;
pub mod image_ref;
pub mod labels;
pub mod log;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod rebase;
pub mod request;
pub mod reuse;
pub mod shown;
pub mod warm;
pub mod yaml;
