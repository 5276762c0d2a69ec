//! What `verify` compares: an image and its rebuild from the inputs its provenance records. Two
//! image manifests, their configs and, for each layer that differs, the files in it. Plain data
//! in, lines out; reading the registry is the service crate's.

use crate::digest::Digest;
use crate::oci::ImageManifest;
use std::collections::BTreeMap;

/// The runtime images a build used, as its provenance names them: `registry/repo:tag` ->
/// `sha256:…`. (`pkg:docker/<registry%3Aport/repo>@<tag>?digest=sha256:…` materials.)
pub fn runtime_images(materials: &[crate::oci::Material]) -> BTreeMap<String, String> {
    materials
        .iter()
        .filter_map(|m| Some((runtime_image_reference(&m.uri)?, format!("sha256:{}", m.digest.get("sha256")?))))
        .collect()
}

/// `registry/repo:tag` of a runtime image named by its purl
/// (`pkg:docker/<registry%3Aport/repo>@<tag>?…`); None for any other image.
pub fn runtime_image_reference(uri: &str) -> Option<String> {
    // The registry's port colon is percent-encoded, as purls write it.
    let uri = uri.replace("%3A", ":");
    let rest = uri.strip_prefix("pkg:docker/")?;
    let (repo, tag) = rest.split_once('?').map_or(rest, |(r, _)| r).rsplit_once('@')?;
    repo.contains("/apprunner-runtimes/").then(|| format!("{repo}:{tag}"))
}

/// One file of a layer, as `verify` compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFacts {
    /// `file`, `dir`, `symlink -> target`, `hardlink -> target`, `other`.
    pub kind: String,
    pub mode: u32,
    pub size: u64,
    /// A regular file's content's digest.
    pub digest: Option<Digest>,
    pub mtime: u64,
}

/// How many lines one layer's file differences are cut to.
pub const MAX_FILE_LINES: usize = 20;

/// The differences between a layer's files in the image (`was`) and in the rebuild (`now`), one
/// line each, at most `MAX_FILE_LINES` (then how many more).
pub fn file_differences(was: &BTreeMap<String, FileFacts>, now: &BTreeMap<String, FileFacts>) -> Vec<String> {
    let mut lines = Vec::new();
    for (path, a) in was {
        match now.get(path) {
            None => lines.push(format!("- /{path}: only in the image")),
            Some(b) if a != b => {
                let mut what = Vec::new();
                if a.kind != b.kind {
                    what.push(format!("{} / {}", a.kind, b.kind));
                }
                if a.digest != b.digest || a.size != b.size {
                    what.push(format!("content ({} / {} bytes)", a.size, b.size));
                }
                if a.mode != b.mode {
                    what.push(format!("mode {:o} / {:o}", a.mode, b.mode));
                }
                if a.mtime != b.mtime {
                    what.push(format!("time {} / {}", a.mtime, b.mtime));
                }
                lines.push(format!("~ /{path}: {} differ (image / rebuild)", what.join(", ")));
            }
            Some(_) => {}
        }
    }
    lines.extend(now.keys().filter(|p| !was.contains_key(*p)).map(|p| format!("+ /{p}: only in the rebuild")));
    lines.sort_by(|a, b| a[2..].cmp(&b[2..]));
    if lines.len() > MAX_FILE_LINES {
        let more = lines.len() - MAX_FILE_LINES;
        lines.truncate(MAX_FILE_LINES);
        lines.push(format!("… and {more} more"));
    }
    lines
}

/// The layers that differ: (position, the image's digest, the rebuild's), where a layer is
/// missing on one side its digest is None.
pub fn layer_differences(was: &ImageManifest, now: &ImageManifest) -> Vec<(usize, Option<Digest>, Option<Digest>)> {
    let n = was.layers.len().max(now.layers.len());
    (0..n)
        .filter_map(|i| {
            let a = was.layers.get(i).map(|l| l.digest.clone());
            let b = now.layers.get(i).map(|l| l.digest.clone());
            (a != b).then_some((i, a, b))
        })
        .collect()
}

/// The fields of two image configs that differ (`rootfs`, which the layers say, aside), one
/// line each: top-level fields and each `config` field, by name.
pub fn config_differences(was: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    let fields = |v: &serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let (a, b) = (fields(was), fields(now));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        if key == "rootfs" || a.get(key) == b.get(key) {
            continue;
        }
        if key == "config" {
            let (ca, cb) = (fields(&a[key]), fields(&b[key]));
            let mut inner: Vec<&String> = ca.keys().chain(cb.keys()).collect();
            inner.sort();
            inner.dedup();
            for k in inner.into_iter().filter(|k| ca.get(*k) != cb.get(*k)) {
                lines.push(format!("config.{k}: {} / {}", shown(ca.get(k)), shown(cb.get(k))));
            }
        } else {
            lines.push(format!("{key}: {} / {}", shown(a.get(key)), shown(b.get(key))));
        }
    }
    lines
}

fn shown(v: Option<&serde_json::Value>) -> String {
    v.map_or_else(|| "(none)".to_string(), |v| crate::shown::cut(&v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str, mtime: u64) -> FileFacts {
        FileFacts { kind: "file".into(), mode: 0o644, size: 3, digest: Some(Digest::of(content.as_bytes())), mtime }
    }

    #[test]
    fn differences_name_the_files_and_what_differs() {
        let was = BTreeMap::from([("app/a".to_string(), file("sha256:1", 5)), ("app/gone".to_string(), file("x", 5))]);
        let now = BTreeMap::from([("app/a".to_string(), file("sha256:2", 6)), ("app/new".to_string(), file("y", 5))]);
        assert_eq!(
            file_differences(&was, &now),
            [
                "~ /app/a: content (3 / 3 bytes), time 5 / 6 differ (image / rebuild)",
                "- /app/gone: only in the image",
                "+ /app/new: only in the rebuild",
            ]
        );
        let a = serde_json::json!({"created": "x", "config": {"Env": ["A=1"], "Cmd": ["a"]}, "rootfs": 1});
        let b = serde_json::json!({"created": "x", "config": {"Env": ["A=2"], "Cmd": ["a"]}, "rootfs": 2});
        assert_eq!(config_differences(&a, &b), [r#"config.Env: ["A=1"] / ["A=2"]"#]);
    }

    #[test]
    fn the_runtime_images_are_read_from_the_materials() {
        let m = |uri: &str, d: &str| crate::oci::Material {
            uri: uri.into(),
            digest: BTreeMap::from([("sha256".into(), d.into())]),
        };
        let found = runtime_images(&[
            m("pkg:docker/127.0.0.1%3A5000/apprunner-runtimes/python3@3.8.20-run?digest=sha256:aa&platform=linux%2Famd64", "aa"),
            m("pkg:docker/127.0.0.1%3A5000/apprunner-build/sources?digest=sha256:bb&platform=linux%2Famd64", "bb"),
        ]);
        assert_eq!(
            found,
            BTreeMap::from([("127.0.0.1:5000/apprunner-runtimes/python3:3.8.20-run".into(), "sha256:aa".into())])
        );
    }
}
