//! The manual stays true to the binary: every `--flag` that README.md and docs/ name is one
//! that `apprunner-build` takes (or one of the few other tools' flags they quote, each listed
//! here with its tool), and every `APPRUNNER_*` setting they name is read by the binary or by
//! the docker/ script that says so. README.md stays a front page: at most 200 lines.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const COMMANDS: &[&str] = &[
    "plan",
    "build",
    "runtimes",
    "worker",
    "submit",
    "rebuild-failed",
    "rebase",
    "roll-out",
    "status",
    "history",
    "cancel",
    "verify",
    "watch",
];

/// Flags of other tools that the docs quote, with the tool.
const OTHER_TOOLS: &[(&str, &[&str])] = &[
    (
        "cargo",
        &[
            "--release",
            "--examples",
            "--example",
            "--test",
            "--locked",
            "--all-targets",
            "--check",
            "--ignored",
            "--nocapture",
        ],
    ),
    ("docker buildx imagetools inspect", &["--format"]),
    ("cosign verify", &["--key", "--insecure-ignore-tlog", "--allow-http-registry"]),
    ("cosign verify-attestation", &["--type"]),
    ("kubernetes-validate", &["--strict"]),
    (
        "kubectl create secret",
        &["--from-literal", "--from-file", "--docker-server", "--docker-username", "--docker-password"],
    ),
    ("debootstrap", &["--variant"]),
    ("git fetch", &["--filter"]),
    ("npm install", &["--production"]),
    ("target/release/examples/chaos", &["--minutes", "--seed"]),
];

fn top() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn manual() -> Vec<(PathBuf, String)> {
    let mut files = vec![top().join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(top().join("docs")).unwrap().map(|e| e.unwrap().path()).collect();
    docs.sort();
    files.extend(docs.into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")));
    files.into_iter().map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap())).collect()
}

/// Every `prefix…` word in `text` made of `[A-Za-z0-9_-]` after the prefix, not glued to a word
/// before it.
fn words(text: &str, prefix: &str, part: fn(char) -> bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        if text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            continue;
        }
        let rest: String = text[at + prefix.len()..].chars().take_while(|&c| part(c)).collect();
        let rest = rest.trim_end_matches(['-', '_']);
        if !rest.is_empty() {
            found.insert(format!("{prefix}{rest}"));
        }
    }
    found
}

fn help_text() -> String {
    let mut all = String::new();
    for command in COMMANDS {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_apprunner-build"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{command} --help");
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

fn flag_part(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

fn setting_part(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
}

#[test]
fn every_flag_the_docs_name_exists() {
    let help = help_text();
    let mut known = words(&help, "--", flag_part);
    known.extend(OTHER_TOOLS.iter().flat_map(|(_, flags)| flags.iter().map(|f| (*f).to_string())));
    let mut unknown = Vec::new();
    for (path, text) in manual() {
        for flag in words(&text, "--", flag_part) {
            if !known.contains(&flag) {
                unknown.push(format!("{}: {flag}", path.strip_prefix(top()).unwrap().display()));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "flags the docs name that apprunner-build --help does not list:\n{}",
        unknown.join("\n")
    );
}

/// Every text file below `dir` (recursively), concatenated.
fn sources(dir: &Path) -> String {
    files(dir).into_iter().map(|(_, text)| text).collect()
}

#[test]
fn every_setting_the_docs_name_is_read() {
    // The binary's: what clap reads ([env: …] in --help) and what the code asks for by name.
    let mut read = words(&help_text(), "APPRUNNER_", setting_part);
    let code = sources(&top().join("src"));
    read.extend(words(&code, "\"APPRUNNER_", setting_part).into_iter().map(|w| w[1..].to_string()));
    // The scripts' own (the registry they push to, their folders), read by docker/*.
    let scripts = words(&sources(&top().join("docker")), "APPRUNNER_", setting_part);
    // The tests' (the corpus folder, the test workers' log filter).
    let tests: BTreeSet<String> = ["tests/corpus.rs", "tests/common/queue.rs"]
        .iter()
        .flat_map(|f| words(&std::fs::read_to_string(top().join(f)).unwrap(), "\"APPRUNNER_", setting_part))
        .collect();
    read.extend(scripts);
    read.extend(tests.into_iter().map(|w| w[1..].to_string()));
    let mut unknown = Vec::new();
    for (path, text) in manual() {
        for setting in words(&text, "APPRUNNER_", setting_part) {
            if !read.contains(&setting) {
                unknown.push(format!("{}: {setting}", path.strip_prefix(top()).unwrap().display()));
            }
        }
    }
    assert!(unknown.is_empty(), "settings the docs name that nothing reads:\n{}", unknown.join("\n"));
}

#[test]
fn the_readme_is_a_front_page_and_the_project_points_nowhere_outside_it() {
    let readme = std::fs::read_to_string(top().join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 200,
        "README.md has {} lines; the manual belongs in docs/",
        readme.lines().count()
    );
    // Nothing the project holds reads or cites files beside the checkout.
    let mut outside = Vec::new();
    for dir in ["src", "tests", "runtimes", "docker", "docs", "examples", ".ci"] {
        for (path, text) in files(&top().join(dir)) {
            for needle in [concat!("../", "shared"), concat!("shared/", "seeds"), "DECISIONS.md", "SPEC.md"] {
                if text.contains(needle) && !path.ends_with("tests/docs.rs") && !path.ends_with(".ci/run") {
                    outside.push(format!("{}: {needle}", path.strip_prefix(top()).unwrap().display()));
                }
            }
        }
    }
    for needle in [concat!("../", "shared"), "DECISIONS.md", "SPEC.md"] {
        if readme.contains(needle) {
            outside.push(format!("README.md: {needle}"));
        }
    }
    assert!(outside.is_empty(), "references to files outside the repository:\n{}", outside.join("\n"));
}

/// Every text file below `dir` (recursively), with its path.
fn files(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files(&path));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            all.push((path, text));
        }
    }
    all
}
