//! The OCI (and Docker distribution) documents the service reads and writes, typed: image
//! manifests, indexes, descriptors, platforms, image configs, and the in-toto statement an
//! attestation carries.
//!
//! Written here rather than taken from `oci-spec`, which the design first named: its 0.10 keeps
//! labels and annotations in `HashMap`s, so the same document serialises in a different order
//! in each process (and its digest with it), and its image config has no place for the fields
//! Docker adds (`Healthcheck`, `Shell`, `OnBuild`, `ArgsEscaped`), which a rebase would drop.
//! Here every map is ordered, and each document keeps the fields it does not name, in the
//! order they came, in `other`: a document read and written again keeps all it said.
//!
//! Field order is the order written. Descriptors are written `mediaType`, `size`, `digest`, as
//! Docker's distribution spec shows them and as the service's content images have always been
//! written (their digests are pinned in every build's LLB).

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Fields a document holds that this module does not name, in the order they came.
pub type Other = serde_json::Map<String, serde_json::Value>;

/// A document as bytes: how a typed document is written (`serde_json`, compact).
pub fn to_bytes<T: Serialize>(document: &T) -> Vec<u8> {
    // Only maps with string keys and plain values here: serialising cannot fail.
    serde_json::to_vec(document).expect("an OCI document serialises")
}

/// `document` as compact JSON text (an exporter attribute's value).
pub fn to_text<T: Serialize>(document: &T) -> String {
    serde_json::to_string(document).expect("an OCI document serialises")
}

/// What names a blob or a manifest: its type, size and digest, and where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub size: u64,
    pub digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(flatten)]
    pub other: Other,
}

impl Descriptor {
    pub fn new(media_type: &str, size: usize, digest: &Digest) -> Self {
        Descriptor {
            media_type: media_type.to_string(),
            size: size as u64,
            digest: digest.clone(),
            annotations: None,
            platform: None,
            other: Other::new(),
        }
    }

    /// The descriptor of `bytes` as a `media_type` document.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self::new(media_type, bytes.len(), &Digest::of(bytes))
    }

    /// The annotation `key`, if it is there.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform an image in an index is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(flatten)]
    pub other: Other,
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Self {
        Platform { architecture: architecture.to_string(), os: os.to_string(), other: Other::new() }
    }
}

/// An image manifest (OCI, or Docker's schema 2, which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: Other,
}

impl ImageManifest {
    pub fn new(media_type: &str, config: Descriptor, layers: Vec<Descriptor>) -> Self {
        ImageManifest {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            config,
            layers,
            annotations: None,
            other: Other::new(),
        }
    }
}

/// An image index (OCI, or Docker's manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: Other,
}

/// An attestation manifest's annotation: the image manifest it is about.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// An attestation manifest's annotation: what kind of manifest it is.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

impl ImageIndex {
    /// The image manifest for `os`/`architecture` (attestations name `unknown/unknown`).
    pub fn for_platform(&self, os: &str, architecture: &str) -> Option<&Descriptor> {
        self.manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == architecture))
    }

    /// The attestation manifest about the image manifest `image_digest`.
    pub fn attestation_of(&self, image_digest: &Digest) -> Option<&Descriptor> {
        self.manifests.iter().find(|m| {
            m.annotation(REFERENCE_TYPE) == Some(ATTESTATION_MANIFEST)
                && m.annotation(REFERENCE_DIGEST) == Some(image_digest.as_str())
        })
    }

    /// The annotations, an empty map if there are none.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        self.annotations.clone().unwrap_or_default()
    }
}

/// An image config: the platform, what a container runs with, and the layers' diff ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
    #[serde(flatten)]
    pub other: Other,
}

impl ImageConfig {
    /// The labels (`config.Labels`).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config.labels.clone().unwrap_or_default()
    }

    /// The environment (`config.Env`), as `NAME=value` entries.
    pub fn env(&self) -> &[String] {
        self.config.env.as_deref().unwrap_or_default()
    }

    /// The history, an empty list if there is none.
    pub fn history(&self) -> &[History] {
        self.history.as_deref().unwrap_or_default()
    }
}

/// What a container of the image runs with. Docker writes `null` for an empty list or map;
/// those read as absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(rename = "Env", default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Labels", default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

impl RootFs {
    pub fn layers(diff_ids: Vec<String>) -> Self {
        RootFs { kind: "layers".into(), diff_ids }
    }
}

/// The image config a build hands `BuildKit`'s exporter (`containerimage.config`): the image's
/// own settings, which `BuildKit` completes with the rootfs and history of the layers it writes.
/// Its bytes are part of the build key, so its fields keep their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExporterConfig {
    pub architecture: String,
    pub os: String,
    pub config: RunSettings,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The run image's history, which the image's starts with.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
}

/// What a container of the image runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSettings {
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    #[serde(rename = "Cmd")]
    pub cmd: Vec<String>,
    #[serde(rename = "WorkingDir")]
    pub working_dir: String,
    /// `port/tcp` of each port the image exposes (in JSON, each a key whose value is `{}`).
    #[serde(rename = "ExposedPorts", serialize_with = "keys_of_empty_objects")]
    pub exposed_ports: BTreeSet<String>,
    #[serde(rename = "Labels")]
    pub labels: BTreeMap<String, String>,
}

/// A set written as an object of its members, each valued `{}` (as Docker writes exposed ports).
fn keys_of_empty_objects<S: serde::Serializer>(keys: &BTreeSet<String>, to: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = to.serialize_map(Some(keys.len()))?;
    for key in keys {
        map.serialize_entry(key, &serde_json::Map::new())?;
    }
    map.end()
}

/// The config `BuildKit` takes the image's first layers from (`containerimage.base.config`):
/// the run image's, which a rewrite of timestamps leaves as they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseConfig {
    pub rootfs: RootFs,
}

/// One step of an image's history; `empty_layer` steps made no layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub other: Other,
}

impl History {
    pub fn made_a_layer(&self) -> bool {
        self.empty_layer != Some(true)
    }
}

/// An in-toto statement (what an attestation layer holds): the subjects it is about and its
/// predicate, by default SLSA provenance (of which only the parts a rebase rewrites are named).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Statement<P = Predicate> {
    #[serde(rename = "_type")]
    pub kind: String,
    pub predicate_type: String,
    pub subject: Vec<Subject>,
    pub predicate: P,
    #[serde(flatten)]
    pub other: Other,
}

/// The statement type the attestations here are written in, as `BuildKit` writes its own.
pub const IN_TOTO_STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

impl<P> Statement<P> {
    /// A v0.1 statement about `subject` whose predicate of `predicate_type` is `predicate`.
    pub fn v01(predicate_type: &str, subject: Vec<Subject>, predicate: P) -> Self {
        Self {
            kind: IN_TOTO_STATEMENT_V01.into(),
            predicate_type: predicate_type.into(),
            subject,
            predicate,
            other: Other::new(),
        }
    }

    /// A v1 statement (SLSA v1 provenance's) about `subject`.
    pub fn v1(predicate_type: &str, subject: Vec<Subject>, predicate: P) -> Self {
        Self { kind: crate::slsa::IN_TOTO_STATEMENT_V1.into(), ..Self::v01(predicate_type, subject, predicate) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub name: String,
    pub digest: BTreeMap<String, String>,
}

impl Subject {
    /// `name` at the content `digest` (in-toto names it by algorithm: `{"sha256": hex}`).
    pub fn at(name: &str, digest: &Digest) -> Self {
        Self { name: name.to_string(), digest: digest.by_algorithm() }
    }
}

/// A SLSA provenance predicate: the materials the build used and its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Predicate {
    #[serde(default)]
    pub materials: Vec<Material>,
    #[serde(default)]
    pub metadata: Other,
    #[serde(flatten)]
    pub other: Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Material {
    pub uri: String,
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

/// Why bytes are not the document they should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not a valid {kind}: {detail}")]
pub struct Malformed {
    pub what: String,
    pub kind: &'static str,
    pub detail: String,
}

/// `bytes` read as a `T` (`kind` names it in the error, `what` says whose it is).
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], kind: &'static str, what: &str) -> Result<T, Malformed> {
    serde_json::from_slice(bytes).map_err(|e| Malformed { what: what.to_string(), kind, detail: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_read_and_written_again_keeps_every_field_in_its_order() {
        // A config as Docker writes one, with fields this module does not name.
        let docker = br#"{"architecture":"amd64","config":{"Env":["PATH=/bin"],"Cmd":null,"Healthcheck":{"Test":["NONE"]},"Labels":{"b":"2","a":"1"},"OnBuild":null},"created":"2024-01-01T00:00:00Z","history":[{"created":"x","empty_layer":true},{"created_by":"y"}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:1"]}}"#;
        let config: ImageConfig = parse(docker, "image config", "test").unwrap();
        assert_eq!(config.labels().keys().collect::<Vec<_>>(), ["a", "b"]);
        assert!(!config.history()[0].made_a_layer() && config.history()[1].made_a_layer());
        let again: serde_json::Value = serde_json::from_slice(&to_bytes(&config)).unwrap();
        let before: serde_json::Value = serde_json::from_slice(docker).unwrap();
        assert_eq!(again, before, "nothing lost");
        assert_eq!(to_bytes(&config), to_bytes(&parse::<ImageConfig>(&to_bytes(&config), "", "").unwrap()));
    }

    #[test]
    fn a_manifest_names_its_layers_and_an_index_its_platforms_and_attestations() {
        let (img, att) = (Digest::of(b"img"), Digest::of(b"att"));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
            {{"mediaType":"m","digest":"{img}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},
            {{"mediaType":"m","digest":"{att}","size":2,"annotations":{{"vnd.docker.reference.digest":"{img}","vnd.docker.reference.type":"attestation-manifest"}},"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#
        );
        let index: ImageIndex = parse(index.as_bytes(), "image index", "test").unwrap();
        assert_eq!(index.for_platform("linux", "amd64").unwrap().digest, img);
        assert_eq!(index.attestation_of(&img).unwrap().digest, att);
        assert!(index.attestation_of(&Digest::of(b"other")).is_none());
        let short = br#"{"mediaType":"m","digest":"sha256:img","size":1}"#;
        assert!(parse::<Descriptor>(short, "descriptor", "test").is_err(), "a digest is checked where it is read");
        let bad = parse::<ImageManifest>(b"{\"layers\":3}", "image manifest", "the manifest of r/x:1").unwrap_err();
        assert!(bad.to_string().starts_with("the manifest of r/x:1 is not a valid image manifest: "), "{bad}");
    }

    #[test]
    fn descriptors_are_written_type_size_digest() {
        let d = Descriptor::of("t", b"abc");
        assert_eq!(
            String::from_utf8(to_bytes(&d)).unwrap(),
            format!(r#"{{"mediaType":"t","size":3,"digest":"{}"}}"#, Digest::of(b"abc"))
        );
    }
}
