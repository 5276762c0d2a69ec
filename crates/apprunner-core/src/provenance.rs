//! The worker's own SLSA v1 provenance of an image: which source, configuration and runtime it
//! was built from (what a user chose), what the build was given besides (what they did not),
//! every image its LLB pins by digest, and which builder ran which deployment. Signed by the
//! worker (the service crate holds the key); `verify --key` rebuilds from it. Plain data in,
//! the statement out.

use crate::catalog::BuildProcess;
use crate::digest::Digest;
use crate::oci::slsa::SLSA_PROVENANCE_V1;
use crate::oci::slsa::{BuildDefinition, BuildMetadata, Builder, Provenance, ResourceDescriptor, RunDetails};
use crate::oci::{Statement, Subject};
use crate::plan::{BuildPlan, StepNetwork};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The build type of an image built from source by App Runner's steps.
pub const SOURCE_BUILD: &str = "https://apprunner-build.dev/buildtypes/source/v1";
/// The build type of an image moved onto a newer run image of its runtime (`rebase`).
pub const REBASE_BUILD: &str = "https://apprunner-build.dev/buildtypes/rebase/v1";

/// Names of the resolved dependencies `verify` reads back.
pub const BUILD_IMAGE: &str = "runtime build image";
pub const RUN_IMAGE: &str = "runtime run image";
pub const SOURCE_TREE: &str = "source";
pub const CA_BUNDLE: &str = "ca bundle";
pub const REBASED_IMAGE: &str = "rebased image";

/// The builder id a worker names when its operator gives none: this builder and its version.
pub fn default_builder_id(version: &str) -> String {
    format!("https://apprunner-build.dev/worker@v{version}")
}

/// `id` as a builder id: a URI (a scheme, then no spaces or control characters), at most 512
/// bytes; else what is wrong, in one line.
pub fn check_builder_id(id: &str) -> Result<String, String> {
    let scheme = id.split_once(':').map(|(s, _)| s).filter(|s| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    });
    if scheme.is_none() || id.len() > 512 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "--builder-id {}: give a URI of at most 512 characters without spaces, e.g. https://builds.example.com/apprunner-build",
            crate::shown::cut(id)
        ));
    }
    Ok(id.to_string())
}

/// What the user chose: the source and its configuration, the runtime asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceParameters {
    /// The repository's URL, with any credential taken out (a local directory: `file://` its path).
    pub repository: String,
    /// The branch, tag or commit asked for; none: the repository's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// The commit built; none for a directory outside git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// A working tree with changes not committed was built: `commit` does not hold them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub uncommitted_changes: bool,
    pub source_directory: String,
    pub configuration: Configuration,
    pub runtime: String,
    /// `runtime-version` as the configuration gives it; none: the newest release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
}

/// Where the build settings came from, and the digest of their bytes (`apprunner.yaml`'s, or
/// the API settings' JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    /// `REPOSITORY` (apprunner.yaml in the source directory) or `API`.
    pub source: String,
    pub digest: BTreeMap<String, String>,
}

impl Configuration {
    pub fn new(source: &str, digest: &Digest) -> Self {
        Self { source: source.to_string(), digest: digest.by_algorithm() }
    }
}

/// What the build was given that the user did not choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    /// `original` (the double build) or `revised` (build, packaging, post-build, pre-run).
    pub build_process: BuildProcess,
    /// The runtime release the build ran on.
    pub runtime_version: String,
    pub platform: String,
    /// `sandbox` or `host`.
    pub network: String,
    /// Every step's `SOURCE_DATE_EPOCH` (the commit's time), when the image is reproducible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    /// The package caches the steps mount (never part of a layer).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_caches: Vec<String>,
    /// Whether every step ran anew (`--no-cache`, `verify`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_cache: bool,
}

/// What a rebase was asked: the image it moved and the runtime version it moved it to; and how
/// that image was built, when its own provenance says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebaseParameters {
    /// `registry/repository@sha256:…` of the image moved.
    pub image: String,
    pub runtime: String,
    pub from_version: String,
    pub to_version: String,
    /// The moved image's own build (its signed provenance's parameters), so a rebased image
    /// can be verified against its source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built: Option<SourceParameters>,
}

/// Who built, when, in which deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub builder_id: String,
    pub builder_version: BTreeMap<String, String>,
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
}

impl Run {
    fn details(&self) -> RunDetails {
        RunDetails {
            builder: Builder { id: self.builder_id.clone(), version: self.builder_version.clone() },
            metadata: BuildMetadata {
                invocation_id: self.invocation_id.clone(),
                started_on: Some(self.started_on.clone()),
                finished_on: Some(self.finished_on.clone()),
            },
            byproducts: Vec::new(),
        }
    }
}

/// The provenance of a source build (its parameters open, so one read back keeps every field).
pub type SourceProvenance = Provenance<SourceParameters, InternalParameters>;
/// Any of this builder's provenance, read back: every field kept as it was.
pub type AnyProvenance = Provenance<serde_json::Value, serde_json::Value>;

/// The provenance of an image built by `plan` from `source`, whose LLB pins `pinned`
/// (`docker-image://` references, `registry/repo[:tag]@sha256:…`), in the run `run`.
pub fn of_build(
    source: SourceParameters,
    plan: &BuildPlan,
    pinned: &BTreeSet<String>,
    no_cache: bool,
    run: &Run,
) -> SourceProvenance {
    let mut resolved = Vec::new();
    if let Some(commit) = &source.commit {
        let at = source.r#ref.as_ref().map(|r| format!("@{r}")).unwrap_or_default();
        resolved.push(ResourceDescriptor::git_commit(&format!("git+{}{at}", source.repository), commit));
    }
    let role = |reference: &str| {
        [
            (plan.build_image.as_str(), BUILD_IMAGE),
            (plan.run_image.as_str(), RUN_IMAGE),
            (plan.source_image.as_str(), SOURCE_TREE),
            (plan.ca_bundle_image.as_deref().unwrap_or_default(), CA_BUNDLE),
        ]
        .into_iter()
        .find(|(r, _)| *r == reference)
        .map(|(_, name)| name)
    };
    resolved.extend(pinned.iter().map(|reference| image_dependency(role(reference), reference)));
    Provenance {
        build_definition: BuildDefinition {
            build_type: SOURCE_BUILD.into(),
            external_parameters: source,
            internal_parameters: InternalParameters {
                build_process: plan.build_process,
                runtime_version: plan.runtime_version.clone(),
                platform: "linux/amd64".into(),
                network: match plan.network {
                    StepNetwork::Sandbox => "sandbox".into(),
                    StepNetwork::Host => "host".into(),
                },
                source_date_epoch: plan.source_date_epoch,
                package_caches: plan.caches.iter().map(|c| format!("{} {}", c.tool, c.path)).collect(),
                no_cache,
            },
            resolved_dependencies: resolved,
        },
        run_details: run.details(),
    }
}

/// An image the build used, as a dependency: its purl (as `BuildKit`'s provenance names images)
/// and its digest; an image named without one has no digest to give.
fn image_dependency(name: Option<&str>, reference: &str) -> ResourceDescriptor {
    let (named, digest) = reference.split_once('@').map_or((reference, None), |(n, d)| (n, Digest::parse(d).ok()));
    let uri = crate::rebase::purl(named, digest.as_ref().map(Digest::as_str));
    match digest {
        Some(d) => ResourceDescriptor::sha256(name, &uri, &d),
        None => ResourceDescriptor { name: name.map(str::to_string), uri, digest: BTreeMap::new() },
    }
}

/// What a rebase moved (`from`, at its digest) onto which run image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebaseFacts {
    pub parameters: RebaseParameters,
    pub from: Digest,
    /// `registry/repo:tag` and digest of the run image it now sits on.
    pub run_image: (String, Digest),
}

/// The provenance of a rebased image: the image it came from and the new run image, by digest.
pub fn of_rebase(facts: RebaseFacts, run: &Run) -> Provenance<RebaseParameters, serde_json::Value> {
    let (image_name, _) = facts.parameters.image.split_once('@').unwrap_or((&facts.parameters.image, ""));
    let mut resolved = vec![image_dependency(Some(REBASED_IMAGE), &format!("{image_name}@{}", facts.from))];
    let (run_name, run_digest) = &facts.run_image;
    resolved.push(image_dependency(Some(RUN_IMAGE), &format!("{run_name}@{run_digest}")));
    Provenance {
        build_definition: BuildDefinition {
            build_type: REBASE_BUILD.into(),
            external_parameters: facts.parameters,
            internal_parameters: serde_json::Value::Object(serde_json::Map::new()),
            resolved_dependencies: resolved,
        },
        run_details: run.details(),
    }
}

/// The statement of `provenance` about the image `name` (`registry/repository`) at `digest`.
pub fn statement<P: Serialize>(name: &str, digest: &Digest, provenance: P) -> Vec<u8> {
    crate::oci::to_bytes(&Statement::v1(SLSA_PROVENANCE_V1, vec![Subject::at(name, digest)], provenance))
}

/// A provenance carried over to an index written again over the same image (a redeploy of
/// unchanged inputs): the same build definition, run by this builder in this deployment.
pub fn carried(mut provenance: AnyProvenance, run: &Run) -> AnyProvenance {
    provenance.run_details = run.details();
    provenance
}

/// What `verify` rebuilds from, read from a signed provenance: the source parameters, the
/// runtime version, and the runtime images (`registry/repo:tag` -> `sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub source: SourceParameters,
    pub runtime_version: String,
    pub runtime_images: BTreeMap<String, String>,
}

/// Why a provenance cannot be rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unrecorded {
    #[error("its provenance is of build type {0}, not this builder's")]
    BuildType(String),
    #[error("its provenance does not record {0}")]
    Missing(&'static str),
}

/// The build `provenance` records, for `verify` to rebuild.
pub fn recorded(provenance: &AnyProvenance) -> Result<Recorded, Unrecorded> {
    let d = &provenance.build_definition;
    let (source, runtime_version) = match d.build_type.as_str() {
        SOURCE_BUILD => {
            let source: SourceParameters = serde_json::from_value(d.external_parameters.clone())
                .map_err(|_| Unrecorded::Missing("the source it was built from"))?;
            let version = d.internal_parameters.get("runtimeVersion").and_then(|v| v.as_str());
            (source, version.ok_or(Unrecorded::Missing("the runtime version"))?.to_string())
        }
        REBASE_BUILD => {
            let rebase: RebaseParameters = serde_json::from_value(d.external_parameters.clone())
                .map_err(|_| Unrecorded::Missing("the image it rebased"))?;
            let built = rebase.built.ok_or(Unrecorded::Missing("how the image it rebased was built"))?;
            (built, rebase.to_version)
        }
        other => return Err(Unrecorded::BuildType(other.to_string())),
    };
    let runtime_images = d
        .resolved_dependencies
        .iter()
        .filter(|r| matches!(r.name.as_deref(), Some(BUILD_IMAGE | RUN_IMAGE)))
        .filter_map(|r| {
            let reference = crate::verify::runtime_image_reference(&r.uri)?;
            Some((reference, r.sha256_digest()?.to_string()))
        })
        .collect();
    Ok(Recorded { source, runtime_version, runtime_images })
}

#[cfg(test)]
mod tests;
