//! What a solve sends out of `BuildKit`, the same for Docker Engine (containerd image store) and a
//! standalone buildkitd: the `image` exporter pushes the finished image to the registry itself,
//! with its final config; the registry cache is imported and exported beside it.

use super::control::{CacheOptions, CacheOptionsEntry};
use apprunner_core::image_ref::ImageRef;
use apprunner_core::labels;
use apprunner_core::oci;
use apprunner_core::plan::FinalImage;
use std::collections::{BTreeMap, BTreeSet};

/// The OCI annotations a registry's UI shows, from the image's labels, on the index and on the
/// image manifest.
const ANNOTATED: &[&str] = &[labels::OCI_SOURCE, labels::OCI_REVISION];
const OCI_CREATED: &str = "org.opencontainers.image.created";

/// What a solve exports and how: `BuildKit`'s exporter and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    /// `image`: the image exporter, which pushes.
    pub kind: &'static str,
    pub attributes: BTreeMap<String, String>,
}

/// What `BuildKit` says a solve exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExporterResponse(pub BTreeMap<String, String>);

impl ExporterResponse {
    /// The digest of what the image exporter pushed (the index, with attestations).
    pub fn image_digest(&self) -> Option<&str> {
        self.0.get("containerimage.digest").map(String::as_str)
    }
}

/// The image exporter for a solve that ends in `target`.
pub fn image_exporter(target: &ImageRef, image: &FinalImage, plain_http: bool) -> Exporter {
    let mut attrs = BTreeMap::from([
        ("name".to_string(), target.to_string()),
        ("push".to_string(), "true".to_string()),
        // The registry holds the image; a copy in the daemon's own store would only fill its disk.
        ("store".to_string(), "false".to_string()),
        ("oci-mediatypes".to_string(), "true".to_string()),
        // BuildKit takes an attribute it does not know as the result's metadata: this one is the
        // image config it writes, completed with the layers' rootfs and history.
        ("containerimage.config".to_string(), oci::to_text(&image_config(image))),
    ]);
    if plain_http {
        attrs.insert("registry.insecure".into(), "true".into());
    }
    if let Some(epoch) = image.source_date_epoch {
        // Every time in the image becomes the commit's at the latest: the config's and history's,
        // and each file's in the layers the steps wrote, so a cold build elsewhere gives the same
        // layers.
        attrs.insert("source-date-epoch".into(), epoch.to_string());
        attrs.insert("rewrite-timestamp".into(), "true".into());
        // Metadata too, as the config is: the run image's layers, which the rewrite leaves as
        // they are (rewritten, they would be copies of the run image's under other digests).
        if !image.base_diff_ids.is_empty() {
            let base = oci::BaseConfig { rootfs: oci::RootFs::layers(image.base_diff_ids.clone()) };
            attrs.insert("containerimage.base.config".into(), oci::to_text(&base));
        }
    }
    let title = target.repository.rsplit('/').next().unwrap_or_default().to_string();
    let annotations = ANNOTATED
        .iter()
        .filter_map(|k| image.labels.get(*k).map(|v| ((*k).to_string(), v.clone())))
        .chain([(labels::OCI_TITLE.to_string(), title)])
        .chain(image.created.iter().map(|c| (OCI_CREATED.to_string(), c.clone())));
    for (key, value) in annotations {
        attrs.insert(format!("annotation-index.{key}"), value.clone());
        attrs.insert(format!("annotation.{key}"), value);
    }
    for (key, value) in &image.deployment {
        attrs.insert(format!("annotation-index.{key}"), value.clone());
    }
    Exporter { kind: "image", attributes: attrs }
}

/// What a build asks `BuildKit` to record besides the image: a SLSA provenance attestation
/// (`mode=max`: every source pinned by digest, the runtime images among them, and the whole LLB),
/// beside the image in an OCI index. (A solve without a frontend has no parameters to record;
/// the image's labels say the runtime, its version and the build process.)
pub fn attestations() -> BTreeMap<String, String> {
    BTreeMap::from([("attest:provenance".to_string(), "mode=max".to_string())])
}

/// The OCI image config of the image that runs (docs/configuration.md, "Image config").
pub fn image_config(image: &FinalImage) -> oci::ExporterConfig {
    oci::ExporterConfig {
        architecture: oci_architecture().to_string(),
        os: "linux".to_string(),
        config: oci::RunSettings {
            env: image.env.clone(),
            cmd: image.cmd.clone(),
            working_dir: image.working_dir.clone(),
            exposed_ports: BTreeSet::from([format!("{}/tcp", image.exposed_port)]),
            labels: image.labels.clone(),
        },
        created: image.created.clone(),
        history: image.base_history.clone(),
    }
}

/// The machine's architecture as OCI names it; `BuildKit` runs the steps on this machine.
pub fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// The registry cache a fleet of workers shares for one service: every worker imports it, and
/// the one that builds exports to it (`mode=max`: every step's result, not only the image's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCache {
    /// `127.0.0.1:5000/apprunner-build/cache/apprunner-apps/hello:cache`
    pub reference: String,
    pub plain_http: bool,
}

impl FleetCache {
    /// The cache of the service whose image is `target`, under `prefix` (a registry host and
    /// repository path): one repository per target repository, so no job reaches another
    /// service's cache.
    pub fn for_target(prefix: &str, target: &ImageRef, plain_http: bool) -> Self {
        Self { reference: format!("{}/{}:cache", prefix.trim_end_matches('/'), target.repository), plain_http }
    }

    fn attrs(&self) -> BTreeMap<String, String> {
        let mut attrs = BTreeMap::from([("ref".to_string(), self.reference.clone())]);
        if self.plain_http {
            attrs.insert("registry.insecure".into(), "true".into());
        }
        attrs
    }

    /// Import only (the post-build check), or import and export (the image).
    pub fn options(&self, export: bool) -> CacheOptions {
        let imports = vec![CacheOptionsEntry { r#type: "registry".into(), attrs: self.attrs() }];
        let exports = if export {
            let mut attrs = self.attrs();
            attrs.insert("mode".into(), "max".into());
            attrs.insert("oci-mediatypes".into(), "true".into());
            vec![CacheOptionsEntry { r#type: "registry".into(), attrs }]
        } else {
            Vec::new()
        };
        CacheOptions { exports, imports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apprunner_core::oci;

    #[test]
    fn the_cache_is_scoped_to_the_target_repository() {
        let target = ImageRef::parse("reg.example:5000/team/api:v2").unwrap();
        let cache = FleetCache::for_target("127.0.0.1:5000/apprunner-build/cache/", &target, true);
        assert_eq!(cache.reference, "127.0.0.1:5000/apprunner-build/cache/team/api:cache");
        let opts = cache.options(false);
        assert!(opts.exports.is_empty());
        assert_eq!(opts.imports[0].attrs["registry.insecure"], "true");
        assert_eq!(cache.options(true).exports[0].attrs["mode"], "max");
    }

    /// The target and final image the tests export: a Python app on a run image built at a
    /// commit's time (the pinned test's bytes are of exactly this).
    fn hello() -> (ImageRef, FinalImage) {
        let target = ImageRef::parse("127.0.0.1:5000/apprunner-apps/hello:latest").unwrap();
        let history: oci::History =
            serde_json::from_str(r#"{"created":"2025-01-01T00:00:00Z","created_by":"debootstrap"}"#).unwrap();
        let image = FinalImage {
            working_dir: "/app".into(),
            cmd: vec!["/bin/sh".into(), "-c".into(), "python3 app.py".into()],
            env: vec!["PATH=/usr/bin".into(), "PORT=8080".into()],
            exposed_port: 8080,
            labels: BTreeMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
            created: Some("2026-11-25T12:00:00Z".into()),
            source_date_epoch: Some(1_795_608_000),
            base_diff_ids: vec!["sha256:base".into()],
            base_history: vec![history],
            deployment: BTreeMap::new(),
        };
        (target, image)
    }

    #[test]
    fn the_exporter_pushes_with_the_final_config() {
        let (target, image) = hello();
        let image = FinalImage {
            created: None,
            source_date_epoch: None,
            deployment: BTreeMap::from([("dev.apprunner-build.operation-id".into(), "op".into())]),
            ..image
        };
        let Exporter { kind, attributes: attrs } = image_exporter(&target, &image, false);
        assert_eq!(kind, "image");
        assert_eq!(attrs["push"], "true");
        assert!(!attrs.contains_key("registry.insecure"));
        let config: serde_json::Value = serde_json::from_str(&attrs["containerimage.config"]).unwrap();
        assert_eq!(config["config"]["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
        assert_eq!(config["config"]["Cmd"][2], "python3 app.py");
        assert_eq!(config["os"], "linux");
        assert_eq!(attrs["annotation-index.dev.apprunner-build.operation-id"], "op");
        assert!(!attrs["containerimage.config"].contains("operation-id"), "not in the image");
        assert!(!attrs.contains_key("rewrite-timestamp"), "no commit, no epoch");
    }

    #[test]
    fn a_commit_s_time_clamps_every_time_and_the_run_image_is_the_base() {
        let (target, image) = hello();
        let Exporter { attributes: attrs, .. } = image_exporter(&target, &image, false);
        assert_eq!(attrs["source-date-epoch"], "1795608000");
        assert_eq!(attrs["rewrite-timestamp"], "true");
        let base: serde_json::Value = serde_json::from_str(&attrs["containerimage.base.config"]).unwrap();
        assert_eq!(base["rootfs"]["diff_ids"][0], "sha256:base");
        let config: serde_json::Value = serde_json::from_str(&attrs["containerimage.config"]).unwrap();
        assert_eq!(config["created"], "2026-11-25T12:00:00Z");
        assert_eq!(config["history"][0]["created_by"], "debootstrap", "the run image's history comes first");
    }

    /// The exporter's image config is part of the build key: its bytes may not change with how
    /// it is written.
    #[test]
    fn the_exporter_s_config_bytes_are_pinned() {
        let (target, image) = hello();
        let Exporter { attributes: attrs, .. } = image_exporter(&target, &image, false);
        let arch = oci_architecture();
        assert_eq!(
            attrs["containerimage.config"],
            format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/usr/bin","PORT=8080"],"Cmd":["/bin/sh","-c","python3 app.py"],"WorkingDir":"/app","ExposedPorts":{{"8080/tcp":{{}}}},"Labels":{{"a":"1","b":"2"}}}},"created":"2026-11-25T12:00:00Z","history":[{{"created":"2025-01-01T00:00:00Z","created_by":"debootstrap"}}]}}"#
            )
        );
        assert_eq!(attrs["containerimage.base.config"], r#"{"rootfs":{"type":"layers","diff_ids":["sha256:base"]}}"#);
        let plain = FinalImage { created: None, source_date_epoch: None, base_history: Vec::new(), ..image };
        let Exporter { attributes: attrs, .. } = image_exporter(&target, &plain, false);
        assert_eq!(
            attrs["containerimage.config"],
            format!(
                r#"{{"architecture":"{arch}","os":"linux","config":{{"Env":["PATH=/usr/bin","PORT=8080"],"Cmd":["/bin/sh","-c","python3 app.py"],"WorkingDir":"/app","ExposedPorts":{{"8080/tcp":{{}}}},"Labels":{{"a":"1","b":"2"}}}}}}"#
            )
        );
    }
}
