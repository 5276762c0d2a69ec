//! apprunner-build: builds web applications from source the way AWS App Runner builds a
//! code-based service on a managed runtime, on your own BuildKit and registry.

pub mod build;
pub mod buildkit;
pub mod catalog;
pub mod client;
pub mod config;
pub mod docker;
pub mod error;
pub mod image;
pub mod job;
pub mod llb;
pub mod log;
pub mod metrics;
pub mod plan;
pub mod platform;
pub mod queue;
pub mod registry;
pub mod source;
pub mod worker;
pub mod yaml;
