//! The core crate stays pure: nothing it depends on, directly or not, can run a task, open a
//! connection or spawn a process. The compiler then keeps I/O out of configuration, planning and
//! LLB, since the crates that would do it are not there to call.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

#[test]
fn the_core_crate_depends_on_no_io_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-p", "apprunner-core", "-e", "normal,build", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    let crates: std::collections::BTreeSet<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains("apprunner-core") && crates.contains("serde"), "{tree}");
    let io = [
        "tokio", "mio", "reqwest", "hyper", "h2", "tonic", "lapin", "rustls", "socket2", "rustix", "tempfile",
        "walkdir",
    ];
    let found: Vec<&str> = io.iter().copied().filter(|c| crates.contains(c)).collect();
    assert!(found.is_empty(), "apprunner-core depends on {found:?}:\n{tree}");
}
