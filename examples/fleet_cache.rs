//! Fleet cache benchmark: `cargo run --release --example fleet_cache [APP_DIR] [ROUNDS]`.
//!
//! Needs docker/stack. Each round names a new service (so its fleet cache starts empty), prunes
//! the `BuildKit` build cache and builds the app cold; then prunes the build cache again, as a
//! worker that has never built the service would have it, and builds the same source: every
//! step can come only from the fleet cache another worker exported. Prints both times and
//! their ratio per round, and the median ratio (target: <= 0.4). The default app is
//! `tests/apps/python311` (pip installs from `PyPI` through the proxy, twice: build and pre-run).
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Instant;

fn prune() {
    let out = Command::new("/usr/bin/docker").args(["builder", "prune", "-af"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn build(bin: &std::path::Path, app: &str, image: &str) -> f64 {
    let t = Instant::now();
    // Both builds go to one tag: without --no-image-reuse the second would reuse the first's
    // image and never ask BuildKit, which is what is measured here.
    let out = Command::new(bin)
        .args(["build", app, "--image", image, "--no-image-reuse"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

fn main() {
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let app = std::env::args().nth(1).unwrap_or_else(|| top.join("tests/apps/python311").display().to_string());
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("apprunner-build");
    assert!(bin.exists(), "build the binary first: cargo build --release");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let service =
            format!("127.0.0.1:5000/apprunner-bench/fleet-{}:1", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        prune();
        let cold = build(&bin, &app, &service);
        prune();
        let fleet = build(&bin, &app, &service);
        let ratio = fleet / cold;
        println!(
            "round {round}: cold {cold:.1}s, empty local cache with the fleet cache {fleet:.1}s, ratio {ratio:.2}"
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio fleet/cold over {rounds} rounds: {:.2} (target <= 0.40)", ratios[ratios.len() / 2]);
}
