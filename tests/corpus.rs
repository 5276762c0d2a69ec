//! Real `apprunner.yaml` files from public repositories, when a run gives a folder of them
//! (`APPRUNNER_CORPUS_DIR`; `.ci/run` does): none makes the reader panic, each is accepted or
//! refused in one line per problem, and what each becomes is one reviewed snapshot. Without the
//! folder both tests say they were skipped; `config_rules.rs` covers every rule on its own.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used, clippy::format_collect, clippy::format_push_string)]

use apprunner_build::core::catalog::RuntimeCatalog;
use apprunner_build::core::config::{self, AppConfig};
use std::path::Path;

/// The configuration in `text`, or its problems as a user reads them, one per line.
fn yaml(text: &str) -> Result<AppConfig, config::ConfigErrors> {
    config::from_yaml(text, "apprunner.yaml", RuntimeCatalog::builtin())
}

/// The folder of real `apprunner.yaml` files collected from public repositories, when a run
/// gives one (`APPRUNNER_CORPUS_DIR`: a folder of `*.yaml` files, or one holding
/// `apprunner-yaml/`); None, said on stderr, otherwise. The rules themselves are covered by
/// this file's own cases and `tests/fixtures/`, with or without it.
fn corpus() -> Option<std::path::PathBuf> {
    let Some(given) = std::env::var_os("APPRUNNER_CORPUS_DIR") else {
        eprintln!("skipped: no corpus of real apprunner.yaml files given (set APPRUNNER_CORPUS_DIR)");
        return None;
    };
    let dir = Path::new(&given);
    let dir = if dir.join("apprunner-yaml").is_dir() { dir.join("apprunner-yaml") } else { dir.to_path_buf() };
    assert!(dir.is_dir(), "APPRUNNER_CORPUS_DIR {} is not a folder", dir.display());
    Some(dir)
}

/// The real files of the corpus: never a panic; each accepted or rejected in one line.
#[test]
fn corpus_of_real_files() {
    let Some(dir) = corpus() else { return };
    let entries = std::fs::read_dir(&dir).unwrap();
    let (mut accepted, mut rejected) = (0, Vec::new());
    for entry in entries {
        let path = entry.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
        match yaml(&text) {
            Ok(c) => {
                accepted += 1;
                assert!(!c.build.is_empty() && !c.command.is_empty());
            }
            Err(e) => {
                let e = e.to_string();
                assert!(e.lines().all(|l| l.starts_with("apprunner.yaml")), "{}: {e}", path.display());
                rejected.push(format!("{}: {e}", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    eprintln!("corpus: {accepted} accepted, {} rejected", rejected.len());
    for r in &rejected {
        eprintln!("  {r}");
    }
    assert!(accepted + rejected.len() >= 141);
    // The rest name runtimes App Runner never had (docker, java21, python3.11), versions outside
    // the release tables, a reserved PORT, or miss required keys.
    assert!(accepted >= 70, "only {accepted} corpus files accepted");
}

/// What every real file of the corpus becomes, in one reviewed snapshot: a change of what is
/// accepted, resolved or refused (and why) shows up in review.
#[test]
fn corpus_outcomes_snapshot() {
    let Some(dir) = corpus() else { return };
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let catalog = RuntimeCatalog::builtin();
    let mut out = String::new();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).to_string();
        let line = match yaml(&text) {
            Ok(c) => {
                let rt = catalog.resolve(catalog.lookup(&c.runtime).unwrap(), c.runtime_version.as_deref()).unwrap();
                format!(
                    "accepted: {} {} ({} build), {} warnings",
                    rt.name,
                    rt.version,
                    rt.build_process,
                    c.warnings.len()
                )
            }
            Err(e) => format!("rejected: {}", e.to_string().replace('\n', "\n    ")),
        };
        out.push_str(&format!("{name}\n  {line}\n"));
    }
    insta::assert_snapshot!("corpus", out);
}
