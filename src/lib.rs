//! apprunner-build: builds web applications from source the way AWS App Runner builds a
//! code-based service on a managed runtime, on your own `BuildKit` and registry.
//!
//! - `core`: the crate `apprunner-core` (crates/apprunner-core): pure planning (configuration,
//!   catalog, platform rules, plan) and the data that crosses the seams (request, result, log
//!   lines, progress); no I/O, which its dependencies make sure of.
//! - `llb`: the plan as `BuildKit` LLB, byte-for-byte deterministic (in the core crate).
//! - `error`: the three classes of failure (in the core crate).
//! - `edge`: the source, the registry, images, `BuildKit`.
//! - `pipeline`: one build (and a rebase, a verification), the core meeting the edges.
//! - `queue`: the crate `apprunner-queue` (crates/apprunner-queue: the broker, the messages, the
//!   history and the clients; lapin behind its transport) and the worker.
//! - `watch`: automatic deployment: the services a file declares, deployed on each commit that
//!   changes their source directory.
//! - `cli`: the commands, each a thin call into the above.

pub use apprunner_core as core;
pub use apprunner_core::{error, llb};

pub mod cli;
pub mod edge;
pub mod log;
pub mod pipeline;
pub mod queue;
pub mod watch;
