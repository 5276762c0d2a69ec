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

/// The queue builds on the core and the AMQP client, never on the other edges or the service;
/// and the service reaches the broker only through it: lapin is no dependency of its own.
#[test]
fn the_broker_is_reached_through_the_queue_crate_alone() {
    let (crates, tree) = tree_of("apprunner-queue");
    for b in ["apprunner-core", "lapin"] {
        assert!(crates.contains(b), "apprunner-queue builds on {b}:\n{tree}");
    }
    for n in ["apprunner-registry", "apprunner-buildkit", "tonic", "reqwest", "apprunner-build"] {
        assert!(!crates.contains(n), "apprunner-queue may not depend on {n}:\n{tree}");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-p",
            "apprunner-build",
            "-e",
            "normal",
            "--depth",
            "1",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let direct = String::from_utf8_lossy(&out.stdout);
    assert!(!direct.lines().any(|l| l.starts_with("lapin ")), "the service depends on lapin itself:\n{direct}");
}

/// Inside the queue crate, the AMQP client is named only by the transport (and by the error
/// that keeps the client's error as its source): the rest speaks in the transport's types.
#[test]
fn inside_the_queue_only_the_transport_names_the_amqp_client() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/apprunner-queue/src");
    let mut naming = Vec::new();
    for entry in walkdir::WalkDir::new(&root) {
        let entry = entry.unwrap();
        let path = entry.path().strip_prefix(&root).unwrap().to_string_lossy().to_string();
        if entry.file_type().is_file() && std::fs::read_to_string(entry.path()).unwrap().contains("lapin") {
            naming.push(path);
        }
    }
    naming.retain(|p| !(p.starts_with("transport/") || p == "error.rs"));
    assert!(naming.is_empty(), "these files name lapin outside the transport: {naming:?}");
}
