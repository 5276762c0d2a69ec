//! A `RabbitMQ` cluster of a test's (or a benchmark's) own: nodes with their own names, ports
//! and directories, started as the `rabbitmq` user beside the machine's node (which is never
//! touched), torn down when dropped. Self-contained, so `examples/chaos` includes it too.
#![allow(dead_code, clippy::unwrap_used)]

use std::os::unix::fs::chown;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Node {
    pub name: String,
    pub amqp: u16,
    dist: u16,
    dir: PathBuf,
}

/// Nodes of a cluster of our own, started as the `rabbitmq` user (sharing the machine's Erlang
/// cookie), each with its own listener, distribution port and directories.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

fn rabbitmq_uid_gid() -> (u32, u32) {
    let out = Command::new("id").args(["-u", "rabbitmq"]).output().unwrap();
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = Command::new("id").args(["-g", "rabbitmq"]).output().unwrap();
    (uid, String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
}

pub fn ctl(node: &str, args: &[&str]) -> std::process::Output {
    Command::new("rabbitmqctl").args(["-n", node]).args(args).output().unwrap()
}

impl Node {
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp)
    }

    pub fn start(&self) {
        let dir = self.dir.display();
        let env = format!(
            "HOME=/var/lib/rabbitmq RABBITMQ_NODENAME={} RABBITMQ_CONFIG_FILE={dir}/rabbitmq.conf RABBITMQ_DIST_PORT={} RABBITMQ_MNESIA_BASE={dir}/mnesia RABBITMQ_LOG_BASE={dir}/log RABBITMQ_ENABLED_PLUGINS_FILE={dir}/enabled_plugins",
            self.name, self.dist
        );
        let script = format!("cd /var/lib/rabbitmq && {env} /usr/lib/rabbitmq/bin/rabbitmq-server -detached");
        let out = Command::new("su").args(["rabbitmq", "-s", "/bin/sh", "-c", &script]).output().unwrap();
        assert!(out.status.success(), "starting {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        // Until the node has registered its name, rabbitmqctl cannot even ask it to wait.
        let began = Instant::now();
        loop {
            let out = ctl(&self.name, &["await_startup", "--timeout", "120"]);
            if out.status.success() {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(120),
                "{} did not start: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn stop(&self) {
        let _ = ctl(&self.name, &["stop"]);
    }

    /// SIGKILL to the node's Erlang VM: no goodbye to its clients or its peers.
    pub fn kill(&self) {
        let out = ctl(&self.name, &["eval", "os:getpid()."]);
        let pid = String::from_utf8_lossy(&out.stdout).trim().trim_matches('"').to_string();
        assert!(!pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()), "pid of {}: {out:?}", self.name);
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        // Until its name is free again, the node cannot be started anew.
        let began = Instant::now();
        while ctl(&self.name, &["ping"]).status.success() && began.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Cluster {
    pub fn start(n: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (uid, gid) = rabbitmq_uid_gid();
        chown(dir.path(), Some(uid), Some(gid)).unwrap();
        // Every port is held until all are chosen, so no two nodes get the same one.
        let held: Vec<std::net::TcpListener> =
            (0..2 * n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let ports: Vec<u16> = held.iter().map(|l| l.local_addr().unwrap().port()).collect();
        drop(held);
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let node = Node {
                    name: format!("abt{tag}n{i}@localhost"),
                    amqp: ports[2 * i],
                    dist: ports[2 * i + 1],
                    dir: dir.path().join(format!("n{i}")),
                };
                std::fs::create_dir_all(&node.dir).unwrap();
                std::fs::write(
                    node.dir.join("rabbitmq.conf"),
                    format!("listeners.tcp.local = 127.0.0.1:{}\nloopback_users = none\n", node.amqp),
                )
                .unwrap();
                chown(&node.dir, Some(uid), Some(gid)).unwrap();
                node
            })
            .collect();
        let cluster = Cluster { nodes, _dir: dir };
        for node in &cluster.nodes {
            node.start();
        }
        let first = cluster.nodes[0].name.clone();
        for node in &cluster.nodes[1..] {
            for step in [&["stop_app"][..], &["reset"], &["join_cluster", &first], &["start_app"]] {
                let out = ctl(&node.name, step);
                assert!(out.status.success(), "{} {step:?}: {}", node.name, String::from_utf8_lossy(&out.stderr));
            }
        }
        cluster
    }

    /// Every node's URI, node `first` first (a client starts on the first).
    pub fn uris_from(&self, first: usize) -> String {
        let n = self.nodes.len();
        (0..n).map(|k| self.nodes[(first + k) % n].uri()).collect::<Vec<_>>().join(",")
    }

    pub fn index_of(&self, host_port: &str) -> usize {
        self.nodes.iter().position(|n| host_port == format!("127.0.0.1:{}", n.amqp)).unwrap()
    }

    /// Messages in each queue of `prefix` whose name contains `part`, as the last node lists them.
    pub fn messages_in(&self, prefix: &str, part: &str) -> Vec<(String, u64)> {
        let out = ctl(&self.nodes[2].name, &["list_queues", "-q", "name", "messages"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, count) = l.split_once('\t')?;
                (name.starts_with(prefix) && name.contains(part))
                    .then(|| (name.to_string(), count.trim().parse().unwrap_or(0)))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
        }
    }
}
