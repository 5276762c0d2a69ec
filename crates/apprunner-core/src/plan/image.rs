//! The config of the image that runs: its command, environment (the run image's, with the app's
//! over it), port and labels.

use super::{PlanInput, APP_DIR};
use crate::catalog::BuildProcess;
use crate::config::{AppConfig, EnvVar};
use crate::labels;
use serde::Serialize;
use std::collections::BTreeMap;

/// The config of the image that runs (docs/configuration.md, "Image config").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FinalImage {
    pub working_dir: String,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub exposed_port: u16,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The commit's time: the exporter clamps every file's and the config's times to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    /// The run image's layers (`diff_ids`), which the image starts with: never rewritten.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_diff_ids: Vec<String>,
    /// The run image's history, which the image's starts with (else `BuildKit` writes its own
    /// for those layers, which depends on how its cache came by them).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_history: Vec<crate::oci::History>,
    /// What is true of this deployment only (its operation id): annotations of the image index,
    /// beside the provenance, so the image itself is the same for every build of the same inputs.
    pub deployment: BTreeMap<String, String>,
}

/// `base` with each `NAME=value` of `over` replacing the same name, in first-seen order.
pub fn merge_env(base: &[String], over: impl IntoIterator<Item = (String, String)>) -> Vec<String> {
    let mut out: Vec<(String, String)> = base
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for (k, v) in over {
        match out.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

pub(super) fn pairs(vars: &[EnvVar]) -> Vec<(String, String)> {
    vars.iter().map(|e| (e.name.clone(), e.value.clone())).collect()
}

/// The config of the image that runs: the start command, the run env with PORT (and its alias),
/// the run image's env and labels with ours.
pub(super) fn final_image(cfg: &AppConfig, input: &PlanInput) -> FinalImage {
    let port = cfg.port.to_string();
    let mut run_over = pairs(&cfg.run_env);
    run_over.push(("PORT".into(), port.clone()));
    if let Some(alias) = &cfg.port_env {
        run_over.push((alias.clone(), port.clone()));
    }
    FinalImage {
        working_dir: APP_DIR.into(),
        cmd: vec!["/bin/sh".into(), "-c".into(), cfg.command.clone()],
        env: merge_env(&input.run_image.env, run_over.clone()),
        exposed_port: cfg.port,
        labels: image_labels(cfg, input, &run_over),
        created: input
            .source_date_epoch
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .map(crate::log::rfc3339),
        source_date_epoch: input.source_date_epoch,
        base_diff_ids: input.run_image.diff_ids.clone(),
        base_history: input.run_image.history.clone(),
        deployment: deployment_annotations(&input.operation_id),
    }
}

/// The run image's labels, without its own title and description, and ours over them.
pub(super) fn image_labels(
    cfg: &AppConfig,
    input: &PlanInput,
    run_over: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut image_labels = input.run_image.labels.clone();
    let mut run_env: Vec<&str> = Vec::new();
    for (name, _) in run_over {
        if !run_env.contains(&name.as_str()) {
            run_env.push(name);
        }
    }
    // Whether the image is the run image plus copied layers only (rebasable), or how many
    // commands changed it.
    let pre_run = (input.runtime.build_process == BuildProcess::Revised).then(|| cfg.pre_run.len().to_string());
    let ours = [
        (labels::RUNTIME, Some(input.runtime.name.clone())),
        (labels::RUNTIME_VERSION, Some(input.runtime.version.clone())),
        (labels::BUILD_PROCESS, Some(input.runtime.build_process.to_string())),
        (labels::SOURCE_DIRECTORY, Some(input.source_dir.clone())),
        (labels::CONFIGURATION_SOURCE, Some(cfg.source.as_str().to_string())),
        (labels::PRE_RUN_COMMANDS, pre_run),
        (labels::RUNTIME_VERSION_LOCK, cfg.runtime_version.as_ref().map(|v| v.trim().to_string())),
        (labels::RUN_ENV, Some(run_env.join(","))),
        (labels::OCI_SOURCE, input.repository.clone()),
        (labels::OCI_REVISION, input.revision.clone()),
        (labels::OCI_BASE_NAME, Some(input.run_image.reference.clone())),
        (labels::OCI_BASE_DIGEST, input.run_image.digest.clone()),
    ];
    // The stand-in run image's own title and description describe it, not the app.
    image_labels.remove(labels::OCI_TITLE);
    image_labels.remove(labels::OCI_DESCRIPTION);
    for (k, v) in ours {
        match v {
            Some(v) => image_labels.insert(k.to_string(), v),
            None => image_labels.remove(k),
        };
    }
    image_labels
}

/// The index annotations true of one deployment only: its operation id.
pub fn deployment_annotations(operation_id: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::OPERATION_ID.to_string(), operation_id.to_string())])
}
