//! LLB: the build plan as `BuildKit`'s low-level build graph. Deterministic: the same plan gives
//! the same bytes, because every op is serialized with ordered maps and named by the sha256 of
//! its exact bytes.

mod convert;
mod graph;
pub mod pb;

pub use crate::progress::VertexInfo;
pub use convert::{from_plan, render};

use prost::Message;
use std::collections::BTreeMap;

/// The file inside the CA bundle image.
pub const CA_FILE: &str = "/ca-certificates.crt";

/// One Definition to solve: its bytes and what its named vertices stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Llb {
    pub bytes: Vec<u8>,
    pub vertices: BTreeMap<String, VertexInfo>,
}

impl Llb {
    pub fn definition(&self) -> pb::Definition {
        // Infallible: `bytes` is what `graph` encoded from a Definition.
        pb::Definition::decode(self.bytes.as_slice()).unwrap_or_default()
    }
    pub fn digest(&self) -> String {
        crate::digest::sha256_digest(&self.bytes)
    }
}

/// The solves of a plan: the image, and (when there are post-build commands) the post-build
/// check, which must succeed but whose output never reaches the image (docs/configuration.md A9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solves {
    pub image: Llb,
    pub post_build: Option<Llb>,
    /// Each stage's dependency warm-up, by stage name, to solve before the others.
    pub warm: Vec<(String, Llb)>,
}
