//! Rebase benchmark: `cargo run --release --example rebase [ROUNDS]`.
//!
//! Needs docker/stack. Each round copies `tests/apps/nodejs18` (`npm install` fetches one small
//! package through the proxy) with a line of its own, so no round finds another's
//! cache, and builds it while the fleet holds nodejs18 at 18.20.6. Then it moves that service
//! to 18.20.8 twice: by a rebuild of the same source (what a deployment does without `rebase`)
//! and by `rebase`. Prints both times and their ratio per round, and the median ratio (target:
//! <= 0.1). Both are the CLI end to end, process start included.
// Tests and benchmarks fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

fn run(bin: &Path, args: &[&str]) -> f64 {
    let t = Instant::now();
    let out = Command::new(bin).args(args).stdout(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed().as_secs_f64()
}

fn main() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rounds: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let bin = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("apprunner-build");
    assert!(bin.exists(), "build the binary first: cargo build --release");
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let dir = tempfile::tempdir().unwrap();
        for f in ["app.js", "package.json", "apprunner.yaml"] {
            std::fs::copy(top.join("tests/apps/nodejs18").join(f), dir.path().join(f)).unwrap();
        }
        let js = std::fs::read_to_string(dir.path().join("app.js")).unwrap();
        std::fs::write(dir.path().join("app.js"), format!("// round {id}\n{js}")).unwrap();
        let app = dir.path().to_str().unwrap();
        let repo = format!("127.0.0.1:5000/apprunner-bench/rebase-{id}");
        let (old, rebuilt, rebased) = (format!("{repo}:old"), format!("{repo}:rebuilt"), format!("{repo}:rebased"));
        run(&bin, &["build", app, "--image", &old, "--hold-runtime", "nodejs18=18.20.6"]);
        let rebuild = run(&bin, &["build", app, "--image", &rebuilt]);
        let rebase = run(&bin, &["rebase", &old, "--to-version", "18.20.8", "--output", &rebased]);
        let ratio = rebase / rebuild;
        println!("round {round}: rebuild on 18.20.8 {rebuild:.2}s, rebase onto 18.20.8 {rebase:.2}s, ratio {ratio:.3}");
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median ratio rebase/rebuild over {rounds} rounds: {:.3} (target <= 0.1)", ratios[ratios.len() / 2]);
}
