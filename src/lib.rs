//! apprunner-build: builds web applications from source the way AWS App Runner builds a
//! code-based service on a managed runtime, on your own `BuildKit` and registry.
//!
//! - `core`: pure planning (configuration, catalog, platform rules, plan) and the data that
//!   crosses the seams (request, result, log lines, progress).
//! - `llb`: the plan as `BuildKit` LLB, byte-for-byte deterministic.
//! - `edge`: the source, the registry, images, `BuildKit`.
//! - `pipeline`: one build, the core meeting the edges.
//! - `queue`: the worker, its message formats and clients.
//! - `cli`: the commands, each a thin call into the above.

pub mod cli;
pub mod core;
pub mod edge;
pub mod error;
pub mod llb;
pub mod log;
pub mod pipeline;
pub mod queue;
