//! The production deployment files, checked as far as this machine allows (no image can be
//! pulled here to run them): the compose file must be valid for Debian's docker-compose, the
//! Kubernetes base must render and validate against Kubernetes 1.32, and both must describe the
//! worker the binary is.
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

/// The Kubernetes base renders (`kubectl kustomize`), every built-in kind in it passes
/// `kubernetes-validate --strict` against Kubernetes 1.32's schemas, and it describes the worker
/// the binary is: every setting it gives the worker is one the binary reads, the command parses,
/// the pod's grace covers the worker's, KEDA scales the worker's Deployment on its two queues with
/// the broker Secret the worker reads, the budget selects the workers, and the signing key is
/// mounted into the worker alone, never into BuildKit's container.
#[test]
fn kubernetes_manifests_validate_and_match_the_binary() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rendered = Command::new("kubectl")
        .args(["kustomize", top.join("docker/kubernetes").to_str().unwrap()])
        .output()
        .expect("kubectl renders the manifests");
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, &rendered.stdout).unwrap();
    let validated = Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.32", file.to_str().unwrap()])
        .output()
        .expect("kubernetes-validate is installed by docker/stack");
    let said = String::from_utf8_lossy(&validated.stdout).to_string() + &String::from_utf8_lossy(&validated.stderr);
    assert!(validated.status.success(), "{said}");
    for passed in ["namespace/apprunner-build", "deployment/worker", "poddisruptionbudget/worker"] {
        assert!(said.contains(&format!("passed for resource {passed} against version 1.32")), "{said}");
    }
    let docs = as_json(&file);
    let find = |kind: &str| -> &serde_json::Value {
        docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind} in docker/kubernetes"))
    };

    let deployment = find("Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    let containers = pod["containers"].as_array().unwrap();
    let worker = containers.iter().find(|c| c["name"] == "worker").unwrap();
    let env: Vec<(&str, &serde_json::Value)> =
        worker["env"].as_array().unwrap().iter().map(|e| (e["name"].as_str().unwrap(), e)).collect();
    let bin = env!("CARGO_BIN_EXE_apprunner-build");
    let help = String::from_utf8(Command::new(bin).args(["worker", "--help"]).output().unwrap().stdout).unwrap();
    // Besides the flags' variables: those read before the arguments (the log filter) or
    // beside them (the registry's credentials file), by name, in the CLI's sources.
    let read_by_name: String =
        ["src/main.rs", "src/cli/settings.rs"].iter().map(|f| std::fs::read_to_string(top.join(f)).unwrap()).collect();
    for (name, _) in env.iter().filter(|(n, _)| n.starts_with("APPRUNNER_")) {
        let read = help.contains(&format!("[env: {name}=")) || read_by_name.contains(&format!("(\"{name}\")"));
        assert!(read, "docker/kubernetes sets {name}, which the worker does not read");
    }
    let args: Vec<String> = serde_json::from_value(worker["args"].clone()).unwrap();
    let parsed = Command::new(bin).args(&args).arg("--help").output().unwrap();
    assert!(parsed.status.success(), "{args:?}: {}", String::from_utf8_lossy(&parsed.stderr));
    // The drain: the worker's grace covers the build time limit, the pod's covers the grace.
    let setting = |name: &str| env.iter().find(|(n, _)| *n == name).and_then(|(_, e)| e["value"].as_str());
    let grace: u64 = args.iter().skip_while(|a| *a != "--grace").nth(1).unwrap().parse().unwrap();
    let limit: u64 = setting("APPRUNNER_BUILD_TIMEOUT").unwrap().parse().unwrap();
    assert!(grace >= limit, "--grace {grace} is shorter than the build time limit {limit}");
    assert!(pod["terminationGracePeriodSeconds"].as_u64().unwrap() >= grace + 30, "the pod is killed mid-drain");
    // BuildKit beside the worker, on a socket in a volume both mount; stopped after the worker.
    let buildkit = pod["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "buildkitd").unwrap();
    assert_eq!(buildkit["restartPolicy"], "Always", "a native sidecar, stopped after the worker");
    let socket = setting("APPRUNNER_BUILDKIT").unwrap().strip_prefix("unix://").unwrap();
    let volume_at = |c: &serde_json::Value, path: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| path.starts_with(m["mountPath"].as_str().unwrap()))
            .map(|m| m["name"].clone())
    };
    assert!(volume_at(worker, socket).is_some() && volume_at(worker, socket) == volume_at(buildkit, socket));
    assert!(buildkit["args"].to_string().contains(socket), "BuildKit listens where the worker looks");
    // The key: mounted as a file into the worker, never into BuildKit's container.
    let key = setting("APPRUNNER_SIGNING_KEY").unwrap();
    let key_volume = volume_at(worker, key).unwrap();
    let mounts = |c: &serde_json::Value| c["volumeMounts"].as_array().unwrap().iter().any(|m| m["name"] == key_volume);
    assert!(!mounts(buildkit), "BuildKit's container mounts the signing key");
    let key_mount = worker["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == key_volume).unwrap();
    assert!(key_mount["subPath"].is_string(), "a Secret volume's files are symlinks, which the worker refuses");

    // KEDA scales this Deployment on the jobs and batch queues, reading the broker's Secret.
    let scaled = find("ScaledObject");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let prefix = setting("APPRUNNER_QUEUE_PREFIX").unwrap_or("apprunner-build");
    let triggers = scaled["spec"]["triggers"].as_array().unwrap();
    let queues: Vec<&str> = triggers.iter().map(|t| t["metadata"]["queueName"].as_str().unwrap()).collect();
    assert_eq!(queues, [format!("{prefix}.jobs"), format!("{prefix}.batch")]);
    let auth = find("TriggerAuthentication");
    assert!(triggers.iter().all(|t| t["authenticationRef"]["name"] == auth["metadata"]["name"]));
    let broker_secret =
        &env.iter().find(|(n, _)| *n == "APPRUNNER_AMQP_URI").unwrap().1["valueFrom"]["secretKeyRef"]["name"];
    assert_eq!(&auth["spec"]["secretTargetRef"][0]["name"], broker_secret);
    // The budget selects the worker pods; the broker is three nodes.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in find("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the PodDisruptionBudget selects other pods");
    }
    assert_eq!(find("RabbitmqCluster")["spec"]["replicas"], 3);
    assert_eq!(setting("APPRUNNER_QUORUM_SIZE"), Some("3"));
}

/// The YAML documents of `file` as JSON values (`PyYAML`, which kubernetes-validate brings).
fn as_json(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}
