use super::*;
use crate::catalog::RuntimeCatalog;
use crate::config;
use crate::llb;
use crate::plan::{self, ImageFacts, PlanInput};

const HEX: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee49044b825dc642cb6eb9a060e54b";

fn digest(c: char) -> Digest {
    Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
}

fn plan() -> BuildPlan {
    let yaml = "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - pip3 install -r requirements.txt\nrun:\n  runtime-version: 3.11\n  command: python3 app.py\n  pre-run:\n    - pip3 install -r requirements.txt\n";
    let catalog = RuntimeCatalog::builtin();
    let cfg = config::from_yaml(yaml, "apprunner.yaml", catalog).unwrap();
    let runtime = catalog.resolve(catalog.lookup("python311").unwrap(), Some("3.11")).unwrap();
    let facts = |r: &str, d: char| ImageFacts { digest: Some(digest(d).to_string()), ..ImageFacts::unpinned(r) };
    plan::plan(
        &cfg,
        &PlanInput {
            build_image: facts("127.0.0.1:5000/apprunner-runtimes/python311:3.11.14-build", 'b'),
            run_image: facts("127.0.0.1:5000/apprunner-runtimes/python311:3.11.14-run", 'c'),
            runtime,
            source_image: format!("127.0.0.1:5000/apprunner-build/sources@{}", digest('d')),
            source_dir: "/".into(),
            repository: Some("https://git.example.com/team/web.git".into()),
            revision: Some(HEX[..40].into()),
            source_date_epoch: Some(1_700_000_000),
            operation_id: "op".into(),
            ca_bundle_image: None,
            network: StepNetwork::Sandbox,
            cache_scope: "apps/web".into(),
            warm_manifests: None,
        },
    )
}

fn source() -> SourceParameters {
    SourceParameters {
        repository: "https://git.example.com/team/web.git".into(),
        r#ref: Some("main".into()),
        commit: Some(HEX[..40].into()),
        uncommitted_changes: false,
        source_directory: "/".into(),
        configuration: Configuration::new("REPOSITORY", &digest('e')),
        runtime: "python311".into(),
        runtime_version: Some("3.11".into()),
    }
}

fn run() -> Run {
    Run {
        builder_id: default_builder_id("0.1.0"),
        builder_version: BTreeMap::from([("apprunner-build".into(), "0.1.0".into())]),
        invocation_id: "op-1".into(),
        started_on: "2026-12-08T00:00:00Z".into(),
        finished_on: "2026-12-08T00:00:09Z".into(),
    }
}

#[test]
fn a_builds_provenance_names_its_source_its_runtime_images_and_every_image_its_llb_pins() {
    let plan = plan();
    let pinned = llb::from_plan(&plan).images();
    assert_eq!(pinned.len(), 3, "build, run and source images: {pinned:?}");
    let provenance = of_build(source(), &plan, &pinned, false, &run());
    let value = serde_json::to_value(&provenance).unwrap();
    let d = &value["buildDefinition"];
    assert_eq!(d["buildType"], SOURCE_BUILD);
    assert_eq!(d["externalParameters"]["configuration"]["source"], "REPOSITORY");
    assert_eq!(d["internalParameters"]["buildProcess"], "revised");
    assert_eq!(d["internalParameters"]["runtimeVersion"], plan.runtime_version.as_str());
    let deps = d["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps[0]["uri"], "git+https://git.example.com/team/web.git@main");
    assert_eq!(deps[0]["digest"]["gitCommit"], &HEX[..40]);
    let named: Vec<_> = deps[1..].iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(named, [SOURCE_TREE, BUILD_IMAGE, RUN_IMAGE]);
    assert!(deps[1..].iter().all(|d| d["digest"]["sha256"].as_str().is_some_and(|h| h.len() == 64)));
    assert_eq!(value["runDetails"]["builder"]["id"], "https://apprunner-build.dev/worker@v0.1.0");
    assert_eq!(value["runDetails"]["metadata"]["invocationId"], "op-1");

    let bytes = statement("127.0.0.1:5000/apps/web", &digest('f'), &provenance);
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","subject":[{"name":"127.0.0.1:5000/apps/web","digest":{"sha256":"ffff"#), "{text}");
    assert_eq!(bytes, statement("127.0.0.1:5000/apps/web", &digest('f'), &provenance), "deterministic");
}

#[test]
fn verify_reads_back_the_source_the_version_and_the_runtime_images() {
    let plan = plan();
    let provenance = of_build(source(), &plan, &llb::from_plan(&plan).images(), false, &run());
    let any: AnyProvenance = serde_json::from_value(serde_json::to_value(&provenance).unwrap()).unwrap();
    let got = recorded(&any).unwrap();
    assert_eq!(got.source, source());
    assert_eq!(got.runtime_version, plan.runtime_version);
    assert_eq!(
        got.runtime_images,
        BTreeMap::from([
            ("127.0.0.1:5000/apprunner-runtimes/python311:3.11.14-build".into(), digest('b').to_string()),
            ("127.0.0.1:5000/apprunner-runtimes/python311:3.11.14-run".into(), digest('c').to_string()),
        ])
    );

    // A rebase of it records the image moved and, for verify, how that one was built.
    let facts = RebaseFacts {
        parameters: RebaseParameters {
            image: format!("127.0.0.1:5000/apps/web@{}", digest('f')),
            runtime: "python311".into(),
            from_version: "3.11.14".into(),
            to_version: "3.11.15".into(),
            built: Some(source()),
        },
        from: digest('f'),
        run_image: ("127.0.0.1:5000/apprunner-runtimes/python311:3.11.15-run".into(), digest('a')),
    };
    let rebased = of_rebase(facts, &run());
    let deps: Vec<_> = rebased.build_definition.resolved_dependencies.iter().map(|d| d.name.as_deref()).collect();
    assert_eq!(deps, [Some(REBASED_IMAGE), Some(RUN_IMAGE)]);
    let any: AnyProvenance = serde_json::from_value(serde_json::to_value(&rebased).unwrap()).unwrap();
    let got = recorded(&any).unwrap();
    assert_eq!((got.runtime_version.as_str(), got.runtime_images.len()), ("3.11.15", 1));

    let mut other = any;
    other.build_definition.build_type = "https://example.com/other".into();
    assert_eq!(
        recorded(&other).unwrap_err().to_string(),
        "its provenance is of build type https://example.com/other, not this builder's"
    );
}
