//! The command line: argument structs here, each command a thin call into the library in
//! `commands`.

mod commands;
mod fleet;
mod settings;

use settings::SettingsArgs;

use commands::{build, plan, rebase, rebuild_failed, roll_out, run_worker, runtimes, submit, verify};
use fleet::{cancel, history, status};

use crate::core::image_ref::ImageRef;
use crate::core::request::{self, BuildRequest, ConfigInput, Revision, SourceLocation};
use crate::edge::source::{self};
use crate::error::{BuildError, ErrorClass};
use crate::queue::outcome::RetryPolicy;
use crate::queue::transport::{Brokers, Topology};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Builds web applications from source the way AWS App Runner builds a code-based service.
#[derive(Parser)]
#[command(name = "apprunner-build", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the resolved build plan as JSON (exit 2 with a one-line error if the input is bad).
    Plan {
        #[command(flatten)]
        what: What,
        /// Do not ask the registry to pin the runtime images by digest.
        #[arg(long)]
        offline: bool,
        /// Print the LLB of each solve instead of the plan.
        #[arg(long)]
        llb: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Build an image, streaming the deployment log; prints image@sha256:… last.
    Build(BuildArgs),
    /// List the managed runtime catalog: versions, pipeline, and which images the registry has.
    Runtimes {
        /// Do not ask the registry which images it has.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Consume build jobs from `RabbitMQ`, publishing events, log lines and failed jobs.
    Worker(WorkerArgs),
    /// Publish a build job for a git repository (or a local git checkout the workers can read).
    Submit(SubmitArgs),
    /// Resubmit failed jobs that match a filter.
    RebuildFailed(RebuildFailedArgs),
    /// Move an image onto the run image of another version of its runtime, by registry
    /// operations alone (a revised build without pre-run); prints image@sha256:… last.
    Rebase(RebaseArgs),
    /// Build an image again from what it records (commit, configuration, runtime images by
    /// digest), every step anew, and say whether the image manifest is the same, or where it
    /// differs (exit 0 the same, 1 different).
    Verify(VerifyArgs),
    /// Move every service on a runtime to a newer version: rebase what can be, rebuild the rest
    /// (jobs through the queue); safe to stop and run again.
    RollOut(RollOutArgs),
    /// What became of a deployment: queued, in progress, succeeded (its image), failed (its
    /// reason and class) or cancelled, from the history the broker keeps.
    Status {
        /// The deployment's operation id.
        operation_id: String,
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// A service's last deployments, oldest first, from the history the broker keeps.
    History {
        /// The service's name, as its jobs give it.
        #[arg(long)]
        service: String,
        /// How many deployments to show.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[command(flatten)]
        queue: QueueArgs,
    },
    /// Cancel a deployment: a queued one is never built, a running one stops with nothing
    /// pushed; either ends in one CANCELLED event. One that ended already is left as it is.
    Cancel {
        /// The deployment's operation id.
        operation_id: String,
        #[command(flatten)]
        queue: QueueArgs,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

#[derive(Args)]
struct QueueArgs {
    /// `RabbitMQ` URI; for a cluster, one per node (repeat the flag, or separate with commas):
    /// a lost connection moves to the next reachable node.
    #[arg(
        long,
        env = "APPRUNNER_AMQP_URI",
        value_delimiter = ',',
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp: Vec<String>,
    /// Prefix of every queue and exchange name.
    #[arg(long, env = "APPRUNNER_QUEUE_PREFIX", default_value = "apprunner-build")]
    queue_prefix: String,
    /// Members of each quorum queue declared (default: 3, or as many nodes as --amqp names if
    /// fewer, when it names several; with one URI, the broker's default: every node).
    #[arg(long, env = "APPRUNNER_QUORUM_SIZE")]
    quorum_size: Option<u32>,
}

impl QueueArgs {
    fn brokers(&self) -> Result<Brokers, BuildError> {
        Brokers::new(self.amqp.clone()).map_err(|e| BuildError::user(format!("--amqp: {e}")))
    }

    fn topology(&self) -> Result<Topology, BuildError> {
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
struct What {
    /// A local directory or a git URL (file://, http(s)://, ssh://, user@host:path).
    source: String,
    /// The source directory, from the repository root.
    #[arg(long, default_value = "/")]
    source_dir: String,
    /// Build settings as API values (JSON of `CodeConfigurationValues`); apprunner.yaml is then ignored.
    #[arg(long)]
    api_config: Option<PathBuf>,
    /// Branch, tag or commit to build (git sources; default: the default branch, or a local directory as it is).
    #[arg(long = "ref")]
    reference: Option<String>,
}

impl What {
    fn location(&self) -> SourceLocation {
        source::locate(&self.source)
    }

    /// The revision `--ref` names, or else a git source's default branch, a directory as it is.
    fn revision(&self, location: &SourceLocation) -> Revision {
        Revision::for_source(self.reference.as_deref(), location)
    }

    /// The configuration source `--api-config` selects: API with its values, or the repository's file.
    fn config(&self) -> Result<ConfigInput, BuildError> {
        let Some(path) = &self.api_config else { return Ok(ConfigInput::Repository) };
        Ok(ConfigInput::Api(api_config_file(path)?))
    }

    fn request(
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
struct BuildArgs {
    #[command(flatten)]
    what: What,
    /// Where to push the image (REGISTRY/REPOSITORY:TAG).
    #[arg(long)]
    image: Option<String>,
    /// Operation id for the log stream deployment/<id> (default: a new random one).
    #[arg(long)]
    operation_id: Option<String>,
    /// Also write the build result as JSON to this file (on success).
    #[arg(long)]
    result: Option<PathBuf>,
    /// Print log lines without App Runner's time prefix.
    #[arg(long)]
    no_timestamps: bool,
    /// Run every step anew: nothing from BuildKit's cache or the fleet cache, empty package
    /// caches, no image reuse (what `verify` does to rebuild an image).
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Args)]
struct WorkerArgs {
    #[command(flatten)]
    queue: QueueArgs,
    /// Builds at once (the consumer prefetch).
    #[arg(long, env = "APPRUNNER_CONCURRENCY", default_value_t = 2)]
    concurrency: u16,
    /// Attempts a job gets when `BuildKit`, the registry or the git host cannot be reached.
    #[arg(long, env = "APPRUNNER_MAX_ATTEMPTS", default_value_t = RetryPolicy::default().max_attempts)]
    max_attempts: u32,
    /// Seconds before the first retry; doubled for each later one.
    #[arg(long, env = "APPRUNNER_RETRY_DELAY", default_value_t = RetryPolicy::default().first_delay.as_secs_f64())]
    retry_delay: f64,
    /// Seconds running builds may go on after SIGTERM.
    #[arg(long, env = "APPRUNNER_GRACE", default_value_t = 600)]
    grace: u64,
    /// Address of the /healthz and /metrics endpoint ("off" for none).
    #[arg(long, env = "APPRUNNER_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: String,
    /// This worker's name in events and connection names (default: host name and pid).
    #[arg(long, env = "APPRUNNER_WORKER_ID")]
    worker_id: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    what: What,
    #[command(flatten)]
    queue: QueueArgs,
    /// Service name in the job (default: the source's name).
    #[arg(long)]
    service: Option<String>,
    /// Image repository to push to, REGISTRY/REPOSITORY[:TAG] (default: <registry>/apprunner-apps/<service>).
    #[arg(long)]
    image: Option<String>,
    /// RFC 3339 time after which the job must not start or go on.
    #[arg(long)]
    deadline: Option<String>,
    /// The deployment's operation id (default: a new one, 32 hex digits); printed first, the id
    /// `status` and `cancel` take.
    #[arg(long)]
    operation_id: Option<String>,
    /// Batch work: run only when no user's deployment waits (as roll-outs and rebuilds do).
    #[arg(long)]
    batch: bool,
    /// Follow the build's log and exit with its outcome (0 succeeded, 1 failed, 4 cancelled).
    #[arg(long)]
    wait: bool,
    /// With --wait: seconds to wait for the outcome before giving up (exit 3).
    #[arg(long, default_value_t = 3600)]
    wait_timeout: u64,
    /// With --wait: print log lines without App Runner's time prefix.
    #[arg(long)]
    no_timestamps: bool,
    #[arg(long, env = "APPRUNNER_REGISTRY", default_value = "127.0.0.1:5000")]
    registry: String,
}

#[derive(Args)]
struct RebuildFailedArgs {
    #[command(flatten)]
    queue: QueueArgs,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    runtime: Option<String>,
    /// USER, TRANSIENT or INTERNAL
    #[arg(long)]
    error_class: Option<String>,
    /// Only jobs that failed at least this long ago (30s, 15m, 2h, 7d).
    #[arg(long)]
    older_than: Option<String>,
    /// Only jobs that failed at most this long ago.
    #[arg(long)]
    newer_than: Option<String>,
    /// List what would be resubmitted; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The API values (JSON) in the file `--api-config` names.
fn api_config_file(path: &std::path::Path) -> Result<serde_json::Value, BuildError> {
    let unreadable = |e: std::io::Error| BuildError::user(format!("--api-config {}: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    let max = crate::core::config::MAX_CONFIG_BYTES;
    if size > max as u64 {
        return Err(BuildError::user(format!(
            "--api-config {} is {size} bytes; at most {max} are read",
            path.display()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    serde_json::from_str(&text)
        .map_err(|e| BuildError::user(format!("--api-config {} is not JSON: {e}", path.display())))
}

#[derive(Args)]
struct VerifyArgs {
    /// The image to check, REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    image: String,
    /// The git repository it was built from, when the image does not record it (a local
    /// repository: `file:///path`).
    #[arg(long)]
    source: Option<String>,
    /// The API settings it was built with (JSON of `CodeConfigurationValues`), when it was.
    #[arg(long)]
    api_config: Option<PathBuf>,
    /// Print log lines without App Runner's time prefix.
    #[arg(long)]
    no_timestamps: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Args)]
struct RebaseArgs {
    /// The image to move, REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST.
    image: String,
    /// The runtime version whose run image it moves onto.
    #[arg(long)]
    to_version: String,
    /// Where the moved image goes, REGISTRY/REPOSITORY:TAG (default: IMAGE's own tag).
    #[arg(long)]
    output: Option<String>,
    /// Operation id written on the image's index (default: a new random one).
    #[arg(long)]
    operation_id: Option<String>,
    /// Print log lines without App Runner's time prefix.
    #[arg(long)]
    no_timestamps: bool,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Args)]
struct RollOutArgs {
    /// The runtime whose services move (`python311`, `nodejs18`, …).
    #[arg(long)]
    runtime: String,
    /// The version they move to.
    #[arg(long)]
    to_version: String,
    /// Only these services (repeat the flag); default: every service the workers recorded.
    #[arg(long)]
    service: Vec<String>,
    /// Say what would be done; submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait for each submitted job's outcome and print it (exit 1 if any failed).
    #[arg(long)]
    wait: bool,
    /// With --wait: seconds to wait for all outcomes (exit 3 if some did not come).
    #[arg(long, default_value_t = 3600)]
    wait_timeout: u64,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    settings: SettingsArgs,
}

/// Parses the command line and runs the command. Exit codes: 0 done, 1 the build failed, 2 bad
/// input, 3 a service failed.
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (result, bad_input_code) = match cli.command {
        Command::Plan { what, offline, llb, settings } => (plan(what, offline, llb, settings).await, 2),
        Command::Build(args) => (build(args).await, 1),
        Command::Runtimes { offline, settings } => (runtimes(offline, settings).await, 2),
        Command::Worker(args) => (run_worker(args).await, 2),
        Command::Submit(args) => match submit(args).await {
            Ok(code) => return code,
            Err(e) => (Err(e), 2),
        },
        Command::RebuildFailed(args) => (rebuild_failed(args).await, 2),
        Command::Rebase(args) => (rebase(args).await, 2),
        Command::Verify(args) => match Box::pin(verify(args)).await {
            Ok(code) => return code,
            Err(e) => (Err(e), 2),
        },
        Command::RollOut(args) => match roll_out(args).await {
            Ok(code) => return code,
            Err(e) => (Err(e), 2),
        },
        Command::Status { operation_id, queue } => (status(&operation_id, &queue).await, 2),
        Command::History { service, limit, queue } => (history(&service, limit, &queue).await, 2),
        Command::Cancel { operation_id, queue, settings } => match cancel(&operation_id, &queue, settings).await {
            Ok(code) => return code,
            Err(e) => (Err(e), 2),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if !e.lines.is_empty() => {
            eprintln!("error: {} problems, one per line:", e.lines.len());
            for line in &e.lines {
                eprintln!("{line}");
            }
            ExitCode::from(if e.class == ErrorClass::User { bad_input_code } else { 3 })
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.class == ErrorClass::User { bad_input_code } else { 3 })
        }
    }
}
