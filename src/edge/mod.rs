//! The edges: everything that talks to a service or the filesystem. The source (git and the
//! source directory), the registry, images at the registry, and `BuildKit`.

pub mod buildkit;
pub mod image;
pub mod rebase;
pub mod registry;
pub mod source;
