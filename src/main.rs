use apprunner_build::build::{self, BuildRequest, Settings};
use apprunner_build::buildkit::BuildkitAddr;
use apprunner_build::catalog::RuntimeCatalog;
use apprunner_build::config::ConfigSource;
use apprunner_build::error::BuildError;
use apprunner_build::log::{DeploymentLog, TerminalSink};
use apprunner_build::plan::StepNetwork;
use apprunner_build::registry::Credentials;
use apprunner_build::source::SourceLocation;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

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
    Build {
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
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List the managed runtime catalog: versions, pipeline, and which images the registry has.
    Runtimes {
        /// Do not ask the registry which images it has.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Consume build jobs from RabbitMQ, publishing events, log lines and failed jobs.
    Worker {
        #[command(flatten)]
        queue: QueueArgs,
        /// Builds at once (the consumer prefetch).
        #[arg(long, env = "APPRUNNER_CONCURRENCY", default_value_t = 2)]
        concurrency: u16,
        /// Attempts a job gets when BuildKit, the registry or the git host cannot be reached.
        #[arg(long, env = "APPRUNNER_MAX_ATTEMPTS", default_value_t = 4)]
        max_attempts: u32,
        /// Seconds before the first retry; doubled for each later one.
        #[arg(long, env = "APPRUNNER_RETRY_DELAY", default_value_t = 10.0)]
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
    },
    /// Publish a build job for a git repository (or a local git checkout the workers can read).
    Submit {
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
        /// Follow the build's log and exit with its outcome (0 succeeded, 1 failed).
        #[arg(long)]
        wait: bool,
        #[arg(long, env = "APPRUNNER_REGISTRY", default_value = "127.0.0.1:5000")]
        registry: String,
    },
    /// Resubmit failed jobs that match a filter.
    RebuildFailed {
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
    },
}

#[derive(Args)]
struct QueueArgs {
    /// RabbitMQ URI.
    #[arg(long, env = "APPRUNNER_AMQP_URI", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Prefix of every queue and exchange name.
    #[arg(long, env = "APPRUNNER_QUEUE_PREFIX", default_value = "apprunner-build")]
    queue_prefix: String,
}

#[derive(Args)]
struct What {
    /// A local directory or a git URL (file://, http(s)://, ssh://, user@host:path).
    source: String,
    /// The source directory, from the repository root.
    #[arg(long, default_value = "/")]
    source_dir: String,
    /// Build settings as API values (JSON of CodeConfigurationValues); apprunner.yaml is then ignored.
    #[arg(long)]
    api_config: Option<PathBuf>,
    /// Branch, tag or commit to build (git sources; default: the default branch, or a local directory as it is).
    #[arg(long = "ref")]
    reference: Option<String>,
}

#[derive(Args)]
struct SettingsArgs {
    /// docker-unix:///var/run/docker.sock, unix:///run/buildkit/buildkitd.sock or tcp://host:port
    #[arg(long, env = "APPRUNNER_BUILDKIT", default_value = "docker-unix:///var/run/docker.sock")]
    buildkit: String,
    /// Registry of the runtime images, source images and (by default) the built images.
    #[arg(long, env = "APPRUNNER_REGISTRY", default_value = "127.0.0.1:5000")]
    registry: String,
    /// PEM bundle every build step trusts (mounted read-only, never in the image).
    #[arg(long, env = "APPRUNNER_CA_BUNDLE", default_value = "/etc/ssl/certs/ca-certificates.crt")]
    ca_bundle: PathBuf,
    /// Registry hosts to reach over plain HTTP (loopback ones always are), comma-separated.
    #[arg(long, env = "APPRUNNER_INSECURE_REGISTRIES", value_delimiter = ',')]
    insecure_registries: Vec<String>,
    /// Mount no CA bundle.
    #[arg(long)]
    no_ca_bundle: bool,
    /// Run build steps on the host's network (the `network.host` entitlement) instead of BuildKit's sandbox.
    #[arg(long, env = "APPRUNNER_HOST_NETWORK")]
    host_network: bool,
    /// Time limit of one build, in seconds.
    #[arg(long, env = "APPRUNNER_BUILD_TIMEOUT", default_value_t = 1800)]
    timeout: u64,
}

impl SettingsArgs {
    fn settings(&self) -> Result<Settings, BuildError> {
        let buildkit: BuildkitAddr = self.buildkit.parse().map_err(BuildError::user)?;
        let ca_bundle = (!self.no_ca_bundle).then(|| self.ca_bundle.clone());
        if let Some(p) = &ca_bundle {
            if !p.is_file() {
                return Err(BuildError::user(format!("CA bundle {} does not exist; give --ca-bundle PATH or --no-ca-bundle", p.display())));
            }
        }
        let registry_credentials = std::env::var("APPRUNNER_REGISTRY_USERNAME")
            .ok()
            .map(|username| Credentials { username, password: std::env::var("APPRUNNER_REGISTRY_PASSWORD").unwrap_or_default() });
        Ok(Settings {
            buildkit,
            registry: self.registry.clone(),
            ca_bundle,
            network: if self.host_network { StepNetwork::Host } else { StepNetwork::Sandbox },
            timeout: Duration::from_secs(self.timeout),
            registry_credentials,
            insecure_registries: self.insecure_registries.clone(),
        })
    }
}

/// The configuration source `--api-config` selects: API with its values, or the repository's file.
fn config_source(what: &What) -> Result<(ConfigSource, Option<serde_json::Value>), BuildError> {
    match &what.api_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| BuildError::user(format!("--api-config {}: {e}", path.display())))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| BuildError::user(format!("--api-config {} is not JSON: {e}", path.display())))?;
            Ok((ConfigSource::Api, Some(v)))
        }
        None => Ok((ConfigSource::Repository, None)),
    }
}

fn request(what: &What, image: Option<String>, operation_id: Option<String>) -> Result<BuildRequest, BuildError> {
    let (config_source, api_values) = config_source(what)?;
    let operation_id = operation_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if operation_id.is_empty() || !operation_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(BuildError::user(format!("operation id `{operation_id}` must be letters, digits, - and _ (App Runner uses 32 hex digits)")));
    }
    Ok(BuildRequest {
        location: SourceLocation::parse(&what.source),
        reference: what.reference.clone(),
        source_dir: what.source_dir.clone(),
        config_source,
        api_values,
        image,
        service_name: None,
        operation_id,
        trigger: "SERVICE_DEPLOY".into(),
    })
}

async fn plan(what: What, offline: bool, llb: bool, settings: SettingsArgs) -> Result<(), BuildError> {
    let settings = settings.settings()?;
    let req = request(&what, None, Some("0".repeat(32)))?;
    let registry = settings.registry_client();
    // The plan's own progress lines are not the point here; keep stdout for the JSON.
    let log = DeploymentLog::new(&req.operation_id, vec![]);
    let prepared = build::prepare(&settings, &req, (!offline).then_some(&registry), &log).await?;
    if llb {
        println!("# image solve {}", prepared.solves.image.digest());
        print!("{}", apprunner_build::llb::render(&prepared.solves.image));
        if let Some(p) = &prepared.solves.post_build {
            println!("# post-build solve {}", p.digest());
            print!("{}", apprunner_build::llb::render(p));
        }
    } else {
        println!("{}", serde_json::to_string_pretty(&prepared.plan).expect("json"));
    }
    Ok(())
}

async fn run_build(what: What, image: Option<String>, operation_id: Option<String>, result: Option<PathBuf>, settings: SettingsArgs) -> Result<(), BuildError> {
    let settings = settings.settings()?;
    let req = request(&what, image, operation_id)?;
    let log = DeploymentLog::new(&req.operation_id, vec![Arc::new(TerminalSink)]);
    let outcome = build::run(&settings, &req, &log).await?;
    if let Some(path) = result {
        let json = serde_json::to_string_pretty(&outcome).expect("json");
        std::fs::write(&path, json + "\n").map_err(|e| BuildError::internal(format!("--result {}: {e}", path.display())))?;
    }
    println!("{}", outcome.image);
    Ok(())
}

async fn runtimes(offline: bool, settings: SettingsArgs) -> Result<(), BuildError> {
    use futures_util::stream::{self, StreamExt};
    let settings = settings.settings()?;
    let catalog = RuntimeCatalog::builtin();
    let registry = settings.registry_client();
    let host = settings.registry.clone();
    let mut rows = Vec::new();
    for rt in catalog.runtimes() {
        let versions: Vec<String> = rt.versions().into_iter().map(str::to_string).collect();
        rows.push((rt, versions));
    }
    // Which (runtime, version) have both images, asked of the registry a few at a time.
    let wanted: Vec<(String, String, String)> = rows
        .iter()
        .flat_map(|(rt, vs)| vs.iter().map(|v| (rt.name.clone(), rt.build_image.replace("{version}", v), rt.run_image.replace("{version}", v))))
        .collect();
    let present: std::collections::HashSet<(String, String)> = if offline {
        Default::default()
    } else {
        stream::iter(wanted)
            .map(|(name, build, run)| {
                let (registry, host) = (&registry, &host);
                async move {
                    let has = |image: String| async move {
                        let (repo, tag) = image.rsplit_once(':').expect("catalog images have tags");
                        matches!(registry.manifest(host, repo, tag).await, Ok(Some(_)))
                    };
                    let version = build.rsplit_once(':').map(|(_, t)| t.trim_end_matches("-build").to_string()).unwrap_or_default();
                    (has(build).await && has(run).await).then_some((name, version))
                }
            })
            .buffer_unordered(16)
            .filter_map(|x| async move { x })
            .collect()
            .await
    };
    for (rt, versions) in &rows {
        let shown: Vec<String> =
            versions.iter().map(|v| if offline || present.contains(&(rt.name.clone(), v.clone())) { v.clone() } else { format!("{v}!") }).collect();
        let have = versions.iter().filter(|v| present.contains(&(rt.name.clone(), (*v).clone()))).count();
        let images = if offline { String::new() } else { format!("  [images for {have}/{} versions]", versions.len()) };
        println!("{:<11} {:<12} {:<9} {}{images}", rt.name, rt.api_name, rt.build_process, shown.join(" "));
    }
    if !offline {
        println!("(a version marked ! has no build or run image in {host}; builds locked to it fail naming the missing image)");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    queue: QueueArgs,
    concurrency: u16,
    max_attempts: u32,
    retry_delay: f64,
    grace: u64,
    metrics_addr: String,
    worker_id: Option<String>,
    settings: SettingsArgs,
) -> Result<(), BuildError> {
    use apprunner_build::worker::{self, WorkerConfig};
    let settings = settings.settings()?;
    let worker_id = worker_id.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    if concurrency == 0 || max_attempts == 0 || retry_delay.is_nan() || retry_delay < 0.0 {
        return Err(BuildError::user("--concurrency and --max-attempts must be at least 1, --retry-delay a number of seconds"));
    }
    let metrics = Arc::new(apprunner_build::metrics::Metrics::default());
    if metrics_addr != "off" {
        let listener = tokio::net::TcpListener::bind(&metrics_addr)
            .await
            .map_err(|e| BuildError::user(format!("--metrics-addr {metrics_addr}: {e}; give HOST:PORT or off")))?;
        tokio::spawn(apprunner_build::metrics::serve(listener, metrics.clone()));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        let _ = tx.send(true);
    });
    let cfg = WorkerConfig {
        amqp_uri: queue.amqp,
        topology: apprunner_build::queue::Topology::new(&queue.queue_prefix),
        concurrency,
        max_attempts,
        retry_delay: Duration::from_secs_f64(retry_delay),
        grace: Duration::from_secs(grace),
        worker_id,
        settings,
    };
    worker::run(cfg, metrics, rx).await.map_err(|e| BuildError::internal(e.to_string()))
}

async fn submit(
    what: What,
    queue: QueueArgs,
    service: Option<String>,
    image: Option<String>,
    deadline: Option<String>,
    wait: bool,
    registry: String,
) -> Result<ExitCode, BuildError> {
    use apprunner_build::job::*;
    let (url, reference) = match SourceLocation::parse(&what.source) {
        SourceLocation::Git(u) => (u, what.reference.clone()),
        SourceLocation::Local(p) => {
            // Workers fetch the source themselves: a local checkout is sent as file:// at its commit.
            let root = p.canonicalize().map_err(|e| BuildError::user(format!("{}: {e}", p.display())))?;
            let head = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&root).output().ok().filter(|o| o.status.success());
            let commit = head.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).ok_or_else(|| {
                BuildError::user(format!("{} is not a git repository with a commit; submit sends a repository the workers fetch (git URL, or a local git checkout on a shared filesystem)", root.display()))
            })?;
            (format!("file://{}", root.display()), what.reference.clone().or(Some(commit)))
        }
    };
    let service = service.unwrap_or_else(|| apprunner_build::registry::repository_component(&SourceLocation::Git(url.clone()).name().unwrap_or_default()));
    let (config_source, values) = config_source(&what)?;
    let image = image.unwrap_or_else(|| format!("{registry}/apprunner-apps/{service}"));
    let (repository, tag) = match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), Some(t.to_string())),
        _ => (image.clone(), None),
    };
    let operation_id = uuid::Uuid::new_v4().simple().to_string();
    let is_commit = reference.as_deref().is_some_and(|r| r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()));
    let job = BuildJob {
        version: JOB_VERSION,
        job_id: format!("{service}-{}", &operation_id[..12]),
        operation_id: operation_id.clone(),
        service: Service { name: service, id: None },
        repository: Repository {
            url,
            branch: reference.clone().filter(|_| !is_commit),
            commit: reference.filter(|_| is_commit),
            source_directory: what.source_dir.clone(),
        },
        configuration: Configuration { source: config_source, values },
        image: ImageTarget { repository, tag },
        deadline,
        trigger: Some("SERVICE_DEPLOY".into()),
    };
    // The same checks a worker makes, so a bad job never reaches the queue from here.
    BuildJob::parse(&serde_json::to_vec(&job).expect("json")).map_err(BuildError::user)?;
    let topology = apprunner_build::queue::Topology::new(&queue.queue_prefix);
    let print = |line: &apprunner_build::log::LogLine| println!("{}", line.render());
    let follow: Option<&(dyn Fn(&apprunner_build::log::LogLine) + Sync)> = if wait { Some(&print) } else { None };
    let result = apprunner_build::client::submit(&queue.amqp, &topology, &job, follow).await.map_err(BuildError::transient)?;
    match result {
        None => {
            println!("submitted job {} (operation {})", job.job_id, job.operation_id);
            Ok(ExitCode::SUCCESS)
        }
        Some(ev) if ev.status == JobStatus::Succeeded => {
            println!("{}", ev.image.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Some(ev) => {
            let e = ev.error.map(|e| format!("{} error: {}", e.class, e.message)).unwrap_or_default();
            eprintln!("error: build failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

async fn rebuild_failed(
    queue: QueueArgs,
    service: Option<String>,
    runtime: Option<String>,
    error_class: Option<String>,
    older_than: Option<String>,
    newer_than: Option<String>,
    dry_run: bool,
) -> Result<(), BuildError> {
    use apprunner_build::client::{self, FailedFilter};
    use apprunner_build::error::ErrorClass;
    let class = match error_class.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None => None,
        Some("USER") => Some(ErrorClass::User),
        Some("TRANSIENT") => Some(ErrorClass::Transient),
        Some("INTERNAL") => Some(ErrorClass::Internal),
        Some(other) => return Err(BuildError::user(format!("--error-class `{other}` is not a class; expected USER, TRANSIENT or INTERNAL"))),
    };
    let filter = FailedFilter {
        service,
        runtime,
        class,
        older_than: older_than.as_deref().map(client::parse_age).transpose().map_err(BuildError::user)?,
        newer_than: newer_than.as_deref().map(client::parse_age).transpose().map_err(BuildError::user)?,
    };
    let topology = apprunner_build::queue::Topology::new(&queue.queue_prefix);
    let done = client::rebuild_failed(&queue.amqp, &topology, &filter, dry_run).await.map_err(BuildError::transient)?;
    let mut n = 0;
    for r in &done {
        let Some(new) = &r.resubmitted else { continue };
        n += 1;
        let old = r.entry.job.as_ref().expect("resubmitted entries hold a job");
        println!(
            "{} {} (service {}, {} error, failed {}: {}) as {}",
            if dry_run { "would resubmit" } else { "resubmitted" },
            old.job_id,
            old.service.name,
            r.entry.class,
            r.entry.failed_at,
            r.entry.reason,
            new.job_id
        );
    }
    println!("{n} of {} failed jobs {}", done.len(), if dry_run { "match (dry run: nothing changed)" } else { "resubmitted" });
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("APPRUNNER_LOG")).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let (result, bad_input_code) = match cli.command {
        Command::Plan { what, offline, llb, settings } => (plan(what, offline, llb, settings).await, 2),
        Command::Build { what, image, operation_id, result, settings } => (run_build(what, image, operation_id, result, settings).await, 1),
        Command::Runtimes { offline, settings } => (runtimes(offline, settings).await, 2),
        Command::Worker { queue, concurrency, max_attempts, retry_delay, grace, metrics_addr, worker_id, settings } => {
            (worker(queue, concurrency, max_attempts, retry_delay, grace, metrics_addr, worker_id, settings).await, 2)
        }
        Command::Submit { what, queue, service, image, deadline, wait, registry } => {
            match submit(what, queue, service, image, deadline, wait, registry).await {
                Ok(code) => return code,
                Err(e) => (Err(e), 2),
            }
        }
        Command::RebuildFailed { queue, service, runtime, error_class, older_than, newer_than, dry_run } => {
            (rebuild_failed(queue, service, runtime, error_class, older_than, newer_than, dry_run).await, 2)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.class == apprunner_build::error::ErrorClass::User { bad_input_code } else { 3 })
        }
    }
}
