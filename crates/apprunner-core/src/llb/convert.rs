//! The plan's stages as LLB: the image solve and the post-build check, and a readable
//! rendering of a Definition for snapshots and `plan --llb`.

use super::graph::{input, linux_amd64, Graph, Output, Patterns};
use super::pb::{self, op::Kind, Op};
use super::{Llb, Solves, VertexInfo, CA_FILE};
use crate::caches::Sharing;
use crate::digest::sha256_digest as digest_of;
use crate::plan::{AppCopy, BuildPlan, Stage, StageBase, StageRole, StepNetwork, APP_DIR, CA_MOUNT};
use crate::progress::{first_line, PHASE_SCRIPT};
use crate::warm::WarmStep;
use prost::Message;
use std::fmt::Write as _;

pub fn from_plan(plan: &BuildPlan) -> Solves {
    let image_stage = plan.image_stage();
    let image = stage_graph(plan, image_stage);
    let post_build = plan.stages.iter().find(|s| s.role == StageRole::Check).map(|s| stage_graph(plan, s));
    let warm =
        plan.stages.iter().filter_map(|s| s.warm.as_ref().map(|w| (s.name.clone(), warm_graph(plan, s, w)))).collect();
    Solves { image, post_build, warm }
}

/// A graph ending in `stage`'s warm-up, solved first on its own: a warm-up that fails is left
/// out of the build rather than failing it.
fn warm_graph(plan: &BuildPlan, stage: &Stage, warm: &WarmStep) -> Llb {
    let mut g = Graph::default();
    let base = match &stage.from {
        StageBase::Image(r) => g.image(r),
        StageBase::Stage(name) => emit_stage(plan, plan.stage(name).expect("plan names only its own stages"), &mut g),
    };
    let ca = plan.ca_bundle_image.as_ref().map(|r| g.image(r));
    let out = emit_warm(plan, stage, warm, base, ca.as_ref(), &mut g);
    g.finish(&out)
}

/// A graph ending in `target`, built by walking its ancestry; shared stages give identical ops,
/// so `BuildKit` solves them once across concurrent solves.
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
    let ca = plan.ca_bundle_image.as_ref().map(|r| g.image(r));
    if let Some(warm) = &stage.warm {
        state = emit_warm(plan, stage, warm, state, ca.as_ref(), g);
    }
    // A copy is reported by name only: its stage, no step.
    let copying = |name: &str| VertexInfo { stage: stage.name.clone(), step: None, steps: 0, name: name.to_string() };
    match &stage.copy_app {
        Some(AppCopy::Source) => {
            let src = g.image(&plan.source_image);
            let name = format!("[{}] copy source directory {} to {APP_DIR}", stage.name, plan.source_dir);
            state = g.copy(&state, &src, "/", &name, copying(&name));
        }
        Some(AppCopy::FromStage { stage: from, own_layers }) => {
            let parent = plan.stage(from).expect("plan names only its own stages");
            let app = emit_stage(plan, parent, g);
            // Each dependency directory alone first: its copy's cache key is its own content,
            // so a code change leaves it (and its layer) as it was.
            for dir in own_layers {
                let name = format!("[{}] copy {APP_DIR}/{dir} from the {from} stage", stage.name);
                let only = Patterns { include: vec![dir.clone()], exclude: Vec::new() };
                state = g.copy_matching(&state, &app, APP_DIR, APP_DIR, &only, &name, copying(&name));
            }
            let name = if own_layers.is_empty() {
                format!("[{}] copy {APP_DIR} from the {from} stage", stage.name)
            } else {
                format!("[{}] copy the rest of {APP_DIR} from the {from} stage", stage.name)
            };
            let rest = Patterns { include: Vec::new(), exclude: own_layers.clone() };
            state = g.copy_matching(&state, &app, APP_DIR, APP_DIR, &rest, &name, copying(&name));
        }
        None => {}
    }
    // One exec per phase: its commands share one shell (docs/configuration.md B2).
    let mut first = 0;
    while first < stage.steps.len() {
        let phase = stage.steps[first].phase;
        let count = stage.steps[first..].iter().take_while(|s| s.phase == phase).count();
        let steps = &stage.steps[first..first + count];
        let mut args = vec!["/bin/sh".to_string(), "-c".into(), PHASE_SCRIPT.into(), "apprunner-build".into()];
        args.extend(steps.iter().map(|s| s.command.clone()));
        let op = exec(plan, stage, &state, ca.as_ref(), args, plan.source_date_epoch);
        let name = match steps {
            [only] => format!("[{}] {}: {}", stage.name, only.describe(), first_line(&only.command)),
            _ => format!("[{}] {} commands 1-{count} (one shell)", stage.name, phase.key()),
        };
        let info = VertexInfo { stage: stage.name.clone(), step: Some(first), steps: count, name: name.clone() };
        state = g.add(&op, Some(&name), Some(info));
        first += count;
    }
    state
}

/// The stage's dependency warm-up on `state`: its manifests copied into /app from the source,
/// then its first command, with everything a step of the stage has. The copies' cache keys are
/// the manifests' content, so a change elsewhere in the source leaves the warm-up cached.
fn emit_warm(
    plan: &BuildPlan,
    stage: &Stage,
    warm: &WarmStep,
    mut state: Output,
    ca: Option<&Output>,
    g: &mut Graph,
) -> Output {
    let src = g.image(&plan.source_image);
    let quiet = |name: &str| VertexInfo { stage: stage.name.clone(), step: None, steps: 0, name: name.to_string() };
    for manifest in &warm.manifests {
        let name = format!("[{}] dependency warm-up: copy {manifest}", stage.name);
        state = g.copy_to(&state, &src, &format!("/{manifest}"), &format!("{APP_DIR}/{manifest}"), &name, quiet(&name));
    }
    let args = vec!["/bin/sh".to_string(), "-c".into(), warm.command.clone()];
    // A fixed date, not the commit's: the warm-up's cache key stays its manifests' content, so
    // a commit that changes only code reuses it.
    let epoch = plan.source_date_epoch.map(|_| WARM_UP_EPOCH);
    let op = exec(plan, stage, &state, ca, args, epoch);
    let name = format!(
        "[{}] dependency warm-up: {} (on {} alone)",
        stage.name,
        first_line(&warm.command),
        warm.manifests.join(", ")
    );
    g.add(&op, Some(&name), Some(quiet(&name)))
}

/// `SOURCE_DATE_EPOCH` of the dependency warm-ups: 1980-01-01, the earliest a zip archive
/// (a wheel, a jar) can record.
pub const WARM_UP_EPOCH: i64 = 315_532_800;

/// An exec of `args` on `state` as every step of `stage` runs: in /app, with the stage's env
/// and `SOURCE_DATE_EPOCH` (unless the app sets its own), the CA bundle, the package caches and
/// the plan's network.
fn exec(
    plan: &BuildPlan,
    stage: &Stage,
    state: &Output,
    ca: Option<&Output>,
    args: Vec<String>,
    epoch: Option<i64>,
) -> Op {
    let mut env = stage.env.clone();
    if let Some(epoch) = epoch.filter(|_| !env.iter().any(|kv| kv.starts_with("SOURCE_DATE_EPOCH="))) {
        env.push(format!("SOURCE_DATE_EPOCH={epoch}"));
    }
    let mut inputs = vec![input(state)];
    let mut mounts = vec![pb::Mount { dest: "/".into(), ..pb::Mount::default() }];
    if let Some(ca) = ca {
        inputs.push(input(ca));
        mounts.push(pb::Mount {
            input: 1,
            selector: CA_FILE.into(),
            dest: CA_MOUNT.into(),
            output: -1,
            readonly: true,
            ..pb::Mount::default()
        });
    }
    // Package caches: no input, no output; BuildKit keeps them between builds by id.
    mounts.extend(plan.caches.iter().map(|c| pb::Mount {
        input: -1,
        dest: c.path.into(),
        output: -1,
        mount_type: pb::MountType::Cache as i32,
        cache_opt: Some(pb::CacheOpt {
            id: c.id.clone(),
            sharing: match c.sharing {
                Sharing::Shared => pb::CacheSharingOpt::Shared,
                Sharing::Locked => pb::CacheSharingOpt::Locked,
            } as i32,
        }),
        ..pb::Mount::default()
    }));
    let exec = pb::ExecOp {
        meta: Some(pb::Meta { args, env, cwd: APP_DIR.into(), user: String::new() }),
        mounts,
        network: match plan.network {
            StepNetwork::Sandbox => pb::NetMode::Unset as i32,
            StepNetwork::Host => pb::NetMode::Host as i32,
        },
    };
    Op { inputs, op: Some(Kind::Exec(exec)), platform: Some(linux_amd64()) }
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
                    Some(pb::file_action::Action::Copy(c)) => {
                        let mut shown = format!("copy {} -> {}", c.src, c.dest);
                        if !c.include_patterns.is_empty() {
                            let _ = write!(shown, " only {:?}", c.include_patterns);
                        }
                        if !c.exclude_patterns.is_empty() {
                            let _ = write!(shown, " except {:?}", c.exclude_patterns);
                        }
                        shown
                    }
                    None => "?".into(),
                });
                format!("file {}", a.collect::<Vec<_>>().join("; "))
            }
            Some(Kind::Exec(e)) => {
                let m = e.meta.clone().unwrap_or_default();
                let mounts: Vec<String> = e
                    .mounts
                    .iter()
                    .map(|m| match &m.cache_opt {
                        Some(c) => format!("{}:cache={}", m.dest, c.id),
                        None => format!(
                            "{}{}{}",
                            m.dest,
                            if m.readonly { ":ro" } else { "" },
                            if m.selector.is_empty() { String::new() } else { format!("<-{}", m.selector) }
                        ),
                    })
                    .collect();
                // A phase's shell: its commands are the arguments after the script.
                let shown =
                    if m.args.get(2).map(String::as_str) == Some(PHASE_SCRIPT) { &m.args[4..] } else { &m.args[2..] };
                format!(
                    "exec {:?} cwd={} net={} mounts=[{}] env={}",
                    shown,
                    m.cwd,
                    e.network,
                    mounts.join(","),
                    m.env.len()
                )
            }
            None => "terminal".into(),
        };
        let name = def
            .metadata
            .get(&d)
            .and_then(|m| m.description.get("llb.customname"))
            .map(|n| format!("  # {n}"))
            .unwrap_or_default();
        let _ = writeln!(out, "{} <- [{}] {body}{name}", short(&d), ins.join(","));
    }
    out
}
