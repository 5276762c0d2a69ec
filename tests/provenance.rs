//! The worker's signed provenance and SBOM (#38), checked by Debian's cosign 2.5: a build's SLSA
//! v1 provenance and SBOM verify with the public key and name what was built from what; another
//! key, an envelope changed by one byte, or a statement about another image does not verify, for
//! cosign's own reason; an image taken again or redeployed keeps a provenance that verifies; the
//! key never reaches a build; `verify --key` rebuilds from the signed provenance and refuses an
//! image whose does not verify.
#![allow(clippy::unwrap_used)]

mod common;
use apprunner_build::core::cosign::attestation_tag;
use apprunner_build::core::image_ref::ImageRef;
use apprunner_build::core::media_types::OCI_MANIFEST;
use apprunner_build::core::oci;
use apprunner_build::edge::registry::Registry;
use apprunner_build::edge::signing::{PublicKey, Signer};
use apprunner_build::log::{DeploymentLog, MemorySink};
use apprunner_build::pipeline::{self, Overrides, Settings};
use common::*;
use std::sync::Arc;

const SLSA: &str = "slsaprovenance1";
const SPDX: &str = "spdxjson";

fn signing(keys: &KeyPair) -> Settings {
    Settings { signer: Some(Signer::from_file(&keys.private).unwrap()), ..settings() }
}

fn python_app(marker: &str) -> tempfile::TempDir {
    committed(&[
        ("apprunner.yaml", "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - echo built > /app/built.txt\nrun:\n  command: python3 -m http.server 8080\n  network:\n    port: 8080\n"),
        ("marker.txt", marker),
    ])
}

/// Changes one byte of the envelope of `image`'s attestation of `predicate_type`: one character
/// of its payload, inside the base64, so the envelope is still well formed.
async fn change_one_byte(image: &str, predicate_type: &str) {
    let r = ImageRef::parse(image).unwrap();
    let (registry, at) = (Registry::new(Default::default(), vec![]), r.repo());
    let tag = attestation_tag(r.digest.as_ref().unwrap());
    let mut manifest = registry.manifest(&at, &tag).await.unwrap().unwrap().image().unwrap();
    let layer = manifest.layers.iter_mut().find(|l| l.annotation("predicateType") == Some(predicate_type)).unwrap();
    let mut envelope = registry.blob(&at, &layer.digest).await.unwrap();
    let at_payload = String::from_utf8_lossy(&envelope).find("\"payload\":\"").unwrap() + 40;
    envelope[at_payload] = if envelope[at_payload] == b'A' { b'B' } else { b'A' };
    registry.put_blob(&at, &envelope).await.unwrap();
    let changed = oci::Descriptor::of(&layer.media_type, &envelope);
    (layer.digest, layer.size) = (changed.digest, changed.size);
    registry.put_manifest(&at, &tag, &oci::to_bytes(&manifest), OCI_MANIFEST).await.unwrap();
}

#[tokio::test]
async fn signed_provenance_and_sbom_verify_with_cosign_and_nothing_else_does() {
    let (keys, other) = (key_pair(), key_pair());
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = python_app(&marker);
    let url = format!("file://{}", dir.path().display());
    let repository = format!("127.0.0.1:5000/apprunner-tests/attested-{marker}");
    let req = deployment(&url, &repository, None);
    let first_target = req.target.clone();
    let first_operation = req.operation_id.clone();
    let first = build_with(&signing(&keys), req).await;
    let image = first.image().to_string();
    assert!(first.has_line("Image provenance and SBOM signed with key SHA256:"), "{:#?}", first.log);

    let statement = cosign_verify_attestation(&image, &keys.public, SLSA).unwrap();
    let index = ImageRef::parse(&image).unwrap().digest.unwrap();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], index.hex(), "about the index the deployment reports");
    let p = &statement["predicate"];
    let d = &p["buildDefinition"];
    assert_eq!(d["buildType"], "https://apprunner-build.dev/buildtypes/source/v1");
    let result = first.result.as_ref().unwrap();
    let commit = result.commit.clone().unwrap();
    assert_eq!(d["externalParameters"]["commit"], commit.as_str());
    assert_eq!(d["externalParameters"]["repository"], url.as_str());
    assert_eq!(d["externalParameters"]["configuration"]["source"], "REPOSITORY");
    let yaml = std::fs::read(dir.path().join("apprunner.yaml")).unwrap();
    assert_eq!(
        d["externalParameters"]["configuration"]["digest"]["sha256"],
        apprunner_build::core::digest::Digest::of(&yaml).hex()
    );
    assert_eq!(d["internalParameters"]["buildProcess"], "revised");
    assert_eq!(d["internalParameters"]["runtimeVersion"], result.runtime_version.as_str());
    let deps = d["resolvedDependencies"].as_array().unwrap();
    assert_eq!(deps[0]["digest"]["gitCommit"], commit.as_str());
    // The runtime images by the digests their tags name in the registry.
    let registry = Registry::new(Default::default(), vec![]);
    for (name, tag) in [("runtime build image", "build"), ("runtime run image", "run")] {
        let dep = deps.iter().find(|x| x["name"] == name).unwrap_or_else(|| panic!("{name}: {deps:#?}"));
        let r =
            ImageRef::parse(&format!("127.0.0.1:5000/apprunner-runtimes/python311:{}-{tag}", result.runtime_version))
                .unwrap();
        let now = registry.manifest_of(&r).await.unwrap().unwrap().digest;
        assert_eq!(dep["digest"]["sha256"], now.hex(), "{name}");
    }
    assert!(deps.iter().any(|x| x["name"] == "source"), "{deps:#?}");
    assert_eq!(p["runDetails"]["builder"]["id"], "https://apprunner-build.dev/worker@v0.1.0");
    assert_eq!(p["runDetails"]["metadata"]["invocationId"], first_operation.as_str());
    let sbom = cosign_verify_attestation(&image, &keys.public, SPDX).unwrap();
    assert_eq!(sbom["subject"][0]["digest"]["sha256"], index.hex());
    assert_eq!(sbom["predicate"]["spdxVersion"], "SPDX-2.3");

    // Another key: cosign finds no attestation it accepts.
    let err = cosign_verify_attestation(&image, &other.public, SLSA).unwrap_err();
    assert!(
        err.contains("no matching attestations: accepted signatures do not match threshold, Found: 0, Expected 1"),
        "{err}"
    );

    // Taken again under a new index, then redeployed unchanged: each index has a provenance of
    // its own that verifies, naming its own deployment.
    let redeploy = deployment(&url, &repository, Some(&first));
    let redeploy_operation = redeploy.operation_id.clone();
    let again = build_with(&signing(&keys), redeploy).await;
    assert!(again.has_line("was built from these exact inputs"), "{:#?}", again.log);
    let carried = cosign_verify_attestation(again.image(), &keys.public, SLSA).unwrap();
    assert_eq!(carried["predicate"]["buildDefinition"], *d, "the same build");
    assert_eq!(carried["predicate"]["runDetails"]["metadata"]["invocationId"], redeploy_operation.as_str());
    // A new deployment to the first one's tag takes the image there (image reuse).
    let mut reuse = deployment(&url, &repository, None);
    reuse.target = first_target;
    let reused = build_with(&signing(&keys), reuse).await;
    assert!(reused.has_line("reused under a new index"), "{:#?}", reused.log);
    let taken = cosign_verify_attestation(reused.image(), &keys.public, SLSA).unwrap();
    assert_eq!(taken["predicate"]["buildDefinition"]["externalParameters"]["commit"], commit.as_str());
    cosign_verify_attestation(reused.image(), &keys.public, SPDX).unwrap();

    // The first image's attestations given to the reused one: signed by the key, but about
    // another image, which cosign and verify both see.
    let (at, of) = (ImageRef::parse(&image).unwrap(), |i: &str| ImageRef::parse(i).unwrap().digest.unwrap());
    let moved = registry.manifest(&at.repo(), &attestation_tag(&of(&image))).await.unwrap().unwrap();
    let to = attestation_tag(&of(reused.image()));
    registry.put_manifest(&at.repo(), &to, &moved.bytes, &moved.media_type).await.unwrap();
    let err = cosign_verify_attestation(reused.image(), &keys.public, SLSA).unwrap_err();
    assert!(err.contains("no matching attestations: no matching subject digest found"), "{err}");
    let public = PublicKey::from_file(&keys.public).unwrap();
    let refused = verify_with_key(reused.image(), public).await.unwrap_err().to_string();
    assert!(
        refused.contains("statement signed by key SHA256:") && refused.contains("is about another image"),
        "{refused}"
    );

    // One byte of the provenance's envelope changed: it no longer verifies (cosign skips it and
    // finds no provenance), while the SBOM beside it still does.
    change_one_byte(&image, "https://slsa.dev/provenance/v1").await;
    let err = cosign_verify_attestation(&image, &keys.public, SLSA).unwrap_err();
    assert!(err.contains("none of the attestations matched the predicate type: slsaprovenance1"), "{err}");
    cosign_verify_attestation(&image, &keys.public, SPDX).unwrap();
    // And verify refuses it, in one line saying so.
    let public = PublicKey::from_file(&keys.public).unwrap();
    let refused = verify_with_key(&image, public).await.unwrap_err().to_string();
    assert!(
        refused.contains("its provenance does not verify with key SHA256:")
            && refused.contains("no https://slsa.dev/provenance/v1 statement in its attestations is signed by key"),
        "{refused}"
    );
    assert_eq!(refused.lines().count(), 1, "{refused}");
}

async fn verify_with_key(image: &str, key: PublicKey) -> Result<pipeline::Verdict, apprunner_build::error::BuildError> {
    let sink = MemorySink::default();
    let log = DeploymentLog::new("verify", vec![Arc::new(sink.clone())]);
    let overrides = Overrides { key: Some(key), ..Overrides::default() };
    pipeline::verify(&settings(), &ImageRef::parse(image).unwrap(), overrides, &log).await
}

/// `verify --key` checks the signatures first, then rebuilds from the signed provenance, not
/// from labels: an image signed by another key is refused, and the rebuild of a signed image is
/// the same image.
#[tokio::test]
async fn verify_with_a_key_rebuilds_from_the_signed_provenance() {
    let (keys, other) = (key_pair(), key_pair());
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = python_app(&marker);
    let url = format!("file://{}", dir.path().display());
    let built =
        build_with(&signing(&keys), deployment(&url, &format!("127.0.0.1:5000/apprunner-tests/vkey-{marker}"), None))
            .await;
    let image = built.image().to_string();

    let verdict = verify_with_key(&image, PublicKey::from_file(&keys.public).unwrap()).await.unwrap();
    assert!(verdict.differences.is_empty(), "{:#?}", verdict.differences);
    assert_eq!(verdict.signed_by.as_deref(), Some(Signer::from_file(&keys.private).unwrap().fingerprint.as_str()));

    let refused = verify_with_key(&image, PublicKey::from_file(&other.public).unwrap()).await.unwrap_err().to_string();
    assert!(refused.contains("is not signed by key SHA256:"), "{refused}");
    // An image pushed without a key has nothing to check.
    let unsigned =
        build_with(&settings(), deployment(&url, &format!("127.0.0.1:5000/apprunner-tests/vkey-{marker}"), None)).await;
    let refused = verify_with_key(unsigned.image(), PublicKey::from_file(&keys.public).unwrap()).await.unwrap_err();
    assert!(refused.to_string().contains("is not signed by key"), "{refused}");
}

/// The key stays out of the build: a build command that searches its environment and every
/// file it can see for the key's bytes and the key file's name finds neither, and neither is in
/// the LLB, the log, the image's config or the signed provenance.
#[tokio::test]
async fn the_signing_key_never_reaches_a_build() {
    let keys = key_pair();
    let pem = std::fs::read_to_string(&keys.private).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let secret = &body[body.len() - 40..];
    let dir_name = keys.dir.path().file_name().unwrap().to_str().unwrap().to_string();
    // Each needle split in two, so the command's own text does not hold it. grep's status says
    // little (2 when any file could not be read, found or not): what it lists is the answer.
    let (s1, s2) = secret.split_at(20);
    let (p1, p2) = dir_name.split_at(dir_name.len() / 2);
    let search = format!(
        "k=\"{s1}\"\"{s2}\"; p=\"{p1}\"\"{p2}\"; if env | grep -qF -e \"$k\" -e \"$p\"; then echo KEY-IN-ENV; exit 1; fi; found=$(grep -rlsF -e \"$k\" -e \"$p\" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev); if [ -n \"$found\" ]; then echo KEY-ON-DISK $found; exit 1; fi; echo searched-found-nothing"
    );
    let yaml = format!(
        "version: 1.0\nruntime: python311\nbuild:\n  commands:\n    build:\n      - '{}'\nrun:\n  command: python3 -m http.server 8080\n",
        search.replace('\'', "''")
    );
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let dir = committed(&[("apprunner.yaml", &yaml), ("marker.txt", &marker)]);
    let url = format!("file://{}", dir.path().display());
    let settings = signing(&keys);
    let req = deployment(&url, &format!("127.0.0.1:5000/apprunner-tests/keyless-{marker}"), None);

    let sink = MemorySink::default();
    let log = DeploymentLog::new("plan", vec![Arc::new(sink.clone())]);
    let prepared = pipeline::prepare(&settings, &req, pipeline::ImageLookup::Offline, &log).await.unwrap();
    let solves = &prepared.solves;
    for llb in std::iter::once(&solves.image).chain(&solves.post_build).chain(solves.warm.iter().map(|(_, l)| l)) {
        let bytes = String::from_utf8_lossy(&llb.bytes);
        assert!(!bytes.contains(secret) && !bytes.contains(&dir_name), "the key is in the LLB");
    }

    let built = build_with(&settings, req).await;
    assert!(built.has_line("searched-found-nothing"), "{:#?}", built.log);
    let everything = built.log.join("\n");
    assert!(!everything.contains(secret) && !everything.contains(&dir_name), "the key is in the log");
    let config = in_image(built.image(), "cat /proc/self/environ | tr '\\0' '\\n'");
    assert!(!config.contains(secret) && !config.contains(&dir_name), "the key is in the image's environment");
    let statement = cosign_verify_attestation(built.image(), &keys.public, SLSA).unwrap().to_string();
    assert!(!statement.contains(secret) && !statement.contains(&dir_name), "the key is in the provenance");
}
