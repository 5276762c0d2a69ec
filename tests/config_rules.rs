//! Every rejection of App Runner's rules and docs/configuration.md gives one line naming the key, and the
//! lenient cases of real files are accepted with a warning. Pure: no services involved.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used, clippy::format_collect, clippy::format_push_string)]

use apprunner_build::core::catalog::RuntimeCatalog;
use apprunner_build::core::config::{self, AppConfig};

const GOOD: &str =
    "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - pip install -r requirements.txt\nrun:\n  command: python server.py\n";

/// What a user reads of a refused configuration: the error's text.
#[derive(Debug)]
struct Shown(String);

impl std::ops::Deref for Shown {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn yaml(text: &str) -> Result<AppConfig, Shown> {
    config::from_yaml(text, "apprunner.yaml", RuntimeCatalog::builtin()).map_err(|e| Shown(e.to_string()))
}

fn rejected(text: &str) -> String {
    let e = yaml(text).expect_err("should be rejected");
    assert!(!e.contains('\n'), "error is not one line: {e}");
    e.0
}

fn api(json: &str) -> Result<AppConfig, Shown> {
    config::from_api(&serde_json::from_str(json).unwrap(), RuntimeCatalog::builtin()).map_err(|e| Shown(e.to_string()))
}

#[test]
fn minimal_file_gets_the_defaults() {
    let c = yaml(GOOD).unwrap();
    assert_eq!((c.port, c.port_env.as_deref(), c.runtime_version.as_deref()), (8080, None, None));
    assert!(c.warnings.is_empty());
}

#[test]
fn required_keys() {
    for (key, text) in [
        ("version", GOOD.replace("version: 1.0\n", "")),
        ("runtime", GOOD.replace("runtime: python3\n", "")),
        (
            "build.commands.build",
            GOOD.replace("    build:\n      - pip install -r requirements.txt\n", "    pre-build:\n      - echo\n"),
        ),
        ("run.command", GOOD.replace("  command: python server.py\n", "  network:\n    port: 80\n")),
        ("build", "version: 1.0\nruntime: python3\nrun:\n  command: x\n".to_string()),
    ] {
        let e = rejected(&text);
        assert!(e.contains(&format!("{key}:")), "{key}: {e}");
    }
}

/// docs/configuration.md B3: `PORT` among the variables is accepted with a warning (App Runner ran such
/// services); the image's PORT is the network port.
#[test]
fn port_among_the_variables_is_a_warning() {
    let c = yaml(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  env:\n    - name: PORT\n      value: \"80\"\n",
    ))
    .unwrap();
    assert!(
        c.warnings[0].starts_with(
            "apprunner.yaml:10:13: run.env[0].name: `PORT` is set by App Runner to the port (8080), not to `80`"
        ),
        "{:?}",
        c.warnings
    );
    let c = yaml(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  network:\n    port: 8000\n  env:\n    - name: PORT\n      value: \"8000\"\n",
    ))
    .unwrap();
    assert!(c.warnings[0].contains("this line changes nothing and can go"), "{:?}", c.warnings);
    let c = yaml(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  secrets:\n    - name: PORT\n      value-from: p\n",
    ))
    .unwrap();
    assert!(c.warnings[0].contains("run.secrets[0].name: `PORT` is set by App Runner"), "{:?}", c.warnings);
    let c = api(
        r#"{"Runtime":"PYTHON_3","BuildCommand":"b","StartCommand":"s","RuntimeEnvironmentVariables":{"PORT":"1"}}"#,
    )
    .unwrap();
    assert!(
        c.warnings[0]
            .starts_with("RuntimeEnvironmentVariables: `PORT` is set by App Runner to the port (8080), not to `1`"),
        "{:?}",
        c.warnings
    );
    let c =
        api(r#"{"Runtime":"PYTHON_3","BuildCommand":"b","StartCommand":"s","RuntimeEnvironmentSecrets":{"PORT":"p"}}"#)
            .unwrap();
    assert!(c.warnings[0].starts_with("RuntimeEnvironmentSecrets: `PORT` is set by App Runner"), "{:?}", c.warnings);
}

/// docs/configuration.md B4: names as App Runner takes them; one a shell cannot use is a warning.
#[test]
fn unusual_variable_names_are_warnings() {
    let c = yaml(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  secrets:\n    - name: myapp/env\n      value-from: p\n",
    ))
    .unwrap();
    assert!(
        c.warnings[0].contains("run.secrets[0].name: `myapp/env` is not a name a shell can use"),
        "{:?}",
        c.warnings
    );
    let c = yaml(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  env:\n    - name: 1st.value\n      value: x\n",
    ))
    .unwrap();
    assert!(c.warnings[0].contains("run.env[0].name: `1st.value` is not a name a shell can use"), "{:?}", c.warnings);
    let e = rejected(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  env:\n    - name: A=B\n      value: x\n",
    ));
    assert!(e.contains("`A=B` is not an environment variable name; a name is not empty and has no `=` or NUL"), "{e}");
}

#[test]
fn pre_run_needs_the_revised_build() {
    let e = rejected(&GOOD.replace("  command:", "  pre-run:\n    - pip install x\n  command:"));
    assert!(e.contains("run.pre-run: pre-run is only for runtimes with the revised build"), "{e}");
    assert!(yaml(
        &GOOD.replace("python3", "python311").replace("  command:", "  pre-run:\n    - pip3 install x\n  command:")
    )
    .is_ok());
}

#[test]
fn runtime_versions() {
    let e = rejected(&GOOD.replace("  command:", "  runtime-version: 3.7.7\n  command:"));
    assert!(e.contains("run.runtime-version") && e.contains("listed: 3.7.16, 3.7.15, 3.7.10"), "{e}");
    let e = rejected(&GOOD.replace("  command:", "  runtime-version: 3.11\n  command:"));
    assert!(e.contains("belongs to runtime `python311`"), "{e}");
    // 3.10 must not become the float 3.1.
    let c =
        yaml(&GOOD.replace("python3\n", "python311\n").replace("  command:", "  runtime-version: 3.11\n  command:"))
            .unwrap();
    assert_eq!(c.runtime_version.as_deref(), Some("3.11"));
    let e = rejected(&GOOD.replace("  command:", "  runtime-version: 3.10\n  command:"));
    assert!(e.contains("`3.10`"), "{e}");
}

#[test]
fn runtime_names() {
    let e = rejected(&GOOD.replace("runtime: python3", "runtime: python3.11"));
    assert!(
        e.contains("runtime: `python3.11` is not a managed runtime") && e.contains("did you mean `python311`?"),
        "{e}"
    );
    assert_eq!(yaml(&GOOD.replace("runtime: python3", "runtime: ' PYTHON_3 '")).unwrap().runtime, "python3");
}

#[test]
fn ports_and_names() {
    let e = rejected(
        &GOOD.replace("  command: python server.py\n", "  command: python server.py\n  network:\n    port: 80a\n"),
    );
    assert!(e.contains("run.network.port: `80a` is not a port number; expected an integer from 1 to 65535"), "{e}");
    let e = rejected(
        &GOOD.replace("  command: python server.py\n", "  command: python server.py\n  network:\n    port: 70000\n"),
    );
    assert!(e.contains("70000"), "{e}");
    let c = yaml(&GOOD.replace(
        "  command: python server.py\n",
        "  command: python server.py\n  network:\n    port: \"8000\"\n    env: APP_PORT\n",
    ))
    .unwrap();
    assert_eq!((c.port, c.port_env.as_deref()), (8000, Some("APP_PORT")));
    let e = api(r#"{"Runtime":"PYTHON_3","BuildCommand":"b","StartCommand":"s","Port":"http"}"#).unwrap_err();
    assert!(e.starts_with("Port: `http` is not a port number"), "{e}");
}

#[test]
fn secrets_are_references_of_three_forms() {
    let with = |v: &str| {
        GOOD.replace(
            "  command: python server.py\n",
            &format!("  command: python server.py\n  secrets:\n    - name: S\n      value-from: \"{v}\"\n"),
        )
    };
    for ok in [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:name:username::",
        "arn:aws:ssm:us-east-1:123456789012:parameter/name",
        "parameter-name",
    ] {
        assert!(yaml(&with(ok)).is_ok(), "{ok}");
    }
    let e = rejected(&with("arn:aws:s3:::bucket"));
    assert!(e.contains("run.secrets[0].value-from") && e.contains("expected a Secrets Manager secret ARN"), "{e}");
    let e = rejected(&with("has space"));
    assert!(e.contains("is not a valid reference"), "{e}");
}

#[test]
fn yaml_that_is_not_a_configuration() {
    let e = rejected("<<<<<<< HEAD\nversion: 1.0\n=======\n");
    assert!(e.starts_with("apprunner.yaml:"), "{e}");
    let e = rejected("# Deploying\n\nSome *markdown* text.\n");
    assert!(e.contains("expected a mapping"), "{e}");
    let e = rejected(&GOOD.replace("runtime: python3", "runtime: !Ref Runtime"));
    assert!(e.contains("YAML tag `!Ref`"), "{e}");
    let e = rejected(&GOOD.replace("- pip install -r requirements.txt", "- echo a: b"));
    assert!(e.contains("apprunner.yaml:6:9: build.commands.build[0]") && e.contains("quote the whole command"), "{e}");
    let e = rejected("");
    assert!(e.contains("the file is empty"), "{e}");
}

#[test]
fn lenient_where_real_files_are_messy() {
    let c = yaml(&format!("\u{feff}{}", GOOD.replace('\n', "\r\n"))).unwrap();
    assert!(c.warnings.is_empty());
    let c = yaml(
        &GOOD.replace("    pre_build", "").replace("  commands:\n", "  commands:\n    pre_build:\n      - echo hi\n"),
    )
    .unwrap();
    assert!(
        c.warnings[0]
            .contains("unknown key `build.commands.pre_build` is ignored; did you mean `build.commands.pre-build`?"),
        "{:?}",
        c.warnings
    );
    let c =
        yaml(&GOOD.replace("  command: python server.py\n", "  command: python server.py\n  port: 8000\n")).unwrap();
    assert!(c.warnings[0].contains("did you mean `run.network.port`?"), "{:?}", c.warnings);
    let c = yaml(
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    - pip install x\nrun:\n  command: python a.py\n",
    )
    .unwrap();
    assert_eq!(c.build, ["pip install x"]);
    assert!(c.warnings[0].contains("plain list"), "{:?}", c.warnings);
    let c = yaml(&GOOD.replace("version: 1.0", "version: 2.0")).unwrap();
    assert!(c.warnings[0].contains("version `2.0`"), "{:?}", c.warnings);
    assert!(yaml(&GOOD.replace("version: 1.0", "version: \"1.0\"")).unwrap().warnings.is_empty());
    assert!(yaml(&GOOD.replace("version: 1.0", "version: 1")).unwrap().warnings.is_empty());
}

#[test]
fn api_values() {
    let c = api(r#"{"Runtime":"PYTHON_3","BuildCommand":"pip install -r requirements.txt","StartCommand":"python server.py","Port":"8080","RuntimeEnvironmentVariables":[{"NAME":"Jane"}]}"#).unwrap();
    assert_eq!((c.runtime.as_str(), c.build.len(), c.run_env[0].value.as_str()), ("python3", 1, "Jane"));
    let c = api(r#"{"CodeConfigurationValues":{"runtime":"python3","buildCommand":"b","startCommand":"s"}}"#).unwrap();
    assert_eq!(c.port, 8080);
    let e = api(r#"{"Runtime":"PYTHON_3","StartCommand":"s"}"#).unwrap_err();
    assert!(e.starts_with("BuildCommand: required field is missing"), "{e}");
    let e = api(r#"{"Runtime":"COBOL_85","BuildCommand":"b","StartCommand":"s"}"#).unwrap_err();
    assert!(e.starts_with("Runtime: `COBOL_85` is not a managed runtime"), "{e}");
}

/// Hostile or careless inputs cost little and get one line that names the limit.
#[test]
fn limits_are_enforced_quickly_in_one_line_each() {
    let started = std::time::Instant::now();
    // A "billion laughs" file: nine levels of ten aliases, a few hundred bytes.
    let mut bomb = String::from("version: 1.0\nruntime: python3\nx0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..10 {
        bomb.push_str(&format!("x{i}: &x{i} [{}]\n", vec![format!("*x{}", i - 1); 10].join(", ")));
    }
    assert!(rejected(&bomb).contains("more than 20000 values once its aliases are expanded"));
    let big = format!("{GOOD}# {}\n", "x".repeat(300 * 1024));
    assert!(rejected(&big).contains("may have at most 262144"));
    let many: String = (0..2000).map(|i| format!("      - echo {i}\n")).collect();
    let e = rejected(&GOOD.replace("      - pip install -r requirements.txt\n", &many));
    assert!(e.contains("build.commands.build: 2000 commands; a phase may have at most 1000"), "{e}");
    let e = rejected(&GOOD.replace("runtime: python3", &format!("runtime: {}", "p".repeat(200 * 1024))));
    assert!(e.contains("runtime: the value is 204800 bytes; at most 65536 are accepted"), "{e}");
    let e = rejected(&GOOD.replace("runtime: python3", &format!("runtime: {}", "p".repeat(60 * 1024))));
    assert!(e.contains("is not a managed runtime") && e.len() < 1000, "{e}");
    let e = rejected(&GOOD.replace("runtime: python3", "runtime: \"py\\e[31mthon\""));
    assert!(e.contains("py\\u{1b}[31mthon"), "{e}");
    let unknown: String = (0..5000).map(|i| format!("extra{i}: 1\n")).collect();
    let c = yaml(&format!("{GOOD}{unknown}")).unwrap();
    assert_eq!(c.warnings.len(), 101);
    assert!(c.warnings[100].contains("and 4900 more warnings"), "{:?}", c.warnings.last());
    let e = api(&format!(
        r#"{{"Runtime":"PYTHON_3","BuildCommand":[{}],"StartCommand":"s"}}"#,
        vec!["\"b\""; 1001].join(",")
    ))
    .unwrap_err();
    assert!(e.contains("1001 commands; at most 1000"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

/// Messages that used to mislead (issue 9): each now says what is wrong and what to write.
#[test]
fn messages_say_what_to_write() {
    let e = rejected(&GOOD.replace("- pip install -r requirements.txt", "- echo \"a: b\""));
    assert!(e.contains("quote the whole command, e.g. - 'echo \"a: b\"'"), "{e}");
    let quoted = GOOD.replace("- pip install -r requirements.txt", "- 'echo \"a: b\"'");
    assert_eq!(yaml(&quoted).unwrap().build, ["echo \"a: b\""], "the suggestion reads back as the command");
    let e = rejected(&format!("<<<<<<< HEAD\n{GOOD}=======\n{GOOD}>>>>>>> feature\n"));
    assert!(e.starts_with("apprunner.yaml:1:1: the file has an unresolved merge conflict (`<<<<<<<`)"), "{e}");
    let e = rejected(&GOOD.replace("runtime: python3\n", "").replace("run:\n", "run:\n  runtime: python3\n"));
    assert!(e.contains("runtime: `runtime` is under `run:`; it belongs at the top level"), "{e}");
    let c = yaml(&GOOD.replace("      - pip install -r requirements.txt", "      – pip install -r requirements.txt"))
        .unwrap();
    assert!(c.warnings.iter().any(|w| w.contains("starts with a dash that is not a hyphen")), "{:?}", c.warnings);
}

/// docs/configuration.md B5: every problem in one run, one per line in file order, the first line
/// saying how many.
#[test]
fn every_problem_in_one_run() {
    let text = "version: 1.0\nruntime: python3.11\nbuild:\n  commands:\n    build:\n      - echo a: b\nrun:\n  runtime-version: 3.7.7\n  command: python app.py\n  network:\n    port: http\n";
    let e = yaml(text).unwrap_err();
    let lines: Vec<&str> = e.lines().collect();
    // The runtime is wrong, so its version is not checked against it.
    assert_eq!(lines[0], "apprunner.yaml: 3 problems, one per line:", "{e}");
    assert!(lines[1].starts_with("apprunner.yaml:2:10: runtime: `python3.11` is not a managed runtime"), "{e}");
    assert!(
        lines[2].starts_with("apprunner.yaml:6:9: build.commands.build[0]: YAML read this command as a mapping"),
        "{e}"
    );
    assert!(lines[3].starts_with("apprunner.yaml:11:11: run.network.port: `http` is not a port number"), "{e}");
    assert_eq!(lines.len(), 4);
    let e = yaml(&text.replace("python3.11", "python3")).unwrap_err();
    assert!(
        e.starts_with("apprunner.yaml: 3 problems") && e.contains("apprunner.yaml:8:20: run.runtime-version: "),
        "{e}"
    );
}
