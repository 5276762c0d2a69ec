//! SLSA v1.0 provenance (`https://slsa.dev/provenance/v1`): how an artifact was built, by which
//! builder, from what. The parameters are the build type's own (`E`, `I`); the rest is SLSA's,
//! its fields in the specification's order.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The predicate type of SLSA v1 provenance (cosign's `--type slsaprovenance1`).
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// The in-toto statement type SLSA v1 provenance is written in.
pub const IN_TOTO_STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance<E, I> {
    pub build_definition: BuildDefinition<E, I>,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition<E, I> {
    pub build_type: String,
    pub external_parameters: E,
    pub internal_parameters: I,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// An artifact by what names it and the digests of its content.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

impl ResourceDescriptor {
    /// `uri` at the sha256 content digest `digest`.
    pub fn sha256(name: Option<&str>, uri: &str, digest: &Digest) -> Self {
        Self { name: name.map(str::to_string), uri: uri.to_string(), digest: digest.by_algorithm() }
    }

    /// The git commit `commit` of the repository `uri` (SLSA's `gitCommit` digest).
    pub fn git_commit(uri: &str, commit: &str) -> Self {
        Self {
            name: None,
            uri: uri.to_string(),
            digest: BTreeMap::from([("gitCommit".to_string(), commit.to_string())]),
        }
    }

    /// Its sha256 digest, when it has a valid one.
    pub fn sha256_digest(&self) -> Option<Digest> {
        Digest::parse(&format!("sha256:{}", self.digest.get("sha256")?)).ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: BuildMetadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub version: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    pub invocation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}
