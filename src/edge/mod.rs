//! The edges: everything that talks to a service or the filesystem. The source (git and the
//! source directory), the registry (its client a crate of its own), images at the registry, `BuildKit`, and the stand-in runtime
//! images' recipes.

pub mod build_id;
pub mod image;
pub mod layers;
pub(crate) mod process;
pub mod rebase;
pub mod sbom;
pub mod signing;
pub mod source;
pub mod stand_in;

/// The BuildKit client, a crate of its own (crates/apprunner-buildkit).
pub use apprunner_buildkit as buildkit;
/// The registry client, a crate of its own (crates/apprunner-registry).
pub use apprunner_registry as registry;
