//! Snapshots of the plan and the LLB of every example configuration in App Runner's guide,
//! with fixed image facts so they do not depend on a registry.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use apprunner_build::core::catalog::RuntimeCatalog;
use apprunner_build::core::config;
use apprunner_build::core::plan::{self, ImageFacts, PlanInput, StepNetwork};
use apprunner_build::llb;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

fn facts(reference: String, seed: char) -> ImageFacts {
    ImageFacts {
        reference,
        digest: Some(format!("sha256:{}", seed.to_string().repeat(64))),
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(), "LANG=C.UTF-8".into()],
        labels: BTreeMap::from([("dev.apprunner-build.stands-in-for".to_string(), "fixture".to_string())]),
        diff_ids: Vec::new(),
        history: Vec::new(),
    }
}

fn plan_for(cfg: &config::AppConfig) -> plan::BuildPlan {
    let catalog = RuntimeCatalog::builtin();
    let rt = catalog.resolve(catalog.lookup(&cfg.runtime).unwrap(), cfg.runtime_version.as_deref()).unwrap();
    let input = PlanInput {
        build_image: facts(format!("127.0.0.1:5000/{}", rt.build_image), 'b'),
        run_image: facts(format!("127.0.0.1:5000/{}", rt.run_image), 'r'),
        runtime: rt,
        source_image: format!("127.0.0.1:5000/apprunner-build/sources@sha256:{}", "5".repeat(64)),
        source_dir: "/".into(),
        repository: Some("https://github.com/github-user/python-hello".into()),
        revision: Some("0123456789abcdef0123456789abcdef01234567".into()),
        source_date_epoch: Some(1_795_608_000), // 2026-11-25T12:00:00Z
        operation_id: "c2c8eeedea164f459cf78f12a8953390".into(),
        ca_bundle_image: Some(format!("127.0.0.1:5000/apprunner-build/ca-bundles@sha256:{}", "c".repeat(64))),
        network: StepNetwork::Sandbox,
        cache_scope: "apprunner-apps/guide".into(),
        warm_manifests: Some(
            [
                "requirements.txt",
                "package.json",
                "package-lock.json",
                "go.mod",
                "go.sum",
                "Gemfile",
                "Gemfile.lock",
                "composer.json",
            ]
            .iter()
            .map(|f| (*f).to_string())
            .collect(),
        ),
    };
    plan::plan(cfg, &input)
}

fn render(name: &str, result: Result<config::AppConfig, String>) -> String {
    match result {
        Err(e) => format!("rejected: {e}\n"),
        Ok(cfg) => {
            let p = plan_for(&cfg);
            let solves = llb::from_plan(&p);
            let again = llb::from_plan(&plan_for(&cfg));
            assert_eq!(solves, again, "{name}: LLB bytes differ between two plans of the same input");
            let mut out = serde_json::to_string_pretty(&p).unwrap();
            let _ = write!(out, "\n\n# image solve {}\n{}", solves.image.digest(), llb::render(&solves.image));
            if let Some(pb) = &solves.post_build {
                let _ = write!(out, "\n# post-build solve {}\n{}", pb.digest(), llb::render(pb));
            }
            out
        }
    }
}

#[test]
fn guide_examples() {
    let catalog = RuntimeCatalog::builtin();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guide");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    assert!(names.len() >= 25);
    for path in names {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let result = if path.extension().unwrap() == "json" {
            config::from_api(&serde_json::from_str(&text).unwrap(), catalog).map_err(|e| e.to_string())
        } else {
            config::from_yaml(&text, "apprunner.yaml", catalog).map_err(|e| e.to_string())
        };
        insta::assert_snapshot!(name.clone(), render(&name, result));
    }
}

/// docs/configuration.md B2: a phase's last command `cd dir` carries nowhere; the plan says so.
#[test]
fn a_phase_ending_in_a_bare_cd_is_warned_about() {
    let text = "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - pip3 install -r requirements.txt -t deps\n      - cd client\nrun:\n  command: python3 app.py\n";
    let cfg = config::from_yaml(text, "apprunner.yaml", RuntimeCatalog::builtin()).unwrap();
    let plan = plan_for(&cfg);
    assert!(plan.warnings.iter().any(|w| w.starts_with("the build phase ends in `cd client`")), "{:?}", plan.warnings);
    let solves = llb::from_plan(&plan);
    assert!(llb::render(&solves.image).contains(r#"exec ["pip3 install -r requirements.txt -t deps", "cd client"]"#));
}
