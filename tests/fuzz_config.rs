//! A short fuzz run of the YAML reader and both configuration readers (proptest), run by CI
//! with every `cargo test`: whatever the input, no panic, one line per problem, bounded time.
//! `PROPTEST_CASES=100000 cargo test --release --test fuzz_config` runs a longer one.
#![allow(clippy::unwrap_used)]

use apprunner_build::core::catalog::RuntimeCatalog;
use apprunner_build::core::config;
use proptest::prelude::*;
use std::time::{Duration, Instant};

const GOOD: &str = "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    pre-build:\n      - echo pre\n    build:\n      - pip install -r requirements.txt\n  env:\n    - name: A\n      value: b\nrun:\n  runtime-version: 3.8\n  command: python server.py\n  network:\n    port: 8000\n    env: APP_PORT\n  env:\n    - name: X\n      value: y\n  secrets:\n    - name: S\n      value-from: parameter-name\n";

fn check_yaml(text: &str) {
    let started = Instant::now();
    if let Err(errors) = config::from_yaml(text, "apprunner.yaml", RuntimeCatalog::builtin()) {
        // One line per problem, each naming the file; as a build error, one line in all.
        let e = errors.to_string();
        assert!(!e.contains('\r') && e.lines().all(|l| l.starts_with("apprunner.yaml")), "{e:?}");
        assert_eq!(e.lines().count(), if errors.0.len() == 1 { 1 } else { errors.0.len() + 1 }, "{e:?}");
        let build_error = apprunner_build::error::BuildError::from(errors);
        assert!(!build_error.message.contains('\n'), "{:?}", build_error.message);
    }
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

/// Text made of the characters YAML gives meaning to, and some it does not.
fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(": ".to_string()),
            Just("- ".to_string()),
            Just("\n".to_string()),
            Just("  ".to_string()),
            Just("&a ".to_string()),
            Just("*a".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("\"".to_string()),
            Just("'".to_string()),
            Just("!Ref ".to_string()),
            Just("<<: ".to_string()),
            Just("version".to_string()),
            Just("run".to_string()),
            Just("build".to_string()),
            Just("commands".to_string()),
            "[a-z0-9._\\-]{1,8}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..200,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    // 1500 cases each in every `cargo test`; PROPTEST_CASES sets another number.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_read_or_refused_in_one_line(text in yamlish()) {
        check_yaml(&text);
    }

    #[test]
    fn a_good_file_with_any_change_is_read_or_refused_in_one_line(at in 0..GOOD.len(), cut in 0..8usize, insert in yamlish()) {
        let at = (0..=at).rev().find(|i| GOOD.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + cut).min(GOOD.len());
        let end = (end..=GOOD.len()).find(|i| GOOD.is_char_boundary(*i)).unwrap_or(GOOD.len());
        check_yaml(&format!("{}{insert}{}", &GOOD[..at], &GOOD[end..]));
    }

    #[test]
    fn any_api_values_are_read_or_refused_in_one_line(json in arb_json()) {
        if let Err(e) = config::from_api(&json, RuntimeCatalog::builtin()) {
            let e = e.to_string();
            prop_assert!(!e.contains('\n'), "not one line: {:?}", e);
        }
    }
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        "(PYTHON_3|python3|nodejs18|[a-zA-Z0-9 _:\\n-]{0,12})".prop_map(serde_json::Value::String),
    ];
    let keys = "(Runtime|BuildCommand|StartCommand|Port|RuntimeEnvironmentVariables|RuntimeEnvironmentSecrets|CodeConfigurationValues|[a-zA-Z]{1,6})";
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
