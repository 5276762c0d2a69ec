//! The managed runtime catalog (`runtimes/*.toml`, compiled into the binary) and
//! `runtime-version` resolution (App Runner's release tables; docs/configuration.md A4, A11, A12,
//! A14, A15).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which of App Runner's two build processes a runtime uses (docs/configuration.md, "The two build processes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildProcess {
    /// Build, then copy /app into the run image and build again there (the double build).
    Original,
    /// Build, then copy /app into the run image and run pre-run there.
    Revised,
}

impl std::fmt::Display for BuildProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildProcess::Original => "original",
            BuildProcess::Revised => "revised",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Release {
    pub version: String,
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Runtime {
    pub name: String,
    pub api_name: String,
    pub platform: String,
    pub build_process: BuildProcess,
    pub version_syntax: String,
    /// Image reference templates relative to the runtime registry; `{version}` is replaced.
    pub build_image: String,
    pub run_image: String,
    /// The docker/images recipe that builds local stand-ins, if this machine can build one.
    #[serde(default)]
    pub stand_in: Option<String>,
    /// A runtime App Runner never had, built here as its nearest relative is (B6).
    #[serde(default)]
    pub extension: bool,
    #[serde(rename = "release")]
    pub releases: Vec<Release>,
}

/// A runtime with its version resolved against the release table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedRuntime {
    pub name: String,
    pub version: String,
    pub build_process: BuildProcess,
    /// App Runner has no such runtime (see [`Runtime::extension`]).
    pub extension: bool,
    pub build_image: String,
    pub run_image: String,
}

const CATALOG_FILES: &[(&str, &str)] = &[
    ("python3", include_str!("../../../runtimes/python3.toml")),
    ("python311", include_str!("../../../runtimes/python311.toml")),
    ("nodejs12", include_str!("../../../runtimes/nodejs12.toml")),
    ("nodejs14", include_str!("../../../runtimes/nodejs14.toml")),
    ("nodejs16", include_str!("../../../runtimes/nodejs16.toml")),
    ("nodejs18", include_str!("../../../runtimes/nodejs18.toml")),
    ("nodejs20", include_str!("../../../runtimes/nodejs20.toml")),
    ("nodejs22", include_str!("../../../runtimes/nodejs22.toml")),
    ("corretto8", include_str!("../../../runtimes/corretto8.toml")),
    ("corretto11", include_str!("../../../runtimes/corretto11.toml")),
    ("dotnet6", include_str!("../../../runtimes/dotnet6.toml")),
    ("php81", include_str!("../../../runtimes/php81.toml")),
    ("ruby31", include_str!("../../../runtimes/ruby31.toml")),
    ("go1", include_str!("../../../runtimes/go1.toml")),
];

/// A runtime name or version the catalog does not have: always the user's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("`{given}` is not a managed runtime; expected one of {names}{hint}")]
    UnknownRuntime { given: String, names: String, hint: String },
    #[error("run.runtime-version `{lock}` is not a {runtime} version; expected {syntax} (for example {example})")]
    VersionSyntax { lock: String, runtime: String, syntax: String, example: String },
    #[error("run.runtime-version `{lock}` is not a version of {runtime}; it belongs to runtime `{other}` (set `runtime: {other}`)")]
    OtherRuntime { lock: String, runtime: String, other: String },
    #[error(
        "The specified runtime version is not supported: run.runtime-version `{lock}` is not a listed {runtime} release; listed: {listed}"
    )]
    Unlisted { lock: String, runtime: String, listed: String },
}

impl crate::error::Classified for CatalogError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::User
    }
}
crate::error::classified_into_build_error!(CatalogError);

#[derive(Debug, Clone)]
pub struct RuntimeCatalog {
    runtimes: Vec<Runtime>,
}

impl RuntimeCatalog {
    /// The catalog compiled into this binary.
    /// Parsed once per process: every build and every job reads the same catalog.
    pub fn builtin() -> &'static Self {
        static CATALOG: std::sync::OnceLock<RuntimeCatalog> = std::sync::OnceLock::new();
        CATALOG.get_or_init(|| {
            let runtimes = CATALOG_FILES
                .iter()
                .map(|(file, text)| {
                    let rt: Runtime = toml::from_str(text).unwrap_or_else(|e| panic!("runtimes/{file}.toml: {e}"));
                    assert_eq!(&rt.name, file, "runtimes/{file}.toml names itself {}", rt.name);
                    rt
                })
                .collect();
            Self { runtimes }
        })
    }

    pub fn runtimes(&self) -> &[Runtime] {
        &self.runtimes
    }

    /// Names of the runtimes that use the revised build, for messages.
    pub fn revised_names(&self) -> Vec<&str> {
        self.runtimes.iter().filter(|r| r.build_process == BuildProcess::Revised).map(|r| r.name.as_str()).collect()
    }

    /// Looks a runtime up by its name (`python3`) or API enum (`PYTHON_3`), ignoring
    /// surrounding spaces; anything else is an error naming the closest catalog name.
    pub fn lookup(&self, given: &str) -> Result<&Runtime, CatalogError> {
        let name = given.trim();
        if let Some(rt) = self.runtimes.iter().find(|r| r.name == name || r.api_name == name) {
            return Ok(rt);
        }
        let squashed: String = name.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
        let names: Vec<&str> = self.runtimes.iter().map(|r| r.name.as_str()).collect();
        let hint = match self.runtimes.iter().find(|r| r.name == squashed) {
            Some(r) => format!("; did you mean `{}`?", r.name),
            None => match closest(&squashed, &names) {
                Some(n) => format!("; the closest is `{n}`"),
                None => String::new(),
            },
        };
        Err(CatalogError::UnknownRuntime { given: crate::shown::cut(given), names: names.join(", "), hint })
    }

    /// Resolves `runtime-version` (None: the newest release) to one release (App Runner's rules for `runtime-version`).
    pub fn resolve(&self, rt: &Runtime, lock: Option<&str>) -> Result<ResolvedRuntime, CatalogError> {
        self.resolve_held(rt, lock, None)
    }

    /// As [`Self::resolve`], where the operator holds the runtime back at `hold`: without a
    /// lock, the newest release not newer than it (a lock still names its own release).
    pub fn resolve_held(
        &self,
        rt: &Runtime,
        lock: Option<&str>,
        hold: Option<&str>,
    ) -> Result<ResolvedRuntime, CatalogError> {
        let version = match (lock, hold) {
            (None, None) => rt.releases[0].version.clone(),
            (None, Some(hold)) => rt
                .releases
                .iter()
                .find(|r| compare_versions(&r.version, hold) != std::cmp::Ordering::Greater)
                .unwrap_or(&rt.releases[0])
                .version
                .clone(),
            (Some(lock), _) => self.resolve_lock(rt, lock.trim())?,
        };
        let (build_image, run_image) = rt.images(&version);
        Ok(ResolvedRuntime {
            name: rt.name.clone(),
            build_process: rt.build_process,
            extension: rt.extension,
            build_image,
            run_image,
            version,
        })
    }

    fn resolve_lock(&self, rt: &Runtime, lock: &str) -> Result<String, CatalogError> {
        let max_parts = rt.releases.iter().map(|r| r.version.split('.').count()).max().unwrap_or(3);
        let parts =
            parse_components(lock).filter(|p| p.len() <= max_parts).ok_or_else(|| CatalogError::VersionSyntax {
                lock: crate::shown::cut(lock),
                runtime: rt.name.clone(),
                syntax: rt.version_syntax.clone(),
                example: rt.releases[0].version.clone(),
            })?;
        // Newest-first table: the first row matching component by component wins (A12).
        if let Some(r) = rt.releases.iter().find(|r| matches_prefix(&r.version, &parts)) {
            return Ok(r.version.clone());
        }
        // A version from another runtime's line (python3 + 3.11): point at that runtime (A15).
        if let Some(other) = self
            .runtimes
            .iter()
            .find(|o| o.name != rt.name && o.releases.iter().any(|r| matches_prefix(&r.version, &parts)))
        {
            return Err(CatalogError::OtherRuntime {
                lock: crate::shown::cut(lock),
                runtime: rt.name.clone(),
                other: other.name.clone(),
            });
        }
        let near: Vec<&str> = [2usize, 1]
            .iter()
            .filter(|&&n| parts.len() >= n)
            .map(|&n| listed(rt, |v| matches_prefix(v, &parts[..n])))
            .find(|l| !l.is_empty())
            .unwrap_or_else(|| listed(rt, |_| true));
        Err(CatalogError::Unlisted { lock: crate::shown::cut(lock), runtime: rt.name.clone(), listed: near.join(", ") })
    }
}

fn listed(rt: &Runtime, keep: impl Fn(&str) -> bool) -> Vec<&str> {
    rt.versions().into_iter().filter(|v| keep(v)).collect()
}

impl Runtime {
    /// The build and run image of `version`, relative to the runtime registry.
    pub fn images(&self, version: &str) -> (String, String) {
        (self.build_image.replace("{version}", version), self.run_image.replace("{version}", version))
    }

    /// Ok when `version` is one of the listed versions; otherwise what to say, naming them.
    pub fn check_version(&self, version: &str) -> Result<(), crate::error::Invalid> {
        if self.versions().contains(&version) {
            return Ok(());
        }
        Err(crate::error::Invalid(format!(
            "{} has no version {}; its versions are {}",
            self.name,
            crate::shown::cut(version),
            self.versions().join(", ")
        )))
    }

    /// The listed versions, newest first, each once (the tables repeat some, A12).
    pub fn versions(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.releases {
            if !out.contains(&r.version.as_str()) {
                out.push(&r.version);
            }
        }
        out
    }
}

/// Whether `version` is one a configuration's `runtime-version: lock` accepts (A12: component
/// by component, `3.11` accepts `3.11.14`).
pub fn lock_accepts(lock: &str, version: &str) -> bool {
    parse_components(lock.trim()).is_some_and(|parts| matches_prefix(version, &parts))
}

/// Orders two versions component by component, numerically (A14); an unreadable one first.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    parse_components(a).cmp(&parse_components(b))
}

/// `11.0.13.08` -> [11, 0, 13, 8]: components compare numerically (A14).
fn parse_components(v: &str) -> Option<Vec<u64>> {
    if v.is_empty() {
        return None;
    }
    v.split('.')
        .map(|c| if c.is_empty() || !c.bytes().all(|b| b.is_ascii_digit()) { None } else { c.parse().ok() })
        .collect()
}

fn matches_prefix(version: &str, lock: &[u64]) -> bool {
    match parse_components(version) {
        Some(v) => v.len() >= lock.len() && v[..lock.len()] == *lock,
        None => false,
    }
}

/// The candidate within a small edit distance of `word`, if any. A word far longer than any
/// name is no typo of one, and is not compared (the distance costs its length times theirs).
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.len() > 64 {
        return None;
    }
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
