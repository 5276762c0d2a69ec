//! Each command's arguments, as clap reads them, and what they say (the source, the request,
//! the broker) once read.

use super::settings::SettingsArgs;
use crate::core::image_ref::ImageRef;
use crate::core::request::{self, BuildRequest, ConfigInput, Revision, SourceLocation};
use crate::edge::source::{self};
use crate::error::BuildError;
use crate::queue::outcome::RetryPolicy;
use crate::queue::transport::{Brokers, Topology};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub(super) struct QueueArgs {
    /// `RabbitMQ` URI; for a cluster, one per node (repeat the flag, or separate with commas):
    /// a lost connection moves to the next reachable node.
    #[arg(
        long,
        env = "APPRUNNER_AMQP_URI",
        value_delimiter = ',',
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub(super) amqp: Vec<String>,
    /// Prefix of every queue and exchange name.
    #[arg(long, env = "APPRUNNER_QUEUE_PREFIX", default_value = "apprunner-build")]
    pub(super) queue_prefix: String,
    /// Members of each quorum queue declared (default: 3, or as many nodes as --amqp names if
    /// fewer, when it names several; with one URI, the broker's default: every node).
    #[arg(long, env = "APPRUNNER_QUORUM_SIZE")]
    pub(super) quorum_size: Option<u32>,
}

impl QueueArgs {
    pub(super) fn brokers(&self) -> Result<Brokers, BuildError> {
        Brokers::new(self.amqp.clone()).map_err(|e| BuildError::user(format!("--amqp: {e}")))
    }

    pub(super) fn topology(&self) -> Result<Topology, BuildError> {
        let size = match self.quorum_size {
            Some(0) => return Err(BuildError::user("--quorum-size must be at least 1")),
            Some(n) => Some(n),
            None if self.amqp.len() > 1 => Some(u32::try_from(self.amqp.len().min(3)).unwrap_or(3)),
            None => None,
        };
        Ok(Topology::new(&self.queue_prefix).with_quorum_size(size))
    }
}

#[derive(Args)]
pub(super) struct What {
    /// A local directory or a git URL (file://, http(s)://, ssh://, user@host:path).
    pub(super) source: String,
    /// The source directory, from the repository root.
    #[arg(long, default_value = "/")]
    pub(super) source_dir: String,
    /// Build settings as API values (JSON of `CodeConfigurationValues`); apprunner.yaml is then ignored.
    #[arg(long)]
    pub(super) api_config: Option<PathBuf>,
    /// Branch, tag or commit to build (git sources; default: the default branch, or a local directory as it is).
    #[arg(long = "ref")]
    pub(super) reference: Option<String>,
}

impl What {
    pub(super) fn location(&self) -> SourceLocation {
        source::locate(&self.source)
    }

    /// The revision `--ref` names, or else a git source's default branch, a directory as it is.
    pub(super) fn revision(&self, location: &SourceLocation) -> Revision {
        Revision::for_source(self.reference.as_deref(), location)
    }

    /// The configuration source `--api-config` selects: API with its values, or the repository's file.
    pub(super) fn config(&self) -> Result<ConfigInput, BuildError> {
        let Some(path) = &self.api_config else { return Ok(ConfigInput::Repository) };
        Ok(ConfigInput::Api(api_config_file(path)?))
    }

    pub(super) fn request(
        &self,
        registry: &str,
        image: Option<&str>,
        operation_id: Option<String>,
    ) -> Result<BuildRequest, BuildError> {
        let operation_id = operation_id.unwrap_or_else(request::new_operation_id);
        request::check_operation_id(&operation_id)?;
        let location = self.location();
        let target = if let Some(i) = image {
            ImageRef::parse(i)?
        } else {
            let service = request::default_service_name(&location, &self.source_dir);
            ImageRef::parse(&format!("{}:{operation_id}", request::default_repository(registry, &service)))?
        };
        Ok(BuildRequest {
            revision: self.revision(&location),
            location,
            source_dir: self.source_dir.clone(),
            config: self.config()?,
            target,
            operation_id,
            trigger: "SERVICE_DEPLOY".into(),
            current_image: None,
            prior: None,
        })
    }
}

#[derive(Args)]
pub(super) struct BuildArgs {
    #[command(flatten)]
    pub(super) what: What,
    /// Where to push the image (REGISTRY/REPOSITORY:TAG).
    #[arg(long)]
    pub(super) image: Option<String>,
    /// Operation id for the log stream deployment/<id> (default: a new random one).
    #[arg(long)]
    pub(super) operation_id: Option<String>,
    /// Also write the build result as JSON to this file (on success).
    #[arg(long)]
    pub(super) result: Option<PathBuf>,
    /// Print log lines without App Runner's time prefix.
    #[arg(long)]
    pub(super) no_timestamps: bool,
    /// Run every step anew: nothing from BuildKit's cache or the fleet cache, empty package
    /// caches, no image reuse (what `verify` does to rebuild an image).
    #[arg(long)]
    pub(super) no_cache: bool,
    #[command(flatten)]
    pub(super) settings: SettingsArgs,
}

#[derive(Args)]
pub(super) struct WorkerArgs {
    #[command(flatten)]
    pub(super) queue: QueueArgs,
    /// Builds at once (the consumer prefetch).
    #[arg(long, env = "APPRUNNER_CONCURRENCY", default_value_t = 2)]
    pub(super) concurrency: u16,
    /// Attempts a job gets when `BuildKit`, the registry or the git host cannot be reached.
    #[arg(long, env = "APPRUNNER_MAX_ATTEMPTS", default_value_t = RetryPolicy::default().max_attempts)]
    pub(super) max_attempts: u32,
    /// Seconds before the first retry; doubled for each later one.
    #[arg(long, env = "APPRUNNER_RETRY_DELAY", default_value_t = RetryPolicy::default().first_delay.as_secs_f64())]
    pub(super) retry_delay: f64,
    /// Seconds running builds may go on after SIGTERM.
    #[arg(long, env = "APPRUNNER_GRACE", default_value_t = 600)]
    pub(super) grace: u64,
    /// Address of the /healthz and /metrics endpoint ("off" for none).
    #[arg(long, env = "APPRUNNER_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub(super) metrics_addr: String,
    /// This worker's name in events and connection names (default: host name and pid).
    #[arg(long, env = "APPRUNNER_WORKER_ID")]
    pub(super) worker_id: Option<String>,
    #[command(flatten)]
    pub(super) settings: SettingsArgs,
}

#[derive(Args)]
pub(super) struct SubmitArgs {
    #[command(flatten)]
    pub(super) what: What,
    #[command(flatten)]
    pub(super) queue: QueueArgs,
    /// Service name in the job (default: the source's name).
    #[arg(long)]
    pub(super) service: Option<String>,
    /// Image repository to push to, REGISTRY/REPOSITORY[:TAG] (default: <registry>/apprunner-apps/<service>).
    #[arg(long)]
    pub(super) image: Option<String>,
    /// RFC 3339 time after which the job must not start or go on.
    #[arg(long)]
    pub(super) deadline: Option<String>,
    /// The deployment's operation id (default: a new one, 32 hex digits); printed first, the id
    /// `status` and `cancel` take.
    #[arg(long)]
    pub(super) operation_id: Option<String>,
    /// Batch work: run only when no user's deployment waits (as roll-outs and rebuilds do).
    #[arg(long)]
    pub(super) batch: bool,
    /// Follow the build's log and exit with its outcome (0 succeeded, 1 failed, 4 cancelled).
    #[arg(long)]
    pub(super) wait: bool,
    /// With --wait: seconds to wait for the outcome before giving up (exit 3).
    #[arg(long, default_value_t = 3600)]
    pub(super) wait_timeout: u64,
    /// With --wait: print log lines without App Runner's time prefix.
    #[arg(long)]
    pub(super) no_timestamps: bool,
    #[arg(long, env = "APPRUNNER_REGISTRY", default_value = "127.0.0.1:5000")]
    pub(super) registry: String,
}

#[derive(Args)]
pub(super) struct RebuildFailedArgs {
    #[command(flatten)]
    pub(super) queue: QueueArgs,
    #[arg(long)]
    pub(super) service: Option<String>,
    #[arg(long)]
    pub(super) runtime: Option<String>,
    /// USER, TRANSIENT or INTERNAL
    #[arg(long)]
    pub(super) error_class: Option<String>,
    /// Only jobs that failed at least this long ago (30s, 15m, 2h, 7d).
    #[arg(long)]
    pub(super) older_than: Option<String>,
    /// Only jobs that failed at most this long ago.
    #[arg(long)]
    pub(super) newer_than: Option<String>,
    /// List what would be resubmitted; change nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
}

/// The API values (JSON) in the file `--api-config` names.
pub(super) fn api_config_file(path: &std::path::Path) -> Result<serde_json::Value, BuildError> {
    let text = read_bounded(path, crate::core::config::MAX_CONFIG_BYTES)
        .map_err(|e| BuildError::user(format!("--api-config {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| BuildError::user(format!("--api-config {} is not JSON: {e}", path.display())))
}

/// An operator's file (a setting names it), as text, if it holds at most `max` bytes. Links are
/// followed: a Kubernetes `ConfigMap` is mounted as one.
pub(super) fn read_bounded(path: &std::path::Path, max: usize) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let mut text = String::new();
    file.take(max as u64 + 1).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if text.len() > max {
        return Err(format!("larger than {max} bytes, the most read"));
    }
    Ok(text)
}

#[derive(Args)]
pub(super) struct VerifyArgs {
    /// The image to check, REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    pub(super) image: String,
    /// The git repository it was built from, when the image does not record it (a local
    /// repository: `file:///path`).
    #[arg(long)]
    pub(super) source: Option<String>,
    /// The API settings it was built with (JSON of `CodeConfigurationValues`), when it was.
    #[arg(long)]
    pub(super) api_config: Option<PathBuf>,
    /// The public key (PEM) of the worker's signing key: the image's signature and its signed
    /// provenance must verify with it, and the rebuild is of what that provenance records.
    #[arg(long)]
    pub(super) key: Option<PathBuf>,
    /// Print log lines without App Runner's time prefix.
    #[arg(long)]
    pub(super) no_timestamps: bool,
    #[command(flatten)]
    pub(super) settings: SettingsArgs,
}

#[derive(Args)]
pub(super) struct RebaseArgs {
    /// The image to move, REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    pub(super) image: String,
    /// The runtime version whose run image it moves onto.
    #[arg(long)]
    pub(super) to_version: String,
    /// Where the moved image goes, REGISTRY/REPOSITORY:TAG (default: IMAGE's own tag).
    #[arg(long)]
    pub(super) output: Option<String>,
    /// Operation id written on the image's index (default: a new random one).
    #[arg(long)]
    pub(super) operation_id: Option<String>,
    /// Print log lines without App Runner's time prefix.
    #[arg(long)]
    pub(super) no_timestamps: bool,
    #[command(flatten)]
    pub(super) settings: SettingsArgs,
}

#[derive(Args)]
pub(super) struct RollOutArgs {
    /// The runtime whose services move (`python311`, `nodejs18`, …).
    #[arg(long)]
    pub(super) runtime: String,
    /// The version they move to.
    #[arg(long)]
    pub(super) to_version: String,
    /// Only these services (repeat the flag); default: every service the workers recorded.
    #[arg(long)]
    pub(super) service: Vec<String>,
    /// Say what would be done; submit nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Wait for each submitted job's outcome and print it (exit 1 if any failed).
    #[arg(long)]
    pub(super) wait: bool,
    /// With --wait: seconds to wait for all outcomes (exit 3 if some did not come).
    #[arg(long, default_value_t = 3600)]
    pub(super) wait_timeout: u64,
    #[command(flatten)]
    pub(super) queue: QueueArgs,
    #[command(flatten)]
    pub(super) settings: SettingsArgs,
}
