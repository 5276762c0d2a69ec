//! Package managers' download caches, mounted into every build step as `BuildKit` cache mounts:
//! a rebuild finds what an earlier one downloaded, and nothing of them lands in the image.
//!
//! Only caches a tool merely reads back from are mounted. Where a tool keeps what the app needs
//! at run time (Maven's and Gradle's repositories, Go's module cache, `NuGet`'s packages folder:
//! `mvn spring-boot:run`, `go run`, `dotnet run` read them), a mount would take it out of the
//! image, so those stay as App Runner leaves them.

use serde::Serialize;

/// How concurrent builds share one cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sharing {
    /// The tool writes its cache safely from several processes at once.
    Shared,
    /// One build at a time; the others wait.
    Locked,
}

/// One cache mount of every build step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageCache {
    pub tool: &'static str,
    pub path: &'static str,
    /// `BuildKit`'s cache id: per service, runtime and tool.
    pub id: String,
    pub sharing: Sharing,
}

const PYTHON: &[(&str, &str, Sharing)] = &[("pip", "/root/.cache/pip", Sharing::Shared)];
const NODE: &[(&str, &str, Sharing)] = &[
    ("npm", "/root/.npm/_cacache", Sharing::Shared),
    ("yarn", "/usr/local/share/.cache/yarn", Sharing::Locked),
    ("pnpm", "/root/.local/share/pnpm/store", Sharing::Shared),
];
const GO: &[(&str, &str, Sharing)] = &[("go-build", "/root/.cache/go-build", Sharing::Shared)];
const PHP: &[(&str, &str, Sharing)] = &[("composer", "/root/.cache/composer", Sharing::Locked)];
// Debian's Ruby (the stand-in) keeps downloaded gems in its GEM_HOME's cache.
const RUBY: &[(&str, &str, Sharing)] = &[("bundler", "/var/lib/gems/3.1.0/cache", Sharing::Locked)];
const DOTNET: &[(&str, &str, Sharing)] = &[("nuget", "/root/.local/share/NuGet/http-cache", Sharing::Locked)];

/// The caches of `runtime`'s package managers, scoped to `service` (the target repository).
pub fn package_caches(runtime: &str, service: &str) -> Vec<PackageCache> {
    let family: &[(&str, &str, Sharing)] = match runtime {
        r if r.starts_with("python") => PYTHON,
        r if r.starts_with("nodejs") => NODE,
        r if r.starts_with("go") => GO,
        r if r.starts_with("php") => PHP,
        r if r.starts_with("ruby") => RUBY,
        r if r.starts_with("dotnet") => DOTNET,
        _ => &[],
    };
    family
        .iter()
        .map(|&(tool, path, sharing)| PackageCache {
            tool,
            path,
            id: format!("apprunner-build/{service}/{runtime}/{tool}"),
            sharing,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_are_per_service_runtime_and_tool() {
        let caches = package_caches("python311", "apps/web");
        assert_eq!(caches.len(), 1);
        assert_eq!(caches[0].id, "apprunner-build/apps/web/python311/pip");
        assert_eq!(package_caches("nodejs18", "a").iter().map(|c| c.tool).collect::<Vec<_>>(), ["npm", "yarn", "pnpm"]);
        assert!(package_caches("corretto11", "a").is_empty(), "Maven's repository is the app's at run time");
    }
}
