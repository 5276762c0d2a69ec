//! Each command: read its arguments, call the library, print what a person needs.

use super::args::{
    api_config_file, BuildArgs, RebaseArgs, RebuildFailedArgs, RollOutArgs, SubmitArgs, VerifyArgs, What, WorkerArgs,
};
use super::settings::SettingsArgs;
use crate::core::catalog::RuntimeCatalog;
use crate::core::image_ref::{split_tag, ImageRef};
use crate::core::request::{self, Revision, SourceLocation};
use crate::edge::rebase::RebaseOutcome;
use crate::edge::signing::PublicKey;
use crate::edge::source;
use crate::error::{BuildError, ErrorClass};
use crate::log::{DeploymentLog, TerminalSink};
use crate::pipeline::{self, ImageLookup};
use crate::queue::client::{self, FailedFilter};
use crate::queue::metrics::Metrics;
use crate::queue::outcome::RetryPolicy;
use crate::queue::rollout;
use crate::queue::transport::Lane;
use crate::queue::wire::checked::CheckedJob;
use crate::queue::wire::job::{BuildJob, ImageTarget, JobStatus, Repository};
use crate::queue::worker::{self, WorkerConfig};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn plan(what: What, offline: bool, llb: bool, settings: SettingsArgs) -> Result<(), BuildError> {
    let settings = settings.settings()?;
    let req = what.request(&settings.registry, None, Some("0".repeat(32)))?;
    let registry = settings.registry_client();
    // The plan's own progress lines are not the point here; keep stdout for the JSON.
    let log = DeploymentLog::new(&req.operation_id, vec![]);
    let images = if offline { ImageLookup::Offline } else { ImageLookup::IfPresent(&registry) };
    let prepared = pipeline::prepare(&settings, &req, images, &log).await?;
    for w in &prepared.plan.warnings {
        eprintln!("warning: {w}");
    }
    if llb {
        println!("# image solve {}", prepared.solves.image.digest());
        print!("{}", crate::llb::render(&prepared.solves.image));
        if let Some(p) = &prepared.solves.post_build {
            println!("# post-build solve {}", p.digest());
            print!("{}", crate::llb::render(p));
        }
    } else {
        let json = serde_json::to_string_pretty(&prepared.plan).map_err(|e| BuildError::internal(e.to_string()))?;
        println!("{json}");
    }
    Ok(())
}

pub(super) async fn build(args: BuildArgs) -> Result<(), BuildError> {
    let settings = pipeline::Settings { no_cache: args.no_cache, ..args.settings.settings()? };
    let req = args.what.request(&settings.registry, args.image.as_deref(), args.operation_id)?;
    let log = DeploymentLog::new(&req.operation_id, vec![Arc::new(TerminalSink { timestamps: !args.no_timestamps })]);
    let outcome = pipeline::run(&settings, &req, &log).await?;
    if let Some(path) = args.result {
        let json = serde_json::to_string_pretty(&outcome).map_err(|e| BuildError::internal(e.to_string()))?;
        std::fs::write(&path, json + "\n")
            .map_err(|e| BuildError::internal(format!("--result {}: {e}", path.display())))?;
    }
    println!("{}", outcome.image);
    Ok(())
}

pub(super) async fn runtimes(offline: bool, settings: SettingsArgs) -> Result<(), BuildError> {
    let settings = settings.settings()?;
    let catalog = RuntimeCatalog::builtin();
    let host = settings.registry.as_str();
    let present = if offline {
        Default::default()
    } else {
        crate::edge::image::runtime_image_presence(&settings.registry_client(), host, catalog).await
    };
    for rt in catalog.runtimes() {
        let versions = rt.versions();
        let has = |v: &str| present.contains(&(rt.name.clone(), v.to_string()));
        let shown: Vec<String> =
            versions.iter().map(|v| if offline || has(v) { (*v).to_string() } else { format!("{v}!") }).collect();
        let have = versions.iter().filter(|v| has(v)).count();
        let images = if offline { String::new() } else { format!("  [images for {have}/{} versions]", versions.len()) };
        println!("{:<11} {:<12} {:<9} {}{images}", rt.name, rt.api_name, rt.build_process, shown.join(" "));
    }
    if !offline {
        let then = if settings.stand_ins.is_some() {
            "a build that needs one makes it from its stand-in recipe first (where the runtime has one)"
        } else {
            "builds locked to it fail naming the missing image and the command that makes it"
        };
        println!("(a version marked ! has no build or run image in {host} yet; {then})");
    }
    Ok(())
}

pub(super) async fn run_worker(args: WorkerArgs) -> Result<(), BuildError> {
    let settings = args.settings.settings()?;
    let worker_id = args.worker_id.unwrap_or_else(|| process_name("worker"));
    if args.concurrency == 0 || args.max_attempts == 0 || args.retry_delay.is_nan() || args.retry_delay < 0.0 {
        return Err(BuildError::user(
            "--concurrency and --max-attempts must be at least 1, --retry-delay a number of seconds",
        ));
    }
    if let Some(v) = crate::edge::buildkit::check(&settings.buildkit).await? {
        tracing::info!("{v} at {}", settings.buildkit);
    } else {
        tracing::warn!("BuildKit at {} cannot be reached now; jobs wait and retry", settings.buildkit);
    }
    if let Some(signer) = &settings.signer {
        tracing::info!(
            "every image pushed is signed with key {}, with its provenance (builder {}) and SBOM as attestations",
            signer.fingerprint,
            settings.builder_id
        );
    } else {
        tracing::info!("images are not signed: no --signing-key (APPRUNNER_SIGNING_KEY)");
    }
    if let Some(b) = &settings.stand_ins {
        tracing::info!("a runtime image a build lacks is made first by {}", b.script.display());
    } else {
        tracing::info!("a build whose runtime image is missing fails naming it (--build-runtime-images off)");
    }
    let metrics = Arc::new(Metrics::default());
    if args.metrics_addr != "off" {
        let listener = tokio::net::TcpListener::bind(&args.metrics_addr).await.map_err(|e| {
            BuildError::user(format!("--metrics-addr {}: {e}; give HOST:PORT or off", args.metrics_addr))
        })?;
        tokio::spawn(crate::queue::metrics::serve(listener, metrics.clone()));
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        let _ = tx.send(true);
    });
    let cfg = WorkerConfig {
        brokers: args.queue.brokers()?,
        topology: args.queue.topology()?,
        concurrency: args.concurrency,
        retry: RetryPolicy { max_attempts: args.max_attempts, first_delay: Duration::from_secs_f64(args.retry_delay) },
        grace: Duration::from_secs(args.grace),
        worker_id,
        settings,
    };
    worker::run(cfg, metrics, rx).await.map_err(|e| BuildError::internal(e.to_string()))
}

/// This process's default name in events and connection names: the host's name (`fallback`
/// when it has none) and the pid.
pub(super) fn process_name(fallback: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").map_or_else(|_| fallback.into(), |h| h.trim().to_string());
    format!("{host}-{}", std::process::id())
}

pub(super) fn signal(kind: tokio::signal::unix::SignalKind) -> Result<tokio::signal::unix::Signal, BuildError> {
    tokio::signal::unix::signal(kind).map_err(|e| BuildError::internal(format!("signal handler: {e}")))
}

pub(super) async fn submit(args: SubmitArgs) -> Result<ExitCode, BuildError> {
    let what = &args.what;
    let (url, revision) = match what.location() {
        SourceLocation::Git(u) => {
            let revision = what.revision(&SourceLocation::Git(u.clone()));
            (u, revision)
        }
        SourceLocation::Local(p) => {
            // Workers fetch the source themselves: a local checkout is sent as file:// at its commit.
            let root = p.canonicalize().map_err(|e| BuildError::user(format!("{}: {e}", p.display())))?;
            let revision = match &what.reference {
                Some(r) => Revision::from_ref(r),
                None => Revision::Commit(source::head_commit(&root).await.ok_or_else(|| {
                    BuildError::user(format!("{} is not a git repository with a commit; submit sends a repository the workers fetch (git URL, or a local git checkout on a shared filesystem)", root.display()))
                })?),
            };
            (format!("file://{}", root.display()), revision)
        }
    };
    let service = args
        .service
        .clone()
        .unwrap_or_else(|| request::default_service_name(&SourceLocation::Git(url.clone()), &what.source_dir));
    let image = args.image.clone().unwrap_or_else(|| request::default_repository(&args.registry, &service));
    let (repository, tag) = split_tag(&image);
    let image = ImageTarget { repository: repository.to_string(), tag: tag.map(str::to_string) };
    let repository = Repository::at(url, &revision, what.source_dir.clone());
    let mut job = BuildJob::deploy(&service, repository, &what.config()?, image, args.deadline.clone());
    if let Some(id) = &args.operation_id {
        job.operation_id.clone_from(id);
    }
    // The same checks a worker makes, so a bad job never reaches the queue from here.
    let bytes = serde_json::to_vec(&job).map_err(|e| BuildError::internal(e.to_string()))?;
    CheckedJob::parse(&bytes).map_err(|e| BuildError::user(e.0))?;
    let topology = args.queue.topology()?;
    let timed = !args.no_timestamps;
    let print = |line: &crate::log::LogLine| println!("{}", if timed { line.render_timed() } else { line.render() });
    let wait = Duration::from_secs(args.wait_timeout);
    let follow: Option<client::Follow<'_>> = args.wait.then_some((&print, wait));
    println!("operation {}", job.operation_id);
    let lane = if args.batch { Lane::Batch } else { Lane::User };
    let result = client::submit(&args.queue.brokers()?, &topology, &job, lane, follow).await?;
    match result {
        None => {
            println!("submitted job {}", job.job_id);
            Ok(ExitCode::SUCCESS)
        }
        Some(ev) if ev.status == JobStatus::Succeeded => {
            println!("{}", ev.image.unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        Some(ev) if ev.status == JobStatus::Cancelled => {
            eprintln!("error: deployment {} was cancelled", job.operation_id);
            Ok(ExitCode::from(4))
        }
        Some(ev) => {
            let e = ev.error.map(|e| format!("{} error: {}", e.class, e.message)).unwrap_or_default();
            eprintln!("error: build failed: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

pub(super) async fn rebuild_failed(args: RebuildFailedArgs) -> Result<(), BuildError> {
    let class = args
        .error_class
        .as_deref()
        .map(str::parse::<ErrorClass>)
        .transpose()
        .map_err(|e| BuildError::user(format!("--error-class {e}")))?;
    let filter = FailedFilter {
        service: args.service,
        runtime: args.runtime,
        class,
        older_than: args.older_than.as_deref().map(client::parse_age).transpose()?,
        newer_than: args.newer_than.as_deref().map(client::parse_age).transpose()?,
    };
    let topology = args.queue.topology()?;
    let dry_run = args.dry_run;
    let done = client::rebuild_failed(&args.queue.brokers()?, &topology, &filter, dry_run).await?;
    let mut n = 0;
    for r in &done {
        if let (Some(new_id), Some(old)) = (&r.repeat_of, &r.entry.job) {
            let verb = if dry_run { "would remove" } else { "removed" };
            println!(
                "{verb} a second failed entry of {} (operation {}; resubmitted once, as {new_id})",
                old.job_id, old.operation_id
            );
            continue;
        }
        let (Some(new), Some(old)) = (&r.resubmitted, &r.entry.job) else { continue };
        n += 1;
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
    println!(
        "{n} of {} failed jobs {}",
        done.len(),
        if dry_run { "match (dry run: nothing changed)" } else { "resubmitted" }
    );
    Ok(())
}

pub(super) async fn rebase(args: RebaseArgs) -> Result<(), BuildError> {
    let settings = args.settings.settings()?;
    let from = ImageRef::parse(&args.image)?;
    let target = match &args.output {
        Some(output) => ImageRef::parse(output)?,
        None if from.tag.is_some() => ImageRef { digest: None, ..from.clone() },
        None => {
            return Err(BuildError::user(format!(
                "{from} names no tag; give --output REGISTRY/REPOSITORY:TAG for the rebased image"
            )))
        }
    };
    if target.digest.is_some() || target.tag.is_none() {
        return Err(BuildError::user(format!("--output {target} must be REGISTRY/REPOSITORY:TAG, without a digest")));
    }
    let operation_id = args.operation_id.unwrap_or_else(request::new_operation_id);
    request::check_operation_id(&operation_id)?;
    let log = DeploymentLog::new(&operation_id, vec![Arc::new(TerminalSink { timestamps: !args.no_timestamps })]);
    match pipeline::rebase(&settings, &from, &args.to_version, &target, &operation_id, &log).await? {
        RebaseOutcome::Moved(rebased) => {
            println!("{}", rebased.image);
            Ok(())
        }
        RebaseOutcome::Refused(refusal) => Err(refusal.into()),
    }
}

pub(super) async fn verify(args: VerifyArgs) -> Result<ExitCode, BuildError> {
    let settings = args.settings.settings()?;
    let image = ImageRef::parse(&args.image)?;
    let api_config = args.api_config.as_deref().map(api_config_file).transpose()?;
    let key = args.key.as_deref().map(PublicKey::from_file).transpose().map_err(BuildError::user)?;
    let overrides = pipeline::Overrides { source: args.source.clone(), api_config, key };
    let log = DeploymentLog::new("verify", vec![Arc::new(TerminalSink { timestamps: !args.no_timestamps })]);
    let verdict = pipeline::verify(&settings, &image, overrides, &log).await?;
    if let Some(fingerprint) = &verdict.signed_by {
        println!("signed: the image and its provenance verify with key {fingerprint}; rebuilt from that provenance");
    }
    if verdict.differences.is_empty() {
        println!("verified: {} is what its commit, configuration and runtime images build", verdict.image);
        return Ok(ExitCode::SUCCESS);
    }
    println!("differs: {} was built again as {}", verdict.image, verdict.rebuilt);
    for line in &verdict.differences {
        println!("{line}");
    }
    Ok(ExitCode::from(1))
}

pub(super) async fn roll_out(args: RollOutArgs) -> Result<ExitCode, BuildError> {
    let settings = args.settings.settings()?;
    let rt = RuntimeCatalog::builtin().lookup(&args.runtime)?;
    let to = args.to_version.trim().to_string();
    rt.check_version(&to).map_err(|e| BuildError::user(format!("--to-version: {e}")))?;
    let survey = rollout::survey(&settings, rt, &to, &args.service, &|line| println!("{line}")).await?;
    let (summary, jobs) = (survey.summary(&rt.name, &to), survey.jobs);
    if args.dry_run || jobs.is_empty() {
        println!("{summary}{}", if args.dry_run { " (dry run: nothing submitted)" } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    let topology = args.queue.topology()?;
    let print = |ev: &crate::queue::wire::job::JobEvent| {
        let how = if ev.rebased_from.is_some() { "rebased" } else { "built" };
        match (&ev.error, &ev.image) {
            (Some(e), _) => println!("{}: FAILED, {} error: {}", ev.service.name, e.class, e.message),
            (None, image) => println!(
                "{}: SUCCEEDED, {how} on {} {}: {}",
                ev.service.name,
                ev.runtime.as_deref().unwrap_or_default(),
                ev.runtime_version.as_deref().unwrap_or_default(),
                image.as_deref().unwrap_or_default()
            ),
        }
    };
    let wait = args.wait.then_some((Duration::from_secs(args.wait_timeout), &print as &(dyn Fn(&_) + Sync)));
    let events = client::submit_all(&args.queue.brokers()?, &topology, &jobs, wait).await?;
    println!("{summary}; {} jobs submitted", jobs.len());
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let failed = events.iter().filter(|e| e.status == JobStatus::Failed).count();
    if events.len() < jobs.len() {
        eprintln!(
            "error: {} of {} jobs sent no outcome within {}s",
            jobs.len() - events.len(),
            jobs.len(),
            args.wait_timeout
        );
        return Ok(ExitCode::from(3));
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
