//! Faults the tests inject into real services: a worker's broker connection closed from the
//! broker's side, Docker Engine (and so BuildKit) taken away from one worker and given back.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

/// Closes a worker's consuming connection from the broker's side, as a network fault would.
pub fn close_consumer_connection(worker_id: &str) {
    let list =
        Command::new("rabbitmqctl").args(["list_connections", "pid", "client_properties", "-q"]).output().unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    let needle = format!("\"apprunner-build-worker-{worker_id}\"}}");
    let pids: Vec<&str> =
        text.lines().filter(|l| l.contains(&needle)).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(pids.len(), 1, "the worker's connection: {text}");
    let closed = Command::new("rabbitmqctl").args(["close_connection", pids[0], "test closes it"]).output().unwrap();
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
}

/// A unix-socket proxy to Docker Engine that the test can take down and bring back, so the
/// worker's `BuildKit` (and Engine API) is unreachable without disturbing the other tests. Down,
/// its connections are cut (a worker keeps one connection to `BuildKit`) and the socket is gone.
pub struct FlakyDocker {
    pub path: PathBuf,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FlakyDocker {
    pub fn new() -> Self {
        Self {
            path: std::env::temp_dir().join(format!("flaky-docker-{}.sock", uuid::Uuid::new_v4().simple())),
            tasks: std::sync::Arc::default(),
        }
    }
    pub fn addr(&self) -> String {
        format!("docker-unix://{}", self.path.display())
    }
    pub fn up(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).unwrap();
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    pub fn down(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for FlakyDocker {
    fn drop(&mut self) {
        self.down();
    }
}

/// A TCP port in front of another (a registry) that the test can take down and bring back:
/// down, its connections are cut and new ones refused.
pub struct FlakyPort {
    pub port: u16,
    to: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FlakyPort {
    pub fn to(target: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { port, to: target.to_string(), tasks: std::sync::Arc::default() }
    }

    pub fn up(&mut self) {
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (to, tasks) = (self.to.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let to = to.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    pub fn down(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for FlakyPort {
    fn drop(&mut self) {
        self.down();
    }
}
