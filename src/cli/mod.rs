//! The command line: the commands here, their arguments in `args`, each command a thin call
//! into the library in `commands` (`fleet`: status, history, cancel).

mod args;
mod commands;
mod fleet;
mod settings;
mod watch;

use args::{
    BuildArgs, QueueArgs, RebaseArgs, RebuildFailedArgs, RollOutArgs, SubmitArgs, VerifyArgs, What, WorkerArgs,
};
use settings::SettingsArgs;

use commands::{build, plan, rebase, rebuild_failed, roll_out, run_worker, runtimes, submit, verify};
use fleet::{cancel, history, status};
use watch::{run_watch, WatchArgs};

use crate::error::ErrorClass;
use clap::{Parser, Subcommand};
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
    /// Follow the services a file declares and deploy each commit that changes a service's
    /// source directory, as App Runner's automatic deployment does (several may run at once).
    Watch(WatchArgs),
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
        Command::Watch(args) => (run_watch(args).await, 2),
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
