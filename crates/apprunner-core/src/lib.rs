//! The pure core of apprunner-build: configuration, catalog, platform rules, the plan and its
//! LLB, and the data that crosses the seams (request, result, log lines, progress, errors).
//! No I/O and no clock (a new operation id draws on the system's randomness; nothing else looks
//! outside): this crate depends on no runtime, network or filesystem crate, so the
//! compiler keeps it pure. The service crate (`apprunner-build`) re-exports it as `core`, with
//! `llb` and `error` beside it.

pub use apprunner_oci as oci;
pub use apprunner_oci::{cosign, digest, image_ref, media_types};

pub mod caches;
pub mod catalog;
pub mod config;
pub mod error;
pub mod git_credentials;
pub mod labels;
pub mod llb;
pub mod log;
pub mod plan;
pub mod platform;
pub mod progress;
pub mod provenance;
pub mod rebase;
pub mod redeploy;
pub mod registry_error;
pub mod remote_refs;
pub mod request;
pub mod result;
pub mod reuse;
pub mod sbom;
pub mod shown;
pub mod verify;
pub mod warm;
pub mod watch;
pub mod yaml;
