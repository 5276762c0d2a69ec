use super::*;
use crate::media_types::{DOCKER_LAYER_GZIP, OCI_CONFIG, OCI_LAYER_GZIP};
use crate::oci::Statement;
use serde_json::{json, Value};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
}

fn built(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    movable_labels(extra)
}

#[test]
fn only_a_revised_build_without_pre_run_moves_and_each_refusal_says_why() {
    let c = RuntimeCatalog::builtin();
    let ok = check("img", &built(&[]), c, "3.11.14").unwrap();
    assert_eq!(ok.from_version, "3.11.10");
    let refused = |l: BTreeMap<String, String>, to: &str| check("img", &l, c, to).unwrap_err().to_string();
    assert!(refused(built(&[(labels::PRE_RUN_COMMANDS, "2")]), "3.11.14").contains("ran 2 pre-run command(s)"));
    let mut unmarked = built(&[]);
    unmarked.remove(labels::PRE_RUN_COMMANDS);
    assert!(refused(unmarked, "3.11.14").contains("rebuild the service once"));
    assert!(refused(built(&[(labels::RUNTIME, "python3")]), "3.8.20").contains("original build"));
    assert!(refused(built(&[]), "3.12.1").contains("has no version 3.12.1; its versions are 3.11.14"));
    assert!(refused(built(&[(labels::RUNTIME_VERSION_LOCK, "3.11.10")]), "3.11.14")
        .contains("sets runtime-version 3.11.10, which 3.11.14 does not match"));
    check("img", &built(&[(labels::RUNTIME_VERSION_LOCK, "3.11")]), c, "3.11.14").unwrap();
    assert!(refused(labels(&[]), "3.11.14").contains("not built by apprunner-build"));
}

/// A digest named by a word, for a layer or image the test makes up.
fn d(name: &str) -> Digest {
    Digest::of(name.as_bytes())
}

fn typed<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn parts(layers: &[&str], env: &[&str], labels: &Value, history: usize) -> ImageParts {
    let hist: Vec<Value> = (0..history).map(|i| json!({"created_by": format!("step {i}")})).collect();
    ImageParts {
        manifest: typed(json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": d("c"), "size": 1},
            "layers": layers.iter().map(|l| json!({"mediaType": DOCKER_LAYER_GZIP, "digest": d(&format!("z{l}")), "size": 1})).collect::<Vec<_>>(),
        })),
        config: typed(json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": env, "Labels": labels.clone(), "Cmd": ["/bin/sh", "-c", "python app.py"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{l}")).collect::<Vec<_>>()},
            "history": hist,
        })),
    }
}

#[test]
fn the_run_image_is_swapped_under_the_app_layers_and_the_app_env_stays_on_top() {
    let old_run = parts(&["a", "b"], &["PATH=/usr/bin", "PY=3.11.10"], &json!({"vendor": "old"}), 2);
    let mut app_labels = built(&[(labels::RUN_ENV, "PORT,PY"), (labels::OPERATION_ID, "op")]);
    app_labels.insert("vendor".into(), "old".into());
    let old = parts(&["a", "b", "app"], &["PATH=/usr/bin", "PY=mine", "PORT=8080"], &json!(app_labels), 3);
    let new_run = RunImage {
        reference: "r/apprunner-runtimes/python311:3.11.14-run".into(),
        digest: d("bbbb"),
        parts: parts(&["a2", "b2", "c2"], &["PATH=/usr/bin", "PY=3.11.14", "NEW=1"], &json!({"vendor": "new"}), 3),
    };
    let from = check("img", &built(&[]), RuntimeCatalog::builtin(), "3.11.14").unwrap();
    let moved = rebase_image("img", &old, &d("old"), &from, &old_run, &new_run, "3.11.14").unwrap();
    let config: Value = serde_json::from_slice(&moved.config).unwrap();
    assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:a2", "sha256:b2", "sha256:c2", "sha256:app"]));
    assert_eq!(config["history"].as_array().unwrap().len(), 4);
    assert_eq!(config["config"]["Env"], json!(["PATH=/usr/bin", "PY=mine", "NEW=1", "PORT=8080"]));
    assert_eq!(config["config"]["Cmd"], json!(["/bin/sh", "-c", "python app.py"]));
    let written = &config["config"]["Labels"];
    assert_eq!(written["vendor"], "new");
    assert_eq!(written[labels::RUNTIME_VERSION], "3.11.14");
    assert_eq!(written[labels::OCI_BASE_DIGEST], d("bbbb").as_str());
    assert_eq!(written[labels::REBASED_FROM], d("old").as_str());
    assert_eq!(written[labels::REBASED_FROM_VERSION], "3.11.10");
    let manifest: Value = serde_json::from_slice(&moved.manifest).unwrap();
    assert_eq!(manifest["config"]["digest"], Digest::of(&moved.config).as_str());
    let types: Vec<&str> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert_eq!(types, [OCI_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_GZIP, DOCKER_LAYER_GZIP]);
    assert_eq!(moved.run_layers, [d("za2"), d("zb2"), d("zc2")]);
    assert_eq!(moved.app_layers, [d("zapp")]);
    // The same inputs give the same bytes.
    let again = rebase_image("img", &old, &d("old"), &from, &old_run, &new_run, "3.11.14").unwrap();
    assert_eq!(again.manifest, moved.manifest);

    let other_base = parts(&["x", "b"], &[], &json!({}), 2);
    let e = rebase_image("img", &old, &d("old"), &from, &other_base, &new_run, "3.11.14").unwrap_err();
    assert!(e.to_string().contains("layers do not start with those of the run image"), "{e}");

    let old_statement: Statement = serde_json::from_value(json!({
        "_type": "https://in-toto.io/Statement/v0.1", "predicateType": SLSA_V02,
        "subject": [{"name": "x", "digest": {"sha256": "old"}}],
        "predicate": {"materials": [{"uri": "pkg:docker/old", "digest": {"sha256": "a".repeat(64)}}, {"uri": "src", "digest": {"sha256": "s"}}], "metadata": {}},
    }))
    .unwrap();
    let typed =
        rebased_provenance(Some(&old_statement), "pkg:docker/img", &moved, &d("old"), &from, &new_run, "3.11.14");
    let statement = serde_json::to_value(&typed).unwrap();
    assert_eq!(statement["subject"][0]["digest"]["sha256"], moved.manifest_digest.hex());
    assert_eq!(statement["predicate"]["materials"][0]["digest"]["sha256"], d("bbbb").hex());
    assert_eq!(
        statement["predicate"]["materials"][0]["uri"],
        format!("pkg:docker/r/apprunner-runtimes/python311@3.11.14-run?digest={}&platform=linux%2Famd64", d("bbbb"))
    );
    assert_eq!(
        purl("127.0.0.1:5000/apps/web:v1", None),
        "pkg:docker/127.0.0.1%3A5000/apps/web@v1?platform=linux%2Famd64"
    );
    assert_eq!(statement["predicate"]["materials"][1]["uri"], "src");
    assert_eq!(statement["predicate"]["metadata"][REBASE_METADATA]["rebasedFrom"]["runtimeVersion"], "3.11.10");
    let att = attestation(&typed);
    let index: ImageIndex = serde_json::from_slice(&rebased_index(
        None,
        &Platform::new("linux", "amd64"),
        &moved,
        &att,
        &labels(&[(labels::OPERATION_ID, "op2")]),
    ))
    .unwrap();
    assert_eq!(index.attestation_of(&moved.manifest_digest).unwrap().digest, Digest::of(&att.manifest));
    assert_eq!(index.annotations()[labels::OPERATION_ID], "op2");
}
