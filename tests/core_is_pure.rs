//! The pure crates stay pure: nothing they depend on, directly or not, can run a task, open a
//! connection or spawn a process. The compiler then keeps I/O out of the OCI documents,
//! configuration, planning and LLB, since the crates that would do it are not there to call.
//! And each crate depends only on those below it: the documents on none of ours, the core on
//! the documents.
// Tests fail loudly on anything unexpected: unwrap is the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

/// Every crate `krate` depends on, directly or not (normal and build dependencies).
fn tree_of(krate: &str) -> (BTreeSet<String>, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["tree", "--offline", "--locked", "-p", krate, "-e", "normal,build", "--prefix", "none"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout).to_string();
    let crates = tree.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect();
    (crates, tree)
}

const IO: [&str; 12] =
    ["tokio", "mio", "reqwest", "hyper", "h2", "tonic", "lapin", "rustls", "socket2", "rustix", "tempfile", "walkdir"];

#[test]
fn the_pure_crates_depend_on_no_io_crate() {
    for (krate, below, not_below) in
        [("apprunner-core", &["apprunner-oci"][..], &[][..]), ("apprunner-oci", &[][..], &["apprunner-core"][..])]
    {
        let (crates, tree) = tree_of(krate);
        assert!(crates.contains(krate) && crates.contains("serde"), "{tree}");
        let found: Vec<&str> = IO.iter().copied().filter(|c| crates.contains(*c)).collect();
        assert!(found.is_empty(), "{krate} depends on {found:?}:\n{tree}");
        for b in below {
            assert!(crates.contains(*b), "{krate} builds on {b}:\n{tree}");
        }
        for n in not_below {
            assert!(!crates.contains(*n), "{krate} may not depend on {n}:\n{tree}");
        }
    }
}

/// The clients of the edges build on the core (and the BuildKit client on the registry's
/// credentials), never on the broker or the service.
#[test]
fn the_edge_clients_build_on_the_core_alone() {
    for (krate, below, not_below) in [
        ("apprunner-registry", &["apprunner-core", "reqwest"][..], &["lapin", "tonic", "apprunner-build"][..]),
        (
            "apprunner-buildkit",
            &["apprunner-core", "apprunner-registry", "tonic"][..],
            &["lapin", "apprunner-build"][..],
        ),
    ] {
        let (crates, tree) = tree_of(krate);
        for b in below {
            assert!(crates.contains(*b), "{krate} builds on {b}:\n{tree}");
        }
        for n in not_below {
            assert!(!crates.contains(*n), "{krate} may not depend on {n}:\n{tree}");
        }
    }
}
