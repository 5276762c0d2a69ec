//! `roll-out`: move the services on a runtime to a newer version of it. The services are the
//! records the workers keep (`Ledger::services`); what each needs is read off its image's
//! labels (`decision`, pure); each that moves gets one job with a roll-out part, which a worker
//! runs as a rebase when the image allows it and as a rebuild of the same commit otherwise.
//! Running the roll-out again submits nothing new for what is done or under way: a job's
//! operation id derives from the service, the target version and the image being replaced.

mod decision;

pub use decision::{decide, rollout_job, Decision};

use crate::core::catalog::Runtime;
use crate::core::image_ref::ImageRef;
use crate::edge::image;
use crate::error::BuildError;
use crate::pipeline::Settings;
use crate::queue::ledger::Ledger;
use crate::queue::wire::job::BuildJob;

/// What a roll-out found: the jobs to submit and how many services are in each state.
pub struct Survey {
    pub jobs: Vec<BuildJob>,
    pub tally: Tally,
}

impl Survey {
    /// One line: how many services go which way.
    pub fn summary(&self, runtime: &str, to: &str) -> String {
        let t = &self.tally;
        format!(
            "roll-out of {runtime} to {to}: {} to rebase, {} to rebuild, {} up to date, {} left as they are, {} on other runtimes",
            t.rebase, t.rebuild, t.up_to_date, t.left, t.other
        )
    }
}

/// Reads the records of the services (only `services`, when any are named), each current
/// image's labels, and decides what moving `runtime` to `to` does with each, saying a line per
/// service through `say` as it goes.
pub async fn survey(
    settings: &Settings,
    runtime: &Runtime,
    to: &str,
    services: &[String],
    say: &dyn Fn(&str),
) -> Result<Survey, BuildError> {
    let catalog = crate::core::catalog::RuntimeCatalog::builtin();
    let registry = settings.registry_client();
    let ledger = Ledger::new(&registry, &settings.registry);
    let mut survey = Survey { jobs: Vec::new(), tally: Tally::default() };
    let mut seen = Vec::new();
    let named = !services.is_empty();
    for record in ledger.services(services).await? {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                say(&format!("skipped: {e}"));
                survey.tally.left += 1;
                continue;
            }
        };
        if named && !services.contains(&record.service) {
            continue;
        }
        seen.push(record.service.clone());
        let name = &record.service;
        // One service whose image cannot be read (its registry gone, say) is left with the
        // reason; the others still move.
        let read = match ImageRef::parse(&record.image) {
            Ok(r) => image::existing(&registry, &r).await,
            Err(_) => Ok(None),
        };
        let found = match read {
            Ok(found) => found,
            Err(e) => {
                let image = crate::core::shown::cut(&record.image);
                say(&format!("{name}: skipped, its image {image} could not be read: {e}"));
                survey.tally.left += 1;
                continue;
            }
        };
        let Some((_, image_labels)) = found else {
            say(&format!(
                "{name}: skipped, its image {} is not in the registry",
                crate::core::shown::cut(&record.image)
            ));
            survey.tally.left += 1;
            continue;
        };
        let decision = decide(&record.image, &image_labels, catalog, &runtime.name, to);
        let job = decision.moves().then(|| rollout_job(&record, &image_labels, &runtime.name, to));
        let id = job.as_ref().map(|j| format!(" (job {})", j.job_id)).unwrap_or_default();
        survey.tally.count(&decision);
        if let Some(line) = describe(&decision, &runtime.name, to, named) {
            say(&format!("{name}: {line}{id}"));
        }
        survey.jobs.extend(job);
    }
    for s in services.iter().filter(|s| !seen.contains(s)) {
        say(&format!("{s}: skipped, no record of it (workers record each service they build or roll out)"));
        survey.tally.left += 1;
    }
    Ok(survey)
}

/// How many services a roll-out found in each state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub rebase: usize,
    pub rebuild: usize,
    pub up_to_date: usize,
    pub left: usize,
    pub other: usize,
}

impl Tally {
    fn count(&mut self, d: &Decision) {
        *match d {
            Decision::Rebase { .. } => &mut self.rebase,
            Decision::Rebuild { .. } => &mut self.rebuild,
            Decision::UpToDate { .. } => &mut self.up_to_date,
            Decision::Pinned { .. } | Decision::RebuildElsewhere { .. } => &mut self.left,
            Decision::OtherRuntime(_) => &mut self.other,
        } += 1;
    }
}

/// What the roll-out says of one service; services on other runtimes only when named.
fn describe(d: &Decision, runtime: &str, to: &str, named: bool) -> Option<String> {
    Some(match d {
        Decision::OtherRuntime(_) if !named => return None,
        Decision::OtherRuntime(r) => format!("skipped, it is on runtime {}", if r.is_empty() { "(none)" } else { r }),
        Decision::UpToDate { version } => format!("{runtime} {version}, up to date"),
        Decision::Pinned { version, lock } => format!(
            "{runtime} {version}, skipped: its configuration sets runtime-version {lock}, which {to} does not match"
        ),
        Decision::Rebase { version } => format!("{runtime} {version} -> {to}, rebase"),
        Decision::Rebuild { version, why } => format!("{runtime} {version} -> {to}, rebuild: {why}"),
        Decision::RebuildElsewhere { version, resolves, why } => {
            format!("{runtime} {version}, skipped: it needs a rebuild ({why}), which would give {resolves}, not {to}")
        }
    })
}
