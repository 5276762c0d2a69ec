//! App Runner's deployment log as a build tells it: every `[AppRunner]` sentence of a build and
//! a rebase in one place, so the wording App Runner's users search for stays as they know it
//! (docs/configuration.md, "The deployment log") and is reviewed here. The step-by-step lines
//! of the solves are `core::progress`'s; a missing runtime image's are `edge::stand_in`'s.

use crate::core::plan::BuildPlan;
use crate::core::rebase::Refusal;
use crate::edge::rebase::Rebased;
use crate::error::BuildError;
use crate::log::DeploymentLog;
use std::collections::BTreeMap;

/// Where an image taken again (`image_reuse`) was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReusedFrom {
    /// At the target's own tag.
    Target,
    /// The service's current image, from its record.
    ServiceCurrent,
    /// An image this worker pushed with the same build key (`RecentImages`).
    RecentPush,
}

/// Says a build's sentences into its deployment log.
#[derive(Clone, Copy)]
pub struct Narration<'a>(pub &'a DeploymentLog);

impl Narration<'_> {
    fn say(self, text: impl Into<String>) {
        self.0.apprunner(text);
    }

    pub fn started(self, operation_id: &str, trigger: &str) {
        self.say(format!("Deployment with ID : {operation_id} started. Triggering event : {trigger}"));
    }

    pub fn succeeded(self, operation_id: &str, image: &str) {
        self.say(format!("Image: {image}"));
        self.say(format!("Deployment with ID : {operation_id} completed successfully."));
    }

    /// A later attempt of a deployment that started already.
    /// The deployment goes on here after the worker building it stopped before it ended.
    pub fn resumed(self, operation_id: &str) {
        self.say(format!(
            "Deployment with ID : {operation_id} resumed: the worker building it stopped before it ended; building it here."
        ));
    }

    pub fn attempt_started(self, attempt: super::Attempt) {
        self.say(format!("Attempt {} of {} started.", attempt.number, attempt.of));
    }

    /// An attempt that met a transient fault, and when the next one starts.
    pub fn attempt_failed(self, attempt: super::Attempt, e: &BuildError, next_in: std::time::Duration) {
        let what =
            if e.message.starts_with("could not ") { e.message.clone() } else { format!("failed: {}", e.message) };
        self.say(format!(
            "Attempt {} of {} {what}; trying again in {} s.",
            attempt.number,
            attempt.of,
            next_in.as_secs_f32()
        ));
    }

    /// Another build of this process (a worker's) is solving the same image definition: this
    /// one waits for it (two exports of one content at once wait on each other in the daemon).
    pub fn waiting_for_same_content(self) {
        self.say("Another build of the same content is running on this worker; this build goes when it is done.");
    }

    /// A deployment ended by `cancel`: before a worker took it, or with its build stopped.
    pub fn cancelled(self, operation_id: &str, while_building: bool) {
        if while_building {
            self.say("Cancel requested: the build was stopped; nothing was pushed.");
        } else {
            self.say("Cancel requested before the build started: nothing was built.");
        }
        self.say(format!("Deployment with ID : {operation_id} was cancelled."));
    }

    /// Batch work that stopped to give its slot to a user's deployment.
    pub fn gave_way(self) {
        self.say("A user's deployment needs this worker's slot: this batch build stops here and starts again when a slot is free.");
    }

    pub fn failed(self, operation_id: &str, e: &BuildError) {
        self.say(format!("Failed to build your application source code. Reason: {}", e.message));
        self.say(format!(
            "Deployment with ID : {operation_id} failed. Failure reason : {} ({} error; see the lines above).",
            e.message, e.class
        ));
    }

    /// Where the source comes from, before it is fetched.
    pub fn artifact(self, repo_type: &str, repository: &str, version: &str, source_dir: &str) {
        self.say(format!(
            "Deployment Artifact: [Repo Type: {repo_type}], [Repository: {repository}], {version}, [SourceDirectory: {source_dir}]"
        ));
        self.say(format!("Pulling source code from {repo_type} Repository ( {repository} )."));
    }

    pub fn pulled(self, commit: Option<&str>, branch: Option<&str>, dirty: bool) {
        self.say("Successfully pulled your application source code.");
        self.say(format!(
            "Source at commit {}{}{}.",
            commit.unwrap_or("(not a git repository)"),
            branch.map(|b| format!(" (branch {b})")).unwrap_or_default(),
            if dirty { ", with changes not committed (the working tree is built as it is)" } else { "" }
        ));
    }

    pub fn reading_config_file(self, file: &str) {
        self.say(format!("Reading {file} config file."));
    }

    /// The configuration was read: from the repository's file, or from the API values.
    pub fn configured(self, from_file: bool) {
        self.say(if from_file {
            "Successfully validate configuration file."
        } else {
            "Using the build settings from the API values; any apprunner.yaml is ignored."
        });
    }

    pub fn held(self, runtime: &str, hold: &str, version: &str) {
        self.say(format!("{runtime} is held at {hold} on this fleet: building on {version}."));
    }

    /// The plan's warnings, its runtime and images, and what becomes of its secrets.
    pub fn planned(self, plan: &BuildPlan) {
        for w in &plan.warnings {
            self.say(format!("Warning: {w}"));
        }
        self.say(format!(
            "Runtime {} {} ({} build). Build image {}, run image {}.",
            plan.runtime, plan.runtime_version, plan.build_process, plan.build_image, plan.run_image
        ));
        if !plan.secrets.is_empty() {
            let names: Vec<&str> = plan.secrets.iter().map(|s| s.name.as_str()).collect();
            self.say(format!(
                "Runtime secrets {} stay references: they are not resolved at build time and not written into the image.",
                names.join(", ")
            ));
        }
    }

    /// The source directory's layer: uploaded as `pinned` (`bytes` of it) or there already.
    pub fn source_uploaded(self, source_dir: &str, files: usize, bytes: Option<usize>, pinned: &str) {
        self.say(match bytes {
            Some(bytes) => {
                format!("Source directory {source_dir} packed: {files} files, {bytes} bytes uploaded as {pinned}.")
            }
            None => {
                format!("Source directory {source_dir} unchanged since an earlier build ({pinned}); nothing uploaded.")
            }
        });
    }

    pub fn special_bits_dropped(self, files: usize) {
        self.say(format!(
            "setuid and setgid bits dropped from {files} files of the source; every file in /app is owned by root."
        ));
    }

    pub fn building(self) {
        self.say("Starting source code build.");
    }

    pub fn sbom_attached(self, counts: &BTreeMap<&'static str, usize>) {
        let all: usize = counts.values().sum();
        let each: Vec<String> = counts.iter().map(|(what, n)| format!("{n} {what}")).collect();
        self.say(format!("SBOM attached (SPDX 2.3): {all} packages ({}).", each.join(", ")));
    }

    pub fn signed(self, fingerprint: &str, tag: &str) {
        self.say(format!("Image signed with key {fingerprint} (cosign signature at tag {tag})."));
    }

    pub fn attested(self, what: &str, fingerprint: &str, tag: &str) {
        self.say(format!("Image {what} signed with key {fingerprint} (cosign attestations at tag {tag})."));
    }

    pub fn built(self) {
        self.say("Successfully built your application source code.");
    }

    /// The image at `target` was built from these exact inputs: taken under a new index.
    /// `holder`: the target tag, or the service's current image (then taken to `target`).
    pub fn reused(self, from: ReusedFrom, holder: &str, target: &str, key: &str, built_by: Option<&str>) {
        self.building();
        let built_by = built_by.unwrap_or("unknown");
        let inputs = format!("holds the image of these exact inputs (build key {key}, built by deployment {built_by})");
        self.say(match from {
            ReusedFrom::Target => format!("{target} {inputs}: reused under a new index; nothing was solved."),
            ReusedFrom::ServiceCurrent => format!(
                "The service's current image {holder} {inputs}: reused under a new index at {target}; nothing was solved."
            ),
            ReusedFrom::RecentPush => format!(
                "{holder}, pushed by this worker for another deployment, {inputs}: reused under a new index at {target}; nothing was solved."
            ),
        });
        self.built();
    }

    /// A redeploy of the service's unchanged inputs (`unchanged`), taken before any fetch.
    pub fn redeployed(self, holder: &str, target: &str, commit: &str, key: &str, built_by: Option<&str>) {
        self.building();
        let built_by = built_by.unwrap_or("unknown");
        self.say(format!(
            "The service's current image {holder} was built from these exact inputs (commit {commit}, build key {key}, built by deployment {built_by}): reused under a new index at {target}; nothing was fetched or solved."
        ));
        self.built();
    }

    pub fn steps_from_caches(self, cached: usize, all: usize, from: &str) {
        self.say(format!("{cached} of {all} steps came from {from}."));
    }

    pub fn fleet_cache_exported(self, reference: &str, outcome: Result<f64, String>) {
        self.say(match outcome {
            Ok(seconds) => format!("Fleet cache {reference} exported in {seconds:.1}s."),
            Err(e) => format!("Warning: the fleet cache {reference} was not exported: {e}"),
        });
    }

    pub fn warm_up_left_out(self, stage: &str, why: &str) {
        self.say(format!("[{stage}] dependency warm-up left out ({why}); the build goes on without it."));
    }

    pub fn rebasing(self, from: &str, to_version: &str) {
        self.say(format!(
            "Rebasing {from} onto the run image of runtime version {to_version}: registry operations only, nothing is built."
        ));
    }

    pub fn rebased(self, r: &Rebased) {
        self.say(if r.unchanged {
            format!("The image is on {} {} already: {}", r.runtime, r.to_version, r.image)
        } else {
            format!(
                "Rebased from {} {} onto {} {} ({}) in {:.1}s, {} bytes copied: {}",
                r.runtime, r.from_version, r.runtime, r.to_version, r.run_image, r.seconds, r.copied_bytes, r.image
            )
        });
    }

    pub fn rebase_refused(self, refusal: &Refusal) {
        self.say(format!("Cannot rebase: {refusal}."));
    }
}
