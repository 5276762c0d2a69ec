//! LLB: the build plan as BuildKit's low-level build graph. Deterministic: the same plan gives
//! the same bytes, because every op is serialized with ordered maps and named by the sha256 of
//! its exact bytes.

pub mod pb;

use crate::plan::{AppCopy, BuildPlan, Stage, StageBase, StageRole, StepNetwork, APP_DIR, CA_MOUNT};
use pb::{op::Kind, Op};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The file inside the CA bundle image.
pub const CA_FILE: &str = "/ca-certificates.crt";

/// One output of one op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub digest: String,
    pub index: i64,
}

/// What a step's vertex stands for, so Status updates can be told apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VertexInfo {
    pub stage: String,
    /// Index into the stage's steps; None for the copy and image ops.
    pub step: Option<usize>,
    pub name: String,
}

/// A Definition under construction; ops are kept in the order they were first added, which is
/// always dependencies first.
#[derive(Default)]
struct Graph {
    ops: Vec<(String, Vec<u8>)>,
    metadata: BTreeMap<String, pb::OpMetadata>,
    vertices: BTreeMap<String, VertexInfo>,
}

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn linux_amd64() -> Option<pb::Platform> {
    Some(pb::Platform { architecture: "amd64".into(), os: "linux".into() })
}

impl Graph {
    fn add(&mut self, op: Op, name: Option<&str>, info: Option<VertexInfo>) -> Output {
        let bytes = op.encode_to_vec();
        let digest = digest_of(&bytes);
        if !self.ops.iter().any(|(d, _)| *d == digest) {
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

    fn image(&mut self, reference: &str) -> Output {
        let op = Op {
            inputs: vec![],
            op: Some(Kind::Source(pb::SourceOp { identifier: format!("docker-image://{reference}"), attrs: BTreeMap::new() })),
            platform: linux_amd64(),
        };
        self.add(op, None, None)
    }

    fn copy(&mut self, onto: &Output, from: &Output, src: &str, name: String, info: VertexInfo) -> Output {
        let action = pb::FileAction {
            input: 0,
            secondary_input: 1,
            output: 0,
            action: Some(pb::file_action::Action::Copy(pb::FileActionCopy {
                src: src.into(),
                dest: APP_DIR.into(),
                mode: -1,
                follow_symlink: false,
                dir_copy_contents: true,
                create_dest_path: true,
                timestamp: -1,
            })),
        };
        let op = Op { inputs: vec![input(onto), input(from)], op: Some(Kind::File(pb::FileOp { actions: vec![action] })), platform: linux_amd64() };
        self.add(op, Some(&name), Some(info))
    }

    fn finish(self, out: &Output) -> Llb {
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

fn input(o: &Output) -> pb::Input {
    pb::Input { digest: o.digest.clone(), index: o.index }
}

/// One Definition to solve: its bytes and what its named vertices stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Llb {
    pub bytes: Vec<u8>,
    pub vertices: BTreeMap<String, VertexInfo>,
}

impl Llb {
    pub fn definition(&self) -> pb::Definition {
        pb::Definition::decode(self.bytes.as_slice()).expect("we encoded it")
    }
    pub fn digest(&self) -> String {
        digest_of(&self.bytes)
    }
}

/// The solves of a plan: the image, and (when there are post-build commands) the post-build
/// check, which must succeed but whose output never reaches the image (DECISIONS.md A9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Solves {
    pub image: Llb,
    pub post_build: Option<Llb>,
}

pub fn from_plan(plan: &BuildPlan) -> Solves {
    let image_stage = plan.image_stage();
    let image = stage_graph(plan, image_stage);
    let post_build = plan.stages.iter().find(|s| s.role == StageRole::Check).map(|s| stage_graph(plan, s));
    Solves { image, post_build }
}

/// A graph ending in `target`, built by walking its ancestry; shared stages give identical ops,
/// so BuildKit solves them once across concurrent solves.
fn stage_graph(plan: &BuildPlan, target: &Stage) -> Llb {
    let mut g = Graph::default();
    let out = emit_stage(plan, target, &mut g);
    g.finish(&out)
}

fn emit_stage(plan: &BuildPlan, stage: &Stage, g: &mut Graph) -> Output {
    let mut state = match &stage.from {
        StageBase::Image(r) => g.image(r),
        StageBase::Stage(name) => {
            let parent = plan.stage(name).expect("plan names only its own stages");
            emit_stage(plan, parent, g)
        }
    };
    match &stage.copy_app {
        Some(AppCopy::Source) => {
            let src = g.image(&plan.source_image);
            let name = format!("[{}] copy source directory {} to {APP_DIR}", stage.name, plan.source_dir);
            state = g.copy(&state, &src, "/", name.clone(), VertexInfo { stage: stage.name.clone(), step: None, name });
        }
        Some(AppCopy::FromStage(from)) => {
            let parent = plan.stage(from).expect("plan names only its own stages");
            let app = emit_stage(plan, parent, g);
            let name = format!("[{}] copy {APP_DIR} from the {from} stage", stage.name);
            state = g.copy(&state, &app, APP_DIR, name.clone(), VertexInfo { stage: stage.name.clone(), step: None, name });
        }
        None => {}
    }
    let ca = plan.ca_bundle_image.as_ref().map(|r| g.image(r));
    for (i, step) in stage.steps.iter().enumerate() {
        let mut inputs = vec![input(&state)];
        let mut mounts = vec![pb::Mount { input: 0, selector: String::new(), dest: "/".into(), output: 0, readonly: false }];
        if let Some(ca) = &ca {
            inputs.push(input(ca));
            mounts.push(pb::Mount { input: 1, selector: CA_FILE.into(), dest: CA_MOUNT.into(), output: -1, readonly: true });
        }
        let exec = pb::ExecOp {
            meta: Some(pb::Meta {
                args: vec!["/bin/sh".into(), "-c".into(), step.command.clone()],
                env: stage.env.clone(),
                cwd: APP_DIR.into(),
                user: String::new(),
            }),
            mounts,
            network: match plan.network {
                StepNetwork::Sandbox => pb::NetMode::Unset as i32,
                StepNetwork::Host => pb::NetMode::Host as i32,
            },
        };
        let name = format!("[{}] {}: {}", stage.name, step.describe(), first_line(&step.command));
        let op = Op { inputs, op: Some(Kind::Exec(exec)), platform: linux_amd64() };
        state = g.add(op, Some(&name), Some(VertexInfo { stage: stage.name.clone(), step: Some(i), name: name.clone() }));
    }
    state
}

fn first_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("");
    if s.lines().nth(1).is_some() {
        format!("{line} …")
    } else {
        line.to_string()
    }
}

/// A readable rendering of a Definition, one op per line, for snapshots and `plan --llb`.
pub fn render(llb: &Llb) -> String {
    let def = llb.definition();
    let mut out = String::new();
    for bytes in &def.def {
        let d = digest_of(bytes);
        let op = Op::decode(bytes.as_slice()).expect("we encoded it");
        let short = |x: &str| x.trim_start_matches("sha256:")[..12].to_string();
        let ins: Vec<String> = op.inputs.iter().map(|i| short(&i.digest)).collect();
        let body = match &op.op {
            Some(Kind::Source(s)) => format!("source {}", s.identifier),
            Some(Kind::File(f)) => {
                let a = f.actions.iter().map(|a| match &a.action {
                    Some(pb::file_action::Action::Copy(c)) => format!("copy {} -> {}", c.src, c.dest),
                    None => "?".into(),
                });
                format!("file {}", a.collect::<Vec<_>>().join("; "))
            }
            Some(Kind::Exec(e)) => {
                let m = e.meta.clone().unwrap_or_default();
                let mounts: Vec<String> = e
                    .mounts
                    .iter()
                    .map(|m| {
                        format!(
                            "{}{}{}",
                            m.dest,
                            if m.readonly { ":ro" } else { "" },
                            if m.selector.is_empty() { String::new() } else { format!("<-{}", m.selector) }
                        )
                    })
                    .collect();
                format!(
                    "exec {:?} cwd={} net={} mounts=[{}] env={}",
                    m.args.last().cloned().unwrap_or_default(),
                    m.cwd,
                    e.network,
                    mounts.join(","),
                    m.env.len()
                )
            }
            None => "terminal".into(),
        };
        let name = def.metadata.get(&d).and_then(|m| m.description.get("llb.customname")).map(|n| format!("  # {n}")).unwrap_or_default();
        out.push_str(&format!("{} <- [{}] {body}{name}\n", short(&d), ins.join(",")));
    }
    out
}
