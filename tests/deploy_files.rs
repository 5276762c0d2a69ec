//! The production deployment files, checked as far as this machine allows: the compose file
//! must be valid for Debian's docker-compose (no image can be pulled here to run it).
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

#[test]
fn compose_file_is_valid() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/compose.yaml");
    let out = Command::new("docker-compose")
        .args(["-f", file.to_str().unwrap(), "config"])
        .output()
        .expect("docker-compose is installed by docker/stack");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(config.contains("BUILDKIT_STEP_LOG_MAX_SIZE: '-1'"), "{config}");
    assert!(config.contains("replicas: 3"), "{config}");
}

/// The compose file and the worker image describe the worker the binary is: every setting the
/// compose file gives is one the worker reads, its command parses, and the image copies what
/// the build needs and starts the worker.
#[test]
fn compose_and_worker_image_match_the_binary() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = env!("CARGO_BIN_EXE_apprunner-build");
    let help = Command::new(bin).args(["worker", "--help"]).output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let compose = std::fs::read_to_string(top.join("docker/compose.yaml")).unwrap();
    let names: Vec<&str> = compose
        .lines()
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k))
        .filter(|k| k.starts_with("APPRUNNER_"))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    // APPRUNNER_LOG is read before the arguments, for the log filter.
    let main = std::fs::read_to_string(top.join("src/main.rs")).unwrap();
    for name in &names {
        let read = help.contains(&format!("[env: {name}=")) || main.contains(&format!("\"{name}\""));
        assert!(read, "compose sets {name}, which the worker does not read");
    }
    let dockerfile = std::fs::read_to_string(top.join("docker/worker.Dockerfile")).unwrap();
    let mut copied = Vec::new();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from=")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(top.join(src).exists(), "worker.Dockerfile copies {src}, which the repository lacks");
            copied.push((*src).to_string());
        }
    }
    // Every crate the binary is built from is in the image's build context.
    let manifest = std::fs::read_to_string(top.join("Cargo.toml")).unwrap();
    for member in manifest.lines().filter_map(|l| l.split("path = \"").nth(1)?.split('"').next()) {
        let first = member.split('/').next().unwrap_or(member);
        assert!(copied.iter().any(|c| c == first || c == member), "worker.Dockerfile does not copy {member}");
    }
    assert!(dockerfile.contains("ENTRYPOINT [\"apprunner-build\"]") && dockerfile.contains("CMD [\"worker\"]"));
    // The compose file's worker command, as the binary parses it (with --help after it, so it
    // stops before the broker connection): an argument it does not take fails here.
    let command = worker_command(&compose);
    assert_eq!(command.first().map(String::as_str), Some("worker"), "{command:?}");
    let parsed = Command::new(bin).args(&command).arg("--help").output().unwrap();
    assert!(parsed.status.success(), "{command:?}: {}", String::from_utf8_lossy(&parsed.stderr));
    let bogus = Command::new(bin).args(&command).args(["--no-such-setting", "--help"]).output().unwrap();
    assert!(!bogus.status.success(), "the check would see a bad argument");
}

/// The `command:` of the compose file's `worker` service (a flow sequence of strings).
fn worker_command(compose: &str) -> Vec<String> {
    let mut in_worker = false;
    for line in compose.lines() {
        if line.starts_with("  ") && !line.starts_with("   ") {
            in_worker = line.trim() == "worker:";
        } else if in_worker {
            if let Some(list) = line.trim().strip_prefix("command:") {
                return serde_json::from_str(list.trim()).unwrap_or_else(|e| panic!("{line}: {e}"));
            }
        }
    }
    panic!("no command for the worker service in docker/compose.yaml")
}
