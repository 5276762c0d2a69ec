//! The image's software bill of materials: which files of a layer say what is installed, what
//! they say, the layers merged as the image's filesystem has them (whiteouts applied), and the
//! SPDX 2.3 document that lists the packages, each with its purl. Reading layers is the service
//! crate's; every parser here is bounded and linear in what it is given.

mod found;
mod spdx;

pub use found::{
    go_modules, interest, npm_package, os_release, parse_found, pom_properties, Interest, MAX_BINARY, MAX_TEXT,
};
pub use spdx::{document, purl, statement, SPDX_PREDICATE};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a package comes from: its purl type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    Deb,
    Pypi,
    Npm,
    Gem,
    Composer,
    Golang,
    Maven,
}

/// One package found in a layer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    /// As its ecosystem names it: `flask`, `@types/node`, `org.yaml/snakeyaml` (Maven: group/artifact).
    pub name: String,
    pub version: String,
    /// Debian packages: their architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
}

/// What one layer holds that the SBOM needs: the packages each file it adds says are installed,
/// the OS it names, and what it deletes from the layers below.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerScan {
    /// Path (without a leading `/`) -> the packages that file records.
    pub files: BTreeMap<String, Vec<Package>>,
    /// `/etc/os-release`'s `ID` and `VERSION_ID`, when the layer writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<(String, String)>,
    /// Paths a whiteout deletes (and everything under them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
    /// Directories made opaque: nothing below them from lower layers stays.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub opaque: Vec<String>,
}

impl LayerScan {
    /// Records a tar entry at `path` (as the tar names it): a whiteout, or nothing here.
    /// Returns whether it was a whiteout.
    pub fn whiteout(&mut self, path: &str) -> bool {
        let path = path.trim_start_matches("./").trim_start_matches('/');
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name == ".wh..wh..opq" {
            self.opaque.push(dir.to_string());
            return true;
        }
        if let Some(gone) = name.strip_prefix(".wh.") {
            self.deleted.push(if dir.is_empty() { gone.to_string() } else { format!("{dir}/{gone}") });
            return true;
        }
        false
    }
}

/// The image's filesystem as the SBOM sees it: `layers` bottom first, each one's deletions and
/// opaque directories applied to those below, its files over theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub files: BTreeMap<String, Vec<Package>>,
    pub os: Option<(String, String)>,
}

pub fn merge<'a>(layers: impl IntoIterator<Item = &'a LayerScan>) -> Merged {
    let mut merged = Merged::default();
    for layer in layers {
        for dir in &layer.opaque {
            remove_below(&mut merged.files, dir);
        }
        for gone in &layer.deleted {
            merged.files.remove(gone);
            remove_below(&mut merged.files, gone);
        }
        for (path, packages) in &layer.files {
            merged.files.insert(path.clone(), packages.clone());
        }
        if layer.os.is_some() {
            merged.os.clone_from(&layer.os);
        }
    }
    merged
}

/// Removes every path below the directory `dir` (all of them for the root): one range of the
/// ordered map, since `dir/…` sorts between `dir/` and `dir0`.
fn remove_below(files: &mut BTreeMap<String, Vec<Package>>, dir: &str) {
    if dir.is_empty() {
        files.clear();
        return;
    }
    let below: Vec<String> = files.range(format!("{dir}/")..format!("{dir}0")).map(|(k, _)| k.clone()).collect();
    for path in below {
        files.remove(&path);
    }
}

#[cfg(test)]
mod tests;
