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
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List the managed runtime catalog.
    Runtimes,
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
        })
    }
}

fn request(what: &What, image: Option<String>, operation_id: Option<String>) -> Result<BuildRequest, BuildError> {
    let (config_source, api_values) = match &what.api_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| BuildError::user(format!("--api-config {}: {e}", path.display())))?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| BuildError::user(format!("--api-config {} is not JSON: {e}", path.display())))?;
            (ConfigSource::Api, Some(v))
        }
        None => (ConfigSource::Repository, None),
    };
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
    let registry = apprunner_build::registry::Registry::new(settings.registry_credentials.clone());
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

async fn run_build(what: What, image: Option<String>, operation_id: Option<String>, settings: SettingsArgs) -> Result<(), BuildError> {
    let settings = settings.settings()?;
    let req = request(&what, image, operation_id)?;
    let log = DeploymentLog::new(&req.operation_id, vec![Arc::new(TerminalSink)]);
    let outcome = build::run(&settings, &req, &log).await?;
    println!("{}", outcome.image);
    Ok(())
}

fn runtimes() {
    for rt in RuntimeCatalog::builtin().runtimes() {
        let mut versions: Vec<&str> = Vec::new();
        for r in &rt.releases {
            if !versions.contains(&r.version.as_str()) {
                versions.push(&r.version);
            }
        }
        println!("{:<11} {:<12} {:<9} {}", rt.name, rt.api_name, rt.build_process, versions.join(" "));
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_env("APPRUNNER_LOG")).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let (result, bad_input_code) = match cli.command {
        Command::Plan { what, offline, llb, settings } => (plan(what, offline, llb, settings).await, 2),
        Command::Build { what, image, operation_id, settings } => (run_build(what, image, operation_id, settings).await, 1),
        Command::Runtimes => {
            runtimes();
            (Ok(()), 0)
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
