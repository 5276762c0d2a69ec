//! A Definition under construction: ops added dependencies first, each named by its digest.

use super::pb::{self, op::Kind, Op};
use super::{Llb, VertexInfo};
use crate::digest::sha256_digest as digest_of;
use crate::plan::APP_DIR;
use prost::Message;
use std::collections::BTreeMap;

/// One output of one op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub digest: String,
    pub index: i64,
}

/// A Definition under construction; ops are kept in the order they were first added, which is
/// always dependencies first.
#[derive(Default)]
pub(super) struct Graph {
    ops: Vec<(String, Vec<u8>)>,
    /// The digests in `ops`, so adding an op is not linear in the graph's size.
    known: std::collections::HashSet<String>,
    metadata: BTreeMap<String, pb::OpMetadata>,
    vertices: BTreeMap<String, VertexInfo>,
}

pub(super) fn linux_amd64() -> pb::Platform {
    pb::Platform { architecture: "amd64".into(), os: "linux".into() }
}

/// Which paths under a copy's source it takes (`BuildKit`'s patterns, relative to the source;
/// a directory matched brings everything under it). Empty: everything.
#[derive(Debug, Clone, Default)]
pub(super) struct Patterns {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Graph {
    pub(super) fn add(&mut self, op: &Op, name: Option<&str>, info: Option<VertexInfo>) -> Output {
        let bytes = op.encode_to_vec();
        let digest = digest_of(&bytes);
        if self.known.insert(digest.clone()) {
            self.ops.push((digest.clone(), bytes));
            let mut meta = pb::OpMetadata::default();
            if let Some(n) = name {
                meta.description.insert("llb.customname".into(), n.to_string());
            }
            self.metadata.insert(digest.clone(), meta);
        }
        if let Some(info) = info {
            self.vertices.insert(digest.clone(), info);
        }
        Output { digest, index: 0 }
    }

    pub(super) fn image(&mut self, reference: &str) -> Output {
        let op = Op {
            inputs: vec![],
            op: Some(Kind::Source(pb::SourceOp {
                identifier: format!("docker-image://{reference}"),
                attrs: BTreeMap::new(),
            })),
            platform: Some(linux_amd64()),
        };
        self.add(&op, None, None)
    }

    /// Copies directory `src` of `from` into /app of `onto`, contents and all.
    pub(super) fn copy(&mut self, onto: &Output, from: &Output, src: &str, name: &str, info: VertexInfo) -> Output {
        self.copy_to(onto, from, src, APP_DIR, name, info)
    }

    /// Copies `src` of `from` to `dest` of `onto` (a directory's contents, or one file).
    pub(super) fn copy_to(
        &mut self,
        onto: &Output,
        from: &Output,
        src: &str,
        dest: &str,
        name: &str,
        info: VertexInfo,
    ) -> Output {
        self.copy_matching(onto, from, src, dest, &Patterns::default(), name, info)
    }

    /// `copy_to`, of the paths under `src` that `patterns` select.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn copy_matching(
        &mut self,
        onto: &Output,
        from: &Output,
        src: &str,
        dest: &str,
        patterns: &Patterns,
        name: &str,
        info: VertexInfo,
    ) -> Output {
        let action = pb::FileAction {
            input: 0,
            secondary_input: 1,
            output: 0,
            action: Some(pb::file_action::Action::Copy(pb::FileActionCopy {
                src: src.into(),
                dest: dest.into(),
                mode: -1,
                follow_symlink: false,
                dir_copy_contents: true,
                create_dest_path: true,
                timestamp: -1,
                include_patterns: patterns.include.clone(),
                exclude_patterns: patterns.exclude.clone(),
            })),
        };
        let op = Op {
            inputs: vec![input(onto), input(from)],
            op: Some(Kind::File(pb::FileOp { actions: vec![action] })),
            platform: Some(linux_amd64()),
        };
        self.add(&op, Some(name), Some(info))
    }

    pub(super) fn finish(self, out: &Output) -> Llb {
        let mut g = self;
        let terminal = Op { inputs: vec![input(out)], op: None, platform: None };
        let bytes = terminal.encode_to_vec();
        let digest = digest_of(&bytes);
        g.metadata.entry(digest.clone()).or_default();
        g.ops.push((digest, bytes));
        let definition = pb::Definition { def: g.ops.into_iter().map(|(_, b)| b).collect(), metadata: g.metadata };
        Llb { bytes: definition.encode_to_vec(), vertices: g.vertices }
    }
}

pub(super) fn input(o: &Output) -> pb::Input {
    pb::Input { digest: o.digest.clone(), index: o.index }
}
