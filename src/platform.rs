//! Each platform's own rules that the guide states (SPEC.md §3.4, DECISIONS.md A3, A20),
//! checked before any BuildKit work.

use crate::catalog::ResolvedRuntime;
use crate::config::AppConfig;
use crate::error::BuildError;
use std::path::Path;

pub fn check(cfg: &AppConfig, rt: &ResolvedRuntime, dir: &Path, source_dir: &str) -> Result<(), BuildError> {
    if rt.name.starts_with("nodejs") {
        check_node_engines(cfg, rt, dir)?;
    }
    if rt.name == "php81" && source_dir != "/" {
        check_php_source_dir(rt, source_dir)?;
    }
    if rt.name == "php81" {
        check_start_script(cfg, dir)?;
    }
    Ok(())
}

/// The guide: `startup.sh` must be executable; commit it so, or `chmod +x` it in a build command.
fn check_start_script(cfg: &AppConfig, dir: &Path) -> Result<(), BuildError> {
    use std::os::unix::fs::PermissionsExt;
    let Some(script) = cfg.command.split_whitespace().next().and_then(|c| c.strip_prefix("./")) else { return Ok(()) };
    let Ok(meta) = std::fs::metadata(dir.join(script)) else { return Ok(()) };
    let made_executable = cfg.pre_build.iter().chain(&cfg.build).any(|c| c.contains("chmod") && c.contains(script));
    if meta.permissions().mode() & 0o111 == 0 && !made_executable {
        return Err(BuildError::user(format!(
            "run.command starts ./{script}, which is not executable: commit it with `chmod +x {script}` (git update-index --chmod=+x {script}), or add `chmod +x {script}` to build.commands.build"
        )));
    }
    Ok(())
}

/// A3: the resolved Node.js version must satisfy package.json's `engines.node`.
fn check_node_engines(cfg: &AppConfig, rt: &ResolvedRuntime, dir: &Path) -> Result<(), BuildError> {
    let Ok(text) = std::fs::read_to_string(dir.join("package.json")) else { return Ok(()) };
    let Ok(pkg) = serde_json::from_str::<serde_json::Value>(&text) else { return Ok(()) };
    let Some(range) = pkg["engines"]["node"].as_str() else { return Ok(()) };
    let version = semver::Version::parse(&rt.version).map_err(|e| BuildError::internal(format!("catalog version {}: {e}", rt.version)))?;
    let wanted = match node_range(range) {
        Some(r) => r,
        None => {
            return Err(BuildError::user(format!(
                "package.json engines.node `{range}` is not a version range this worker can read; use e.g. \"18.x\" or \">=18\""
            )))
        }
    };
    if wanted.iter().any(|r| r.matches(&version)) {
        return Ok(());
    }
    let lock = cfg.runtime_version.as_deref().map(|v| format!("run.runtime-version `{v}` → ")).unwrap_or_default();
    Err(BuildError::user(format!(
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
            let exact = alt.chars().next().is_some_and(|c| c.is_ascii_digit()) && !alt.contains(['x', 'X', '*']) && alt.split('.').count() == 3;
            let alt = if exact { format!("={alt}") } else { alt };
            let joined = alt.split_whitespace().collect::<Vec<_>>().join(", ").replace(",,", ",");
            semver::VersionReq::parse(&joined).ok()
        })
        .collect()
}

/// A20: PHP in a non-root source directory needs 8.1.22 or later.
fn check_php_source_dir(rt: &ResolvedRuntime, source_dir: &str) -> Result<(), BuildError> {
    let parts: Vec<u64> = rt.version.split('.').filter_map(|p| p.parse().ok()).collect();
    if parts.as_slice() < [8, 1, 22].as_slice() {
        return Err(BuildError::user(format!(
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
