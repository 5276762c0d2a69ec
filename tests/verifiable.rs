//! Images a supply chain can check: signed in cosign's format with the operator's key, an SPDX
//! SBOM beside the provenance, and two builds from nothing of one commit push one image manifest
//! (the benchmark's Python and Node.js apps).
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::edge::registry::Registry;
use apprunner_build::edge::signing::Signer;
use apprunner_build::pipeline::Settings;
use common::*;

/// The benchmark's Python app (docker/bench-rebuild): Flask and requests, the original build.
const PYTHON_APP: &[(&str, &str)] = &[
    ("requirements.txt", "flask==2.2.5\nrequests==2.31.0\n"),
    ("app.py", "from flask import Flask\nimport requests\napp = Flask(__name__)\n\n@app.route(\"/\")\ndef hello():\n    return \"hello v1\"\n\nif __name__ == \"__main__\":\n    app.run(host=\"0.0.0.0\", port=8080)\n"),
    ("apprunner.yaml", "version: 1.0\nruntime: python3\nruntime-version: 3.8.20\nbuild:\n  commands:\n    build:\n      - pip install -r requirements.txt\nrun:\n  command: python app.py\n  network:\n    port: 8080\n"),
];

/// The benchmark's Node.js app: Express and is-number, the revised build.
const NODE_APP: &[(&str, &str)] = &[
    ("package.json", "{\"name\":\"bench\",\"version\":\"1.0.0\",\"scripts\":{\"start\":\"node app.js\"},\"dependencies\":{\"express\":\"4.18.2\",\"is-number\":\"7.0.0\"}}\n"),
    ("app.js", "const express = require(\"express\");\nconst app = express();\napp.get(\"/\", (q, s) => s.send(\"hello v1\"));\napp.listen(process.env.PORT || 8080);\n"),
    ("apprunner.yaml", "version: 1.0\nruntime: nodejs18\nruntime-version: 18.20.8\nbuild:\n  commands:\n    build:\n      - npm install --omit=dev\nrun:\n  command: npm start\n  network:\n    port: 8080\n"),
];

/// The digest of the image manifest (this platform's) under the index `image` names.
async fn image_manifest(image: &str) -> apprunner_build::core::digest::Digest {
    let r = ImageRef::parse(image).unwrap();
    let index = Registry::new(Default::default(), vec![]).manifest_of(&r).await.unwrap().unwrap().index().unwrap();
    index.for_platform("linux", "amd64").unwrap().digest.clone()
}

/// Two builds of one commit, each running every step anew (no step from BuildKit's cache or the
/// fleet cache, empty package caches), push the same image manifest: every time in the layers
/// and the config is the commit's, Python's bytecode is checked by hash.
#[tokio::test]
async fn two_builds_from_nothing_of_one_commit_push_one_image_manifest() {
    for (name, files) in [("python", PYTHON_APP), ("node", NODE_APP)] {
        let dir = committed(files);
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let mut manifests = Vec::new();
        let mut images = Vec::new();
        for _ in 0..2 {
            let mut req = request(&format!("file://{}", dir.path().display()), "/", None, Some("main"));
            req.target = ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/repro-{name}-{marker}:1")).unwrap();
            let built = build_with(&Settings { no_cache: true, ..settings() }, req).await;
            assert!(!built.has_line("from this BuildKit's cache"), "{name}: a step came from a cache");
            manifests.push(image_manifest(built.image()).await);
            images.push(built.image().to_string());
        }
        assert_eq!(manifests[0], manifests[1], "{name}: one commit built twice from nothing");
        // The SBOM lists the app's packages as installed and the run image's OS packages.
        let (spdx, purls) = sbom_of(&images[0]);
        assert_eq!(spdx["spdxVersion"], "SPDX-2.3");
        assert!(spdx["name"].as_str().unwrap().ends_with(manifests[0].as_str()), "the SBOM is of the image manifest");
        let wanted: &[&str] = if name == "python" {
            &["pkg:pypi/flask@2.2.5", "pkg:pypi/requests@2.31.0", "pkg:pypi/werkzeug@"]
        } else {
            &["pkg:npm/express@4.18.2", "pkg:npm/is-number@7.0.0", "pkg:npm/body-parser@"]
        };
        for want in wanted.iter().chain(&["pkg:deb/debian/libc6@", "pkg:deb/debian/ca-certificates@"]) {
            assert!(purls.iter().any(|p| p.starts_with(want)), "{name}: {want} not in the SBOM: {purls:#?}");
        }
        assert!(purls.iter().any(|p| p.contains("?arch=amd64&distro=debian-12")), "{purls:#?}");
    }
}

/// With a signing key, every image pushed is signed: `cosign verify` passes with the public key,
/// and fails with another key, for an image pushed without the key, and for an image whose
/// signature was taken from another image. An image reused under a new index is signed too.
#[tokio::test]
async fn signed_images_verify_with_cosign_and_nothing_else_does() {
    let keys = key_pair();
    let other = key_pair();
    let signing = Settings { signer: Some(Signer::from_file(&keys.private).unwrap()), ..settings() };
    let dir = committed(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n"),
        ("marker.txt", &uuid::Uuid::new_v4().simple().to_string()),
    ]);
    let target =
        ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/signed-{}:1", uuid::Uuid::new_v4().simple())).unwrap();
    let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
    req.target = target.clone();
    let built = build_with(&signing, req.clone()).await;
    let signed = built.image().to_string();
    let fingerprint = Signer::from_file(&keys.private).unwrap().fingerprint;
    assert!(built.has_line(&format!("Image signed with key {fingerprint}")), "{:#?}", built.log);
    let key_text = std::fs::read_to_string(&keys.private).unwrap();
    let key_body = key_text.lines().nth(1).unwrap();
    assert!(!built.log.iter().any(|l| l.contains(key_body)), "the key is never in the log");
    cosign_verify(&signed, &keys.public).unwrap();
    assert!(cosign_verify(&signed, &other.public).is_err(), "another key verifies it");

    // Taken again under a new index (image reuse): that index is signed too.
    req.operation_id = apprunner_build::core::request::new_operation_id();
    let reused = build_with(&signing, req.clone()).await;
    assert!(reused.has_line("reused"), "{:#?}", reused.log);
    assert_ne!(reused.image(), signed);
    cosign_verify(reused.image(), &keys.public).unwrap();

    // Without the key: nothing signed, nothing verifies.
    req.operation_id = apprunner_build::core::request::new_operation_id();
    let unsigned = build_with(&settings(), req.clone()).await;
    let err = cosign_verify(unsigned.image(), &keys.public).unwrap_err();
    assert!(err.contains("no signatures found"), "{err}");

    // Tampered: the unsigned image given the signed one's signature manifest.
    let registry = Registry::new(Default::default(), vec![]);
    let repo = target.repo();
    let digest_of = |image: &str| ImageRef::parse(image).unwrap().digest.unwrap();
    let sig_tag = apprunner_build::core::cosign::signature_tag;
    let stolen = registry.manifest(&repo, &sig_tag(&digest_of(&signed))).await.unwrap().unwrap();
    registry
        .put_manifest(&repo, &sig_tag(&digest_of(unsigned.image())), &stolen.bytes, &stolen.media_type)
        .await
        .unwrap();
    // cosign's own reason: the signature is good, but what it signed is another image.
    let err = cosign_verify(unsigned.image(), &keys.public).expect_err("a signature of another image verifies it");
    let signed_digest = digest_of(&signed);
    assert!(err.contains(&format!("invalid or missing digest in claim: {signed_digest}")), "{err}");
}

/// `verify` builds an image again from what it records, every step anew, on the runtime images
/// it was built on: an image built here (with every cache warm) is confirmed; one whose build
/// writes a random value differs, and the verdict names the layer and the file; so does one
/// built from a working tree whose changes its commit does not hold.
#[tokio::test]
async fn verify_confirms_an_image_and_points_at_the_layer_that_differs() {
    use apprunner_build::pipeline::{verify, Overrides};
    let cases =
        [("echo built > /app/built.txt", true), ("head -c 16 /dev/urandom | od -An -tx1 > /app/stamp.txt", false)];
    for (command, reproducible) in cases {
        let yaml = format!("version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - {command}\nrun:\n  command: python3 -m http.server 8080\n");
        let marker = uuid::Uuid::new_v4().simple().to_string();
        let dir = committed(&[("apprunner.yaml", &yaml), ("marker.txt", &marker)]);
        let source = format!("file://{}", dir.path().display());
        let mut req = request(&source, "/", None, Some("main"));
        req.target = ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/verify-{marker}:1")).unwrap();
        let built = build_with(&settings(), req).await;
        let image = ImageRef::parse(built.image()).unwrap();
        let log = apprunner_build::log::DeploymentLog::new("verify", vec![]);
        let overrides = Overrides { source: Some(source.clone()), api_config: None, key: None };
        let verdict = verify(&settings(), &image, overrides, &log).await.unwrap();
        assert!(verdict.image.ends_with(image_manifest(built.image()).await.as_str()), "{verdict:#?}");
        if reproducible {
            assert!(verdict.differences.is_empty(), "{verdict:#?}");
            assert_eq!(verdict.image, verdict.rebuilt);
        } else {
            let lines = verdict.differences.join("\n");
            assert!(lines.contains("([packaging] copy /app from the build stage)"), "the layer and its step: {lines}");
            assert!(lines.contains("~ /app/stamp.txt: content"), "{lines}");
        }
    }

    // Changed inputs: built from a working tree with a change not committed, which the image's
    // commit does not hold.
    let yaml = "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n";
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = committed(&[("apprunner.yaml", yaml), ("marker.txt", &marker)]);
    std::fs::write(dir.path().join("marker.txt"), "changed, not committed").unwrap();
    let mut req = request(dir.path().to_str().unwrap(), "/", None, None);
    req.target = ImageRef::parse(&format!("127.0.0.1:5000/apprunner-tests/verify-{marker}:1")).unwrap();
    let built = build_with(&settings(), req).await;
    let image = ImageRef::parse(built.image()).unwrap();
    let log = apprunner_build::log::DeploymentLog::new("verify", vec![]);
    let overrides = Overrides { source: Some(format!("file://{}", dir.path().display())), api_config: None, key: None };
    let lines = verify(&settings(), &image, overrides, &log).await.unwrap().differences.join("\n");
    assert!(lines.contains("([packaging] copy /app from the build stage)"), "the app layer: {lines}");
    assert!(lines.contains("~ /app/marker.txt: content"), "{lines}");
}
