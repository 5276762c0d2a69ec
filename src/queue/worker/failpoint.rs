//! Deaths a test can ask for at a named point of a deployment: `APPRUNNER_FAILPOINTS` holds
//! names, comma-separated, and the worker process exits at once when it reaches one (no
//! cleanup, no ack: as a SIGKILL there would end it). Some windows open only when a worker dies
//! between two steps a few milliseconds apart; a test forces them with this, where a signal
//! from outside would land before or after. Nothing sets it in production.

/// Right after a deployment's outcome was confirmed by the broker, before it is marked
/// reported and before the job's ack.
pub const AFTER_OUTCOME: &str = "after-outcome";

/// Exits the process if the point `name` is set.
pub fn exit_at(name: &str) {
    let set = std::env::var("APPRUNNER_FAILPOINTS").is_ok_and(|v| v.split(',').any(|n| n.trim() == name));
    if set {
        tracing::warn!("failpoint {name}: the worker exits here");
        std::process::exit(137);
    }
}
