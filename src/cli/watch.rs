//! `apprunner-build watch`: its arguments, the services file read at start (a bad one fails the
//! start, every problem a line) and read again on SIGHUP or when it changes (a bad one keeps the
//! last good set, and says why), and the watcher run until SIGTERM or SIGINT.

use super::args::QueueArgs;
use super::commands::{process_name, signal};
use crate::core::catalog::RuntimeCatalog;
use crate::core::watch::{read_services, WatchedService};
use crate::error::BuildError;
use crate::watch::{Endpoint, WatchConfig, Watcher};
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

#[derive(Args)]
pub(super) struct WatchArgs {
    /// The services to follow: a YAML file with a list under `services:` (docs/automatic-deployment.md).
    #[arg(long, env = "APPRUNNER_SERVICES")]
    services: PathBuf,
    /// Seconds between two looks at a service's branch.
    #[arg(long, env = "APPRUNNER_POLL_INTERVAL", default_value_t = 60.0)]
    poll_interval: f64,
    /// Where the watcher keeps its mirrors of the repositories (commits and trees, no files).
    #[arg(long, env = "APPRUNNER_WATCH_STATE", default_value = "/var/lib/apprunner-build/watch")]
    state_dir: PathBuf,
    /// A git-credential-store file (`https://user:token@host` lines) for private git hosts.
    #[arg(long, env = "APPRUNNER_GIT_CREDENTIALS")]
    git_credentials: Option<PathBuf>,
    /// This watcher's name in its connections' names (default: host name and pid).
    #[arg(long, env = "APPRUNNER_WATCHER_ID")]
    watcher_id: Option<String>,
    /// Address of the webhook endpoint (`POST /webhook`, `GET /healthz`), "off" for none.
    #[arg(long, env = "APPRUNNER_WEBHOOK_ADDR", default_value = "off")]
    webhook_addr: String,
    /// The webhooks' shared secret (GitHub's and Bitbucket's signing secret, GitLab's token).
    #[arg(long, env = "APPRUNNER_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,
    /// Address of the /healthz and /metrics endpoint ("off" for none).
    #[arg(long, env = "APPRUNNER_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    metrics_addr: String,
    #[command(flatten)]
    queue: QueueArgs,
}

/// How often the services file is checked for a change.
const FILE_CHECK: Duration = Duration::from_secs(2);

pub(super) async fn run_watch(args: WatchArgs) -> Result<(), BuildError> {
    if !(args.poll_interval.is_finite() && args.poll_interval >= 1.0) {
        return Err(BuildError::user("--poll-interval must be a number of seconds, at least 1"));
    }
    let (set, mut stamp) = read_file(&args.services)?;
    let followed = set.iter().filter(|s| s.auto_deploy).count();
    tracing::info!("following {followed} of the {} services of {}", set.len(), args.services.display());
    let watcher_id = args.watcher_id.unwrap_or_else(|| process_name("watch"));
    let cfg = WatchConfig {
        brokers: args.queue.brokers()?,
        topology: args.queue.topology()?,
        poll_interval: Duration::from_secs_f64(args.poll_interval),
        state_dir: args.state_dir,
        git_credentials: args.git_credentials,
        watcher_id,
    };
    let secret = webhook_secret(&args.webhook_addr, args.webhook_secret_file.as_deref())?;
    let watcher = Arc::new(Watcher::new(cfg));
    for (addr, secret, flag) in
        [(&args.webhook_addr, secret, "--webhook-addr"), (&args.metrics_addr, None, "--metrics-addr")]
    {
        if addr == "off" {
            continue;
        }
        let listener = tokio::net::TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| BuildError::user(format!("{flag} {addr}: {e}; give HOST:PORT or off")))?;
        tracing::info!(
            "{flag}: serving {} on {addr}",
            if secret.is_some() { "POST /webhook, GET /healthz and /metrics" } else { "GET /healthz and /metrics" }
        );
        tokio::spawn(Endpoint { watcher: watcher.clone(), secret }.serve(listener));
    }
    let (set_tx, set_rx) = watch::channel(Arc::new(set));
    let (stop_tx, stop_rx) = watch::channel(false);
    let running = tokio::spawn(watcher.run(set_rx, stop_rx));
    use tokio::signal::unix::SignalKind;
    let (mut hup, mut term, mut int) =
        (signal(SignalKind::hangup())?, signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    loop {
        let why = tokio::select! {
            _ = hup.recv() => "SIGHUP",
            () = tokio::time::sleep(FILE_CHECK) => {
                if modified(&args.services) == stamp { continue; }
                "the file changed"
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        stamp = modified(&args.services);
        match read_file(&args.services) {
            Ok((set, _)) => {
                tracing::info!("{why}: read {} again: {} services", args.services.display(), set.len());
                let _ = set_tx.send(Arc::new(set));
            }
            Err(e) => {
                tracing::warn!("{why}: {} has problems; the last good set is kept:", args.services.display());
                for line in e.lines.iter().chain(std::iter::once(&e.message).filter(|_| e.lines.is_empty())) {
                    tracing::warn!("{line}");
                }
            }
        }
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = running.await;
    Ok(())
}

/// The file's services, and when it was last changed.
fn read_file(path: &Path) -> Result<(Vec<WatchedService>, Option<SystemTime>), BuildError> {
    let stamp = modified(path);
    let text = super::args::read_bounded(path, crate::core::watch::services::MAX_SERVICES_BYTES)
        .map_err(|e| BuildError::user(format!("--services {}: {e}", path.display())))?;
    let shown = path.display().to_string();
    let set = read_services(&text, &shown, RuntimeCatalog::builtin()).map_err(|e| BuildError {
        lines: e.0.clone(),
        ..BuildError::user(format!("{} has {} problems", shown, e.0.len()))
    })?;
    Ok((set, stamp))
}

/// The webhooks' secret, when the webhook endpoint is on (it is then required).
fn webhook_secret(addr: &str, file: Option<&Path>) -> Result<Option<Arc<Vec<u8>>>, BuildError> {
    if addr == "off" {
        return Ok(None);
    }
    let Some(file) = file else {
        return Err(BuildError::user(
            "--webhook-addr needs --webhook-secret-file: a webhook that anyone can send is not taken",
        ));
    };
    let text = super::args::read_bounded(file, 4096)
        .map_err(|e| BuildError::user(format!("--webhook-secret-file {}: {e}", file.display())))?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(BuildError::user(format!(
            "--webhook-secret-file {} is empty; give the secret the git host signs with",
            file.display()
        )));
    }
    Ok(Some(Arc::new(secret.as_bytes().to_vec())))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
