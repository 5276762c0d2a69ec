//! What asking a repository for a branch's commit costs, as a redeploy asks it:
//! `cargo run --release --example ls_ref -- URL [BRANCH] [N]`.
//!
//! Asks N times (default 50) the way a worker does (`edge::source::remote_commit`: git's
//! protocol v2 `ls-refs` on the process's own pooled client for an HTTP(S) URL), then N times
//! with `git ls-remote` as before, and prints the CPU per call of each (this process's own
//! time, and its children's: git and its helpers) and their ratio. Use an HTTPS repository
//! (any public one; for a private one, credentials in the URL): over HTTPS the reference
//! parses the CA bundle and shakes hands on every call.
#![allow(clippy::unwrap_used)]

use apprunner_build::core::request::Revision;
use apprunner_build::edge::source::{locate, remote_commit};
use std::process::{Command, Stdio};

/// CPU seconds so far: this process's and its reaped children's (`/proc/self/stat`).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<u64> =
        stat.rsplit_once(')').unwrap().1.split_whitespace().skip(11).take(4).map(|f| f.parse().unwrap()).collect();
    fields.iter().sum::<u64>() as f64 / 100.0
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args.get(1).expect("usage: ls_ref URL [BRANCH] [N]").clone();
    let branch = args.get(2).cloned().unwrap_or_else(|| "main".into());
    let n: u32 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(50);
    let location = locate(&url);
    let revision = Revision::Branch(branch.clone());

    let wanted = remote_commit(&location, &revision, None).await.expect("the branch's commit");
    let at = cpu_seconds();
    for _ in 0..n {
        assert_eq!(remote_commit(&location, &revision, None).await.as_deref(), Some(wanted.as_str()));
    }
    let ours = (cpu_seconds() - at) / f64::from(n);

    let refname = format!("refs/heads/{branch}");
    let at = cpu_seconds();
    for _ in 0..n {
        let out = Command::new("git")
            .args(["-c", "init.templateDir=", "ls-remote", "--", &url, &refname])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&wanted), "git ls-remote disagrees");
    }
    let git = (cpu_seconds() - at) / f64::from(n);
    println!("{refname} at {}: {wanted}", apprunner_build::core::shown::split_userinfo(&url).0);
    println!("CPU per call: ls-refs on the worker's client {:.1} ms, git ls-remote {:.1} ms", ours * 1e3, git * 1e3);
    println!("ratio ls-refs / git ls-remote: {:.2} (over {n} calls each)", ours / git);
}
