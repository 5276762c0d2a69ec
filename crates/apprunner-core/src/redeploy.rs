//! Redeploys of unchanged inputs, recognised before anything is fetched.
//!
//! A service's record keeps, beside its current image, what the build that made it took in: a
//! fingerprint of every input known before the source is fetched (the builder, the repository,
//! the commit, the source directory, the configuration given, the target repository, the build
//! settings that shape an image and the CA bundle), the runtime images it resolved with their
//! digests, and what it reported. A deployment whose fingerprint is the record's, and whose
//! runtime tags still name those digests, takes the current image under a new index without
//! cloning, planning or solving. The commit pins the source and with it `apprunner.yaml`; the
//! builder (the binary's build id) pins how a configuration becomes LLB. Anything unsure is a
//! miss, and a miss is only the ordinary build, which still reuses by build key (`reuse`).
//! Pure: values in, a digest out.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What the fingerprint covers changes with this; an older one then never matches.
const FINGERPRINT_VERSION: &[u8] = b"apprunner-build redeploy fingerprint v1";

/// Every input of a build known before its source is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownInputs {
    /// The build id of the binary that builds (how a configuration becomes an image).
    pub builder: String,
    /// The repository's URL, without credentials.
    pub repository: String,
    /// The full commit hash the deployment builds.
    pub commit: String,
    /// The source directory, normalised (`/`, `/services/api`).
    pub source_dir: String,
    /// The configuration given with the job: `repository` (the file at the commit) or the API
    /// values as JSON.
    pub configuration: String,
    /// `registry/repository` of the target (its tag is the deployment's own).
    pub target_repository: String,
    /// The build settings that shape an image, by name.
    pub settings: BTreeMap<&'static str, String>,
    /// The digest of the CA bundle's layer, if one is mounted.
    pub ca_bundle: Option<String>,
}

/// The fingerprint of `inputs` (hex sha256; every field length-prefixed).
pub fn fingerprint(inputs: &KnownInputs) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update(u64::try_from(bytes.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(bytes);
    };
    field(FINGERPRINT_VERSION);
    for value in [
        &inputs.builder,
        &inputs.repository,
        &inputs.commit,
        &inputs.source_dir,
        &inputs.configuration,
        &inputs.target_repository,
    ] {
        field(value.as_bytes());
    }
    for (name, value) in &inputs.settings {
        field(name.as_bytes());
        field(value.as_bytes());
    }
    match &inputs.ca_bundle {
        Some(digest) => field(digest.as_bytes()),
        None => field(b"no CA bundle"),
    }
    hex::encode(h.finalize())
}

/// Whether `commit` is a full commit hash (a short one may name another commit tomorrow).
pub fn is_full_commit(commit: &str) -> bool {
    commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> KnownInputs {
        KnownInputs {
            builder: "b1".into(),
            repository: "https://example.com/app.git".into(),
            commit: "a".repeat(40),
            source_dir: "/".into(),
            configuration: "repository".into(),
            target_repository: "127.0.0.1:5000/apps/web".into(),
            settings: BTreeMap::from([("registry", "127.0.0.1:5000".to_string()), ("sbom", "true".to_string())]),
            ca_bundle: Some("sha256:cc".into()),
        }
    }

    #[test]
    fn every_known_input_is_in_the_fingerprint() {
        let base = fingerprint(&inputs());
        assert_eq!(base, fingerprint(&inputs()), "the same inputs, the same fingerprint");
        type Change = Box<dyn Fn(&mut KnownInputs)>;
        let changes: Vec<(&str, Change)> = vec![
            ("builder", Box::new(|i| i.builder = "b2".into())),
            ("repository", Box::new(|i| i.repository.push('x'))),
            ("commit", Box::new(|i| i.commit = "b".repeat(40))),
            ("source directory", Box::new(|i| i.source_dir = "/api".into())),
            ("configuration", Box::new(|i| i.configuration = "{}".into())),
            ("target repository", Box::new(|i| i.target_repository.push('x'))),
            ("a setting", Box::new(|i| drop(i.settings.insert("sbom", "false".into())))),
            ("a setting more", Box::new(|i| drop(i.settings.insert("network", "host".into())))),
            ("CA bundle", Box::new(|i| i.ca_bundle = None)),
        ];
        for (what, change) in changes {
            let mut changed = inputs();
            change(&mut changed);
            assert_ne!(fingerprint(&changed), base, "{what} changed, the fingerprint did not");
        }
        // A boundary moved between two fields is another input.
        let mut moved = inputs();
        moved.source_dir = "/x".into();
        moved.configuration = "repository".into();
        let mut other = inputs();
        other.source_dir = "/".into();
        other.configuration = "xrepository".into();
        assert_ne!(fingerprint(&moved), fingerprint(&other));
    }

    #[test]
    fn only_a_full_hash_is_a_commit() {
        assert!(is_full_commit(&"0123456789abcdef".repeat(3)[..40]));
        assert!(!is_full_commit("0123456"));
        assert!(!is_full_commit(&"g".repeat(40)));
    }
}
