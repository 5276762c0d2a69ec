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
