use super::*;
use crate::catalog::RuntimeCatalog;
use crate::config;
use crate::plan::{self, ImageFacts, PlanInput, StepNetwork};
use std::time::Duration;

fn plan() -> BuildPlan {
    let yaml =
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - a\n      - b\nrun:\n  command: c\n";
    let cfg = config::from_yaml(yaml, "apprunner.yaml", RuntimeCatalog::builtin()).unwrap();
    let catalog = RuntimeCatalog::builtin();
    let runtime = catalog.resolve(catalog.lookup("python3").unwrap(), None).unwrap();
    let facts = ImageFacts::unpinned;
    plan::plan(
        &cfg,
        &PlanInput {
            build_image: facts("r/b:1"),
            run_image: facts("r/r:1"),
            runtime,
            source_image: "r/s@sha256:0".into(),
            source_dir: "/".into(),
            repository: None,
            revision: None,
            source_date_epoch: None,
            operation_id: "op".into(),
            ca_bundle_image: None,
            network: StepNetwork::Sandbox,
            cache_scope: "apps/web".into(),
            warm_manifests: None,
        },
    )
}

fn phase(stage: &str) -> VertexInfo {
    VertexInfo {
        stage: stage.into(),
        step: Some(0),
        steps: 2,
        name: format!("[{stage}] build commands 1-2 (one shell)"),
    }
}

fn marker(stage: &str, text: &str) -> SolveEvent {
    SolveEvent::Line { vertex: phase(stage), stream: 2, text: format!("{MARKER}{text}") }
}

#[test]
fn a_phases_commands_are_named_timed_and_the_stage_by_the_given_clock() {
    let plan = plan();
    let mut p = Progress::new(&plan);
    let t0 = Instant::now();
    assert_eq!(
        p.on_event(&SolveEvent::Started(phase("build")), t0),
        [(LineSource::AppRunner, "Stage build started.".to_string())]
    );
    assert_eq!(
        p.on_event(&marker("build", "start 1"), t0),
        [(LineSource::AppRunner, "[build] build command 1/2: a started.".to_string())]
    );
    let line = SolveEvent::Line { vertex: phase("build"), stream: 1, text: "hello".into() };
    assert_eq!(p.on_event(&line, t0), [(LineSource::Build, "hello".to_string())]);
    // Output without a newline before the marker is the command's, then the marker's line.
    let joined = SolveEvent::Line { vertex: phase("build"), stream: 2, text: format!("partial{MARKER}end 1 0") };
    let lines = p.on_event(&joined, t0 + Duration::from_secs(1));
    assert_eq!(lines[0], (LineSource::Build, "partial".to_string()));
    assert_eq!(lines[1].1, "[build] build command 1/2: a finished in 1.0s.");
    p.on_event(&marker("build", "start 2"), t0 + Duration::from_secs(1));
    let failed = p.on_event(&marker("build", "end 2 3"), t0 + Duration::from_millis(1500));
    assert_eq!(failed[0].1, "[build] build command 2/2: b failed with exit code 3 after 0.5s.");
    assert_eq!(p.failed_step(), Some(("build".to_string(), 1)));
    let end =
        p.on_event(&SolveEvent::Completed { vertex: phase("build"), seconds: 2.0 }, t0 + Duration::from_millis(2500));
    assert_eq!(end.last().unwrap().1, "Stage build finished in 2.5s.");
    // The run stage comes wholly from the cache: each command is named.
    let cached = p.on_event(&SolveEvent::Cached(phase("run")), t0 + Duration::from_secs(3));
    assert_eq!(cached[1].1, "[run] build command 1/2: a cached.");
    assert_eq!(cached[2].1, "[run] build command 2/2: b cached.");
    assert!(cached[3].1.starts_with("Stage run finished in 0.0s (all cached)"), "{cached:?}");
    assert!(p
        .on_event(
            &SolveEvent::Other {
                name: "pull".into(),
                kind: OtherVertex::Other,
                cached: false,
                seconds: 1.0,
                error: None
            },
            t0
        )
        .is_empty());
    let t = p.timings();
    assert_eq!((t[0].stage.as_str(), t[0].seconds, t[0].cached), ("build", 2.5, false));
    assert_eq!((t[1].stage.as_str(), t[1].cached), ("run", true));
}
