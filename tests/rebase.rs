//! `rebase` against the real registry and `BuildKit`: an image built on an older run image moves
//! onto a newer one by registry operations alone, runs and answers there; images whose layers
//! were computed on the run image are refused with the reason.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::core::rebase::Refusal;
use apprunner_build::edge::image;
use apprunner_build::edge::rebase::{RebaseOutcome, Rebased};
use apprunner_build::edge::registry::Registry;
use apprunner_build::log::{DeploymentLog, MemorySink};
use apprunner_build::pipeline::{self, Settings};
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The settings of a fleet that holds nodejs18 at 18.20.6 (the release before the newest two).
fn held() -> Settings {
    let mut s = settings();
    s.runtime_holds.insert("nodejs18".into(), "18.20.6".into());
    s
}

/// The key the rebases here sign with.
fn keys() -> &'static KeyPair {
    static KEYS: std::sync::OnceLock<KeyPair> = std::sync::OnceLock::new();
    KEYS.get_or_init(key_pair)
}

async fn rebase(from: &str, to_version: &str, tag: &str) -> (Result<Rebased, Refusal>, Vec<String>) {
    let from = ImageRef::parse(from).unwrap();
    let target = ImageRef { tag: Some(tag.into()), digest: None, ..from.clone() };
    let sink = MemorySink::default();
    let log = DeploymentLog::new("rebase", vec![Arc::new(sink.clone())]);
    let signer = apprunner_build::edge::signing::Signer::from_file(&keys().private).unwrap();
    let settings = Settings { signer: Some(signer), ..settings() };
    let out = pipeline::rebase(&settings, &from, to_version, &target, "0123456789abcdef0123456789abcdef", &log)
        .await
        .unwrap();
    let out = match out {
        RebaseOutcome::Moved(moved) => Ok(moved),
        RebaseOutcome::Refused(refusal) => Err(refusal),
    };
    (out, sink.rendered())
}

async fn labels_of(image: &str) -> BTreeMap<String, String> {
    let registry = Registry::new(Default::default(), vec![]);
    image::existing(&registry, &ImageRef::parse(image).unwrap()).await.unwrap().unwrap().1
}

fn provenance(image: &str) -> serde_json::Value {
    let out = std::process::Command::new(DOCKER)
        .args(["buildx", "imagetools", "inspect", image, "--format", "{{json .Provenance}}"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_revised_image_without_pre_run_moves_to_a_newer_run_image_and_answers_there() {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/nodejs18");
    let built = build_with(&held(), request(app.to_str().unwrap(), "/", None, None)).await;
    assert!(built.has_line("nodejs18 is held at 18.20.6 on this fleet: building on 18.20.6."), "{:#?}", built.log);
    let old = built.image().to_string();
    assert_eq!(in_image(&old, "node --version"), "v18.20.6");

    let (out, log) = rebase(&old, "18.20.8", "rebased").await;
    let moved = out.unwrap_or_else(|e| panic!("{e}\n{log:#?}"));
    assert!(!moved.unchanged);
    assert_eq!(moved.copied_bytes, 0, "same registry: every layer is mounted, none copied");
    assert!(log.iter().any(|l| l.contains("Rebased from nodejs18 18.20.6 onto nodejs18 18.20.8")), "{log:#?}");
    let moved_image = moved.image.to_string();
    cosign_verify(&moved_image, &keys().public).expect("a rebased image is signed");
    // Its signed provenance names the image it came from and the new run image, by digest.
    let statement = cosign_verify_attestation(&moved_image, &keys().public, "slsaprovenance1").unwrap();
    let d = &statement["predicate"]["buildDefinition"];
    assert_eq!(d["buildType"], "https://apprunner-build.dev/buildtypes/rebase/v1");
    assert_eq!(
        (d["externalParameters"]["fromVersion"].as_str(), d["externalParameters"]["toVersion"].as_str()),
        (Some("18.20.6"), Some("18.20.8"))
    );
    let old_digest = ImageRef::parse(&old).unwrap().digest.unwrap();
    let dependency =
        |name: &str| d["resolvedDependencies"].as_array().unwrap().iter().find(|x| x["name"] == name).cloned().unwrap();
    assert_eq!(dependency("rebased image")["digest"]["sha256"], old_digest.hex());
    let run_ref = ImageRef::parse("127.0.0.1:5000/apprunner-runtimes/nodejs18:18.20.8-run").unwrap();
    let run_digest = Registry::new(Default::default(), vec![]).manifest_of(&run_ref).await.unwrap().unwrap().digest;
    assert_eq!(dependency("runtime run image")["digest"]["sha256"], run_digest.hex());
    assert_eq!(statement["predicate"]["runDetails"]["metadata"]["invocationId"], "0123456789abcdef0123456789abcdef");
    cosign_verify_attestation(&moved_image, &keys().public, "spdxjson").expect("its SBOM is signed");
    // Its SBOM is the moved image's: of its new manifest, with the new run image's packages.
    let (spdx, purls) = sbom_of(&moved_image);
    let manifest = spdx["name"].as_str().unwrap().rsplit_once('@').unwrap().1.to_string();
    assert_ne!(manifest, sbom_of(&old).0["name"].as_str().unwrap().rsplit_once('@').unwrap().1);
    assert!(purls.iter().any(|p| p.starts_with("pkg:npm/")) && purls.iter().any(|p| p.starts_with("pkg:deb/debian/")));
    // The new Node.js under the same app, with the app's environment over the new run image's.
    assert_eq!(in_image(&moved_image, "node --version"), "v18.20.8");
    assert_eq!(in_image(&moved_image, "echo $PORT $APP_PORT"), "3000 3000");
    assert_eq!(in_image(&moved_image, "cd /app && ls"), in_image(&old, "cd /app && ls"));
    let running = Running::start(&moved_image, 3000, &[]);
    assert!(running.get("/").await.contains("Hello from Node.js v18.20.8"), "the app answers on the new run image");

    let labels = labels_of(&moved_image).await;
    let old_labels = labels_of(&old).await;
    assert_eq!(labels["dev.apprunner-build.runtime-version"], "18.20.8");
    assert_eq!(labels["dev.apprunner-build.rebased-from-version"], "18.20.6");
    assert!(labels["org.opencontainers.image.base.name"].ends_with("apprunner-runtimes/nodejs18:18.20.8-run"));
    assert_eq!(labels["dev.apprunner-build.operation-id"], "0123456789abcdef0123456789abcdef");
    assert_ne!(old_labels["org.opencontainers.image.base.digest"], labels["org.opencontainers.image.base.digest"]);
    let slsa = &provenance(&moved_image)["SLSA"];
    let rebased = &slsa["metadata"]["https://apprunner-build.dev/rebase@v1"];
    assert_eq!(rebased["runtimeVersion"], "18.20.8");
    assert_eq!(rebased["rebasedFrom"]["runtimeVersion"], "18.20.6");
    let materials = slsa["materials"].to_string();
    assert!(materials.contains("nodejs18@18.20.8-run?digest=sha256:"), "{materials}");
    assert!(!materials.contains("18.20.6-run"), "{materials}");

    // The same move again writes the same image, byte for byte; a move to where it is changes
    // nothing.
    let (again, _) = rebase(&old, "18.20.8", "rebased").await;
    assert_eq!(again.unwrap().image, moved.image);
    let (stay, _) = rebase(&moved_image, "18.20.8", "rebased").await;
    let stay = stay.unwrap();
    assert!(stay.unchanged);
    assert_eq!(stay.image, moved.image);
}

#[tokio::test]
async fn images_whose_layers_were_made_on_the_run_image_are_refused_with_the_reason() {
    // The original build reruns the build commands on the run image.
    let original = build(&guide_app(), "/", None).await;
    let (out, _) = rebase(original.image(), "3.7.16", "never").await;
    let e = out.unwrap_err().to_string();
    assert!(e.contains("was built with the original build") && e.contains("rebuild the service"), "{e}");

    // pre-run ran on the run image.
    let pre_run = app(&[
        (
            "apprunner.yaml",
            "version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - echo built > built.txt\nrun:\n  pre-run:\n    - echo ready > ready.txt\n  command: node app.js\n  network:\n    port: 8080\n",
        ),
        ("app.js", "require('http').createServer((q, s) => s.end('hi')).listen(8080);\n"),
    ]);
    let built = build_with(&held(), request(pre_run.path().to_str().unwrap(), "/", None, None)).await;
    let (out, _) = rebase(built.image(), "18.20.8", "never").await;
    let e = out.unwrap_err().to_string();
    assert!(e.contains("ran 1 pre-run command(s) on the nodejs18 18.20.6 run image"), "{e}");
    assert!(e.contains("rebuild the service to move it to 18.20.8"), "{e}");

    // A version the runtime never had, and a version the configuration's lock does not accept.
    let (out, _) = rebase(built.image(), "18.99.1", "never").await;
    assert!(out.unwrap_err().to_string().contains("nodejs18 has no version 18.99.1; its versions are 18.20.8"));
    let pinned = app(&[
        (
            "apprunner.yaml",
            "version: 1.0\nruntime: nodejs18\nbuild:\n  commands:\n    build:\n      - echo built\nrun:\n  runtime-version: 18.20.7\n  command: node app.js\n",
        ),
        ("app.js", "require('http').createServer((q, s) => s.end('hi')).listen(8080);\n"),
    ]);
    let built = build(pinned.path(), "/", None).await;
    let (out, _) = rebase(built.image(), "18.20.8", "never").await;
    let e = out.unwrap_err().to_string();
    assert!(e.contains("sets runtime-version 18.20.7, which 18.20.8 does not match"), "{e}");
}
