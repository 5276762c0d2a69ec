//! Each platform's own rules that the guide states (docs/configuration.md A3, A20),
//! checked before any `BuildKit` work. Pure: the facts about the source's files are read by the
//! edge (`edge::source::platform_facts`) and handed in.

use crate::catalog::ResolvedRuntime;
use crate::config::AppConfig;

/// What the platform rules need to know of the source directory's files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceFacts {
    /// `package.json`'s text, when the source directory has one.
    pub package_json: Option<String>,
    /// Whether the start script `run.command` names (see [`start_script`]) is executable, when
    /// the source directory has it.
    pub start_script_executable: Option<bool>,
}

/// A platform rule the source breaks: the user's to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlatformError(String);

impl crate::error::Classified for PlatformError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::User
    }
}
crate::error::classified_into_build_error!(PlatformError);

/// The script a `./script …` start command runs, relative to the source directory.
pub fn start_script(cfg: &AppConfig) -> Option<&str> {
    cfg.command.split_whitespace().next().and_then(|c| c.strip_prefix("./"))
}

pub fn check(
    cfg: &AppConfig,
    rt: &ResolvedRuntime,
    facts: &SourceFacts,
    source_dir: &str,
) -> Result<(), PlatformError> {
    if rt.name.starts_with("nodejs") {
        if let Some(text) = &facts.package_json {
            check_node_engines(cfg, rt, text)?;
        }
    }
    if rt.name == "php81" && source_dir != "/" {
        check_php_source_dir(rt, source_dir)?;
    }
    if rt.name == "php81" {
        check_start_script(cfg, facts)?;
    }
    Ok(())
}

/// The guide: `startup.sh` must be executable; commit it so, or `chmod +x` it in a build command.
fn check_start_script(cfg: &AppConfig, facts: &SourceFacts) -> Result<(), PlatformError> {
    let (Some(script), Some(false)) = (start_script(cfg), facts.start_script_executable) else { return Ok(()) };
    let made_executable = cfg.pre_build.iter().chain(&cfg.build).any(|c| c.contains("chmod") && c.contains(script));
    if !made_executable {
        return Err(PlatformError(format!(
            "run.command starts ./{script}, which is not executable: commit it with `chmod +x {script}` (git update-index --chmod=+x {script}), or add `chmod +x {script}` to build.commands.build"
        )));
    }
    Ok(())
}

/// A3: the resolved Node.js version must satisfy package.json's `engines.node`.
fn check_node_engines(cfg: &AppConfig, rt: &ResolvedRuntime, text: &str) -> Result<(), PlatformError> {
    let Ok(pkg) = serde_json::from_str::<serde_json::Value>(text) else { return Ok(()) };
    let Some(range) = pkg["engines"]["node"].as_str() else { return Ok(()) };
    // Node.js catalog versions are semver; one that is not cannot be compared, so nothing is refused.
    let Ok(version) = semver::Version::parse(&rt.version) else { return Ok(()) };
    let Some(wanted) = node_range(range) else {
        return Err(PlatformError(format!(
                "package.json engines.node `{range}` is not a version range this worker can read; use e.g. \"18.x\" or \">=18\""
            )));
    };
    if wanted.iter().any(|r| r.matches(&version)) {
        return Ok(());
    }
    let lock = cfg.runtime_version.as_deref().map(|v| format!("run.runtime-version `{v}` → ")).unwrap_or_default();
    Err(PlatformError(format!(
        "Node.js version conflict: package.json engines.node `{range}` does not allow {}{} {} (runtime {}); make them agree (apprunner.yaml overrides package.json, but a conflict fails the build)",
        lock, rt.name, rt.version, rt.name
    )))
}

/// npm ranges: `||` alternatives of space-separated comparators; a bare `12.21.0` means exactly that.
fn node_range(range: &str) -> Option<Vec<semver::VersionReq>> {
    range
        .split("||")
        .map(|alt| {
            let alt = alt.trim().trim_start_matches('v');
            let alt = if alt.is_empty() || alt == "*" || alt == "x" { "*".to_string() } else { alt.to_string() };
            // npm's hyphen range `a - b`.
            let alt = match alt.split_once(" - ") {
                Some((a, b)) => format!(">={}, <={}", a.trim(), b.trim()),
                None => alt,
            };
            let exact = alt.chars().next().is_some_and(|c| c.is_ascii_digit())
                && !alt.contains(['x', 'X', '*'])
                && alt.split('.').count() == 3;
            let alt = if exact { format!("={alt}") } else { alt };
            let joined = alt.split_whitespace().collect::<Vec<_>>().join(", ").replace(",,", ",");
            semver::VersionReq::parse(&joined).ok()
        })
        .collect()
}

/// A20: PHP in a non-root source directory needs 8.1.22 or later.
fn check_php_source_dir(rt: &ResolvedRuntime, source_dir: &str) -> Result<(), PlatformError> {
    let parts: Vec<u64> = rt.version.split('.').filter_map(|p| p.parse().ok()).collect();
    if parts.as_slice() < [8, 1, 22].as_slice() {
        return Err(PlatformError(format!(
            "php81 {} cannot build from source directory {source_dir}: PHP before 8.1.22 only builds from the repository root; set run.runtime-version to 8.1.22 or later (or 8.1), or use source directory /",
            rt.version
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn satisfied(range: &str, v: &str) -> bool {
        node_range(range).unwrap().iter().any(|r| r.matches(&semver::Version::parse(v).unwrap()))
    }

    #[test]
    fn npm_ranges() {
        assert!(satisfied("12.21.0", "12.21.0"));
        assert!(!satisfied("12.21.0", "14.21.3"));
        assert!(satisfied(">=18", "18.19.1"));
        assert!(satisfied("18.x", "18.19.0"));
        assert!(satisfied("^16 || ^18", "18.19.1"));
        assert!(!satisfied("<18", "18.19.1"));
        assert!(satisfied(">=14.0.0 <19", "18.19.1"));
        assert!(satisfied("16 - 18", "18.0.0"));
    }
}
