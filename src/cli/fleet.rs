//! The fleet's commands: what became of a deployment (`status`), a service's last deployments
//! (`history`), and ending one (`cancel`).

use super::args::QueueArgs;
use super::settings::SettingsArgs;
use crate::error::BuildError;
use crate::queue::cancel::{self, CancelOutcome};
use crate::queue::history;
use crate::queue::ledger::Ledger;
use std::process::ExitCode;
use std::time::Duration;

/// How long `cancel` waits for the deployment's end.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

fn unknown(operation_id: &str) -> BuildError {
    BuildError::user(format!(
        "no operation {} in the history; give the operation id `submit` printed (the history keeps the last {} MiB of events)",
        crate::core::shown::cut(operation_id),
        crate::queue::transport::HISTORY_BYTES >> 20
    ))
}

pub(super) async fn status(operation_id: &str, queue: &QueueArgs) -> Result<(), BuildError> {
    let record = history::status(&queue.brokers()?, &queue.topology()?, operation_id).await?;
    let record = record.ok_or_else(|| unknown(operation_id))?;
    for line in record.describe() {
        println!("{line}");
    }
    Ok(())
}

pub(super) async fn history(service: &str, limit: usize, queue: &QueueArgs) -> Result<(), BuildError> {
    let records = history::of_service(&queue.brokers()?, &queue.topology()?, service, limit).await?;
    if records.is_empty() {
        println!("no deployments of service {} in the history", crate::core::shown::cut(service));
    }
    for r in records {
        println!("{}", r.line());
    }
    Ok(())
}

/// Exit 0 when the deployment ended cancelled, 1 when it had ended already (nothing changed),
/// 3 when no end came in time (the request stands).
pub(super) async fn cancel(
    operation_id: &str,
    queue: &QueueArgs,
    settings: SettingsArgs,
) -> Result<ExitCode, BuildError> {
    let settings = settings.settings()?;
    let registry = settings.registry_client();
    let ledger = Ledger::new(&registry, &settings.registry);
    let outcome = cancel::cancel(&queue.brokers()?, &queue.topology()?, &ledger, operation_id, CANCEL_WAIT).await?;
    Ok(match outcome {
        CancelOutcome::Cancelled(was) => {
            println!("operation {operation_id} cancelled (it was {})", was.status.key());
            ExitCode::SUCCESS
        }
        CancelOutcome::Ended(record) => {
            eprintln!("operation {operation_id} had ended already; nothing changed:");
            for line in record.describe() {
                eprintln!("  {line}");
            }
            ExitCode::from(1)
        }
        CancelOutcome::Requested(record) => {
            eprintln!(
                "operation {operation_id} ({}): cancel requested, but no worker confirmed it within {}s; it will not be built again",
                record.status.key(),
                CANCEL_WAIT.as_secs()
            );
            ExitCode::from(3)
        }
        CancelOutcome::Unknown => return Err(unknown(operation_id)),
    })
}
