//! apprunner-build: builds web applications from source the way AWS App Runner builds a
//! code-based service on a managed runtime, on your own BuildKit and registry.

pub mod catalog;
pub mod config;
pub mod error;
pub mod llb;
pub mod plan;
pub mod yaml;
