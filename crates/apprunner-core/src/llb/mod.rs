//! LLB: the build plan as `BuildKit`'s low-level build graph. Deterministic: the same plan gives
//! the same bytes, because every op is serialized with ordered maps and named by the sha256 of
//! its exact bytes.

mod convert;
mod graph;
pub mod pb;

pub use crate::progress::VertexInfo;
pub use convert::{from_plan, render};

use prost::Message;
use std::collections::{BTreeMap, BTreeSet};

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

    /// The same graph with `BuildKit` told to run every op anew but those in `kept` (by digest):
    /// only the Definition's metadata changes, so each op's digest and output stay its own.
    #[must_use]
    pub fn ignoring_cache(&self, kept: &BTreeSet<String>) -> Llb {
        let mut def = self.definition();
        for (digest, meta) in &mut def.metadata {
            meta.ignore_cache = !kept.contains(digest);
        }
        Llb { bytes: def.encode_to_vec(), vertices: self.vertices.clone() }
    }

    /// The images the graph starts from (its `docker-image://` sources), as it names them:
    /// `registry/repo[:tag][@sha256:…]`.
    pub fn images(&self) -> BTreeSet<String> {
        self.definition()
            .def
            .iter()
            .filter_map(|op| pb::Op::decode(op.as_slice()).ok())
            .filter_map(|op| match op.op {
                Some(pb::op::Kind::Source(source)) => {
                    source.identifier.strip_prefix("docker-image://").map(str::to_string)
                }
                _ => None,
            })
            .collect()
    }

    fn op_digests(&self) -> impl Iterator<Item = String> + '_ {
        self.definition().metadata.into_keys()
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

impl Solves {
    /// Every image any of the solves starts from.
    pub fn images(&self) -> BTreeSet<String> {
        let warm = self.warm.iter().map(|(_, llb)| llb);
        std::iter::once(&self.image).chain(&self.post_build).chain(warm).flat_map(Llb::images).collect()
    }

    /// The solves of a build from nothing (`--no-cache`, `verify`): every op runs anew, once.
    /// The warm-ups are solved first and run theirs; the image and the check then take those
    /// from the warm-ups just run and run every other op.
    #[must_use]
    pub fn fresh(&self) -> Solves {
        let warmed: BTreeSet<String> = self.warm.iter().flat_map(|(_, llb)| llb.op_digests()).collect();
        Solves {
            image: self.image.ignoring_cache(&warmed),
            post_build: self.post_build.as_ref().map(|llb| llb.ignoring_cache(&warmed)),
            warm: self.warm.iter().map(|(stage, llb)| (stage.clone(), llb.ignoring_cache(&BTreeSet::new()))).collect(),
        }
    }
}
