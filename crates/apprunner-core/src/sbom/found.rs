//! Which files say what is installed, and what each says: Debian's dpkg status, Python's
//! distribution metadata, npm's `package.json` under `node_modules`, `RubyGems`' specifications,
//! Composer's `installed.json`, Maven's local repository and `pom.properties`, and the module
//! list a Go binary records.

use super::{Ecosystem, Package};

/// Why a tar entry matters, decided from its path alone (without a leading `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// `var/lib/dpkg/status`.
    DpkgStatus,
    /// `etc/os-release` or `usr/lib/os-release`.
    OsRelease,
    /// `…/site-packages|dist-packages/X.dist-info/METADATA` or `X.egg-info/PKG-INFO`.
    PythonMetadata,
    /// `…/node_modules/[@scope/]name/package.json`.
    NpmPackage,
    /// `…/specifications/name-version.gemspec`: the path says it all.
    Gemspec,
    /// `…/vendor/composer/installed.json`.
    ComposerInstalled,
    /// `…/.m2/repository/group…/artifact/version/artifact-version.jar`: the path says it all.
    MavenRepository,
    /// A jar or war under `app/`: its `pom.properties` (read by the caller, who unzips).
    Jar,
    /// A regular file under `app/` that may be a Go binary (the caller reads it).
    Executable,
}

/// The largest file read for each kind (bigger ones are skipped, and said so by the caller).
pub const MAX_TEXT: u64 = 64 << 20;
pub const MAX_BINARY: u64 = 256 << 20;

// Lower-case extensions only: what the tools that write these files name them.
#[allow(clippy::case_sensitive_file_extension_comparisons)]
pub fn interest(path: &str, executable: bool) -> Option<Interest> {
    let path = path.trim_start_matches("./").trim_start_matches('/');
    if path == "var/lib/dpkg/status" {
        return Some(Interest::DpkgStatus);
    }
    if path == "etc/os-release" || path == "usr/lib/os-release" {
        return Some(Interest::OsRelease);
    }
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    let last = parts[n - 1];
    if n >= 3 && (last == "METADATA" || last == "PKG-INFO") {
        let dist = parts[n - 2];
        let home = parts[n - 3];
        let packages_dir = home == "site-packages" || home == "dist-packages";
        if packages_dir && (dist.ends_with(".dist-info") || dist.ends_with(".egg-info")) {
            return Some(Interest::PythonMetadata);
        }
    }
    if last == "package.json" && n >= 3 {
        let plain = parts[n - 3] == "node_modules" && !parts[n - 2].starts_with('@');
        let scoped = n >= 4 && parts[n - 4] == "node_modules" && parts[n - 3].starts_with('@');
        if plain || scoped {
            return Some(Interest::NpmPackage);
        }
    }
    if n >= 2 && parts[n - 2] == "specifications" && last.ends_with(".gemspec") {
        return Some(Interest::Gemspec);
    }
    if n >= 3 && last == "installed.json" && parts[n - 2] == "composer" && parts[n - 3] == "vendor" {
        return Some(Interest::ComposerInstalled);
    }
    if let Some(at) = parts.iter().position(|p| *p == ".m2") {
        let tail = &parts[at + 1..];
        if tail.len() >= 5 && tail[0] == "repository" && last.ends_with(".jar") {
            return Some(Interest::MavenRepository);
        }
    }
    if parts[0] == "app" {
        if last.ends_with(".jar") || last.ends_with(".war") {
            return Some(Interest::Jar);
        }
        if executable {
            return Some(Interest::Executable);
        }
    }
    None
}

/// The packages the file at `path`, of kind `interest`, records (`bytes`: its content, when the
/// kind needs it; jars are unzipped by the caller and given to `pom_properties`).
pub fn parse_found(interest: Interest, path: &str, bytes: &[u8]) -> Vec<Package> {
    let text = || String::from_utf8_lossy(bytes);
    match interest {
        Interest::DpkgStatus => dpkg_status(&text()),
        Interest::PythonMetadata => python_metadata(&text()).into_iter().collect(),
        Interest::NpmPackage => npm_package(bytes).into_iter().collect(),
        Interest::Gemspec => gemspec(path).into_iter().collect(),
        Interest::ComposerInstalled => composer_installed(bytes),
        Interest::MavenRepository => maven_repository(path).into_iter().collect(),
        Interest::Executable => go_modules(bytes),
        Interest::OsRelease | Interest::Jar => Vec::new(),
    }
}

/// `ID` and `VERSION_ID` of an os-release file.
pub fn os_release(text: &str) -> Option<(String, String)> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    Some((value("ID")?, value("VERSION_ID").unwrap_or_default()))
}

fn package(ecosystem: Ecosystem, name: &str, version: &str) -> Option<Package> {
    let (name, version) = (name.trim(), version.trim());
    if name.is_empty() || version.is_empty() || name.len() > 512 || version.len() > 256 {
        return None;
    }
    Some(Package { ecosystem, name: name.to_string(), version: version.to_string(), arch: None })
}

/// Installed packages of a dpkg status file (stanzas whose `Status` ends in `installed`).
fn dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = ("", "", "", false);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = v.trim();
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = v.trim();
            } else if let Some(v) = line.strip_prefix("Architecture:") {
                arch = v.trim();
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if installed {
            if let Some(mut p) = package(Ecosystem::Deb, name, version) {
                p.arch = Some(arch.to_string()).filter(|a| !a.is_empty());
                out.push(p);
            }
        }
    }
    out
}

/// `Name` and `Version` of a Python distribution's METADATA (or PKG-INFO): the headers before
/// the first blank line.
fn python_metadata(text: &str) -> Option<Package> {
    let headers = text.split("\n\n").next().unwrap_or_default();
    let value = |key: &str| headers.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
    package(Ecosystem::Pypi, value("Name:")?, value("Version:")?)
}

/// `name` and `version` of a `package.json`.
pub fn npm_package(bytes: &[u8]) -> Option<Package> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        name: Option<String>,
        version: Option<String>,
    }
    let m: Manifest = serde_json::from_slice(bytes).ok()?;
    package(Ecosystem::Npm, &m.name?, &m.version?)
}

/// `name-version.gemspec`: the version starts after the first `-` followed by a digit.
fn gemspec(path: &str) -> Option<Package> {
    let file = path.rsplit('/').next()?.strip_suffix(".gemspec")?;
    let split =
        file.char_indices().find(|(i, c)| *c == '-' && file[i + 1..].starts_with(|d: char| d.is_ascii_digit()))?.0;
    package(Ecosystem::Gem, &file[..split], &file[split + 1..])
}

/// The packages of Composer's `installed.json` (Composer 2's `{"packages": […]}` or 1's list).
fn composer_installed(bytes: &[u8]) -> Vec<Package> {
    #[derive(serde::Deserialize)]
    struct Entry {
        name: Option<String>,
        version: Option<String>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Installed {
        Two { packages: Vec<Entry> },
        One(Vec<Entry>),
    }
    let Ok(Installed::Two { packages: entries } | Installed::One(entries)) = serde_json::from_slice::<Installed>(bytes)
    else {
        return Vec::new();
    };
    entries.into_iter().filter_map(|e| package(Ecosystem::Composer, &e.name?, &e.version?)).collect()
}

/// `.m2/repository/<group dirs>/<artifact>/<version>/<artifact>-<version>.jar`.
fn maven_repository(path: &str) -> Option<Package> {
    let parts: Vec<&str> = path.split('/').collect();
    let at = parts.iter().position(|p| *p == ".m2")? + 2;
    let tail = parts.get(at..)?;
    let n = tail.len();
    let (artifact, version, file) = (tail[n - 3], tail[n - 2], tail[n - 1]);
    if file != format!("{artifact}-{version}.jar") {
        return None;
    }
    package(Ecosystem::Maven, &format!("{}/{artifact}", tail[..n - 3].join(".")), version)
}

/// `groupId`, `artifactId` and `version` of a `pom.properties` inside a jar.
pub fn pom_properties(text: &str) -> Option<Package> {
    let value = |key: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(key)?.trim_start().strip_prefix('=')).map(str::trim)
    };
    package(Ecosystem::Maven, &format!("{}/{}", value("groupId")?, value("artifactId")?), value("version")?)
}

/// The modules a Go binary records (`go version -m`): its main module and its dependencies,
/// from the build info the linker writes after `\xff Go buildinf:` (Go 1.18's inline format).
pub fn go_modules(bytes: &[u8]) -> Vec<Package> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !bytes.starts_with(b"\x7fELF") {
        return Vec::new();
    }
    // The build info is aligned to 16 bytes.
    let Some(at) = (0..bytes.len().saturating_sub(32)).step_by(16).find(|&i| bytes[i..].starts_with(MAGIC)) else {
        return Vec::new();
    };
    let flags = bytes[at + 15];
    if flags & 0x2 == 0 {
        // Before Go 1.18 the strings are pointers into the binary; not read here.
        return Vec::new();
    }
    let mut rest = &bytes[at + 32..];
    let mut next = || {
        let (len, used) = uvarint(rest)?;
        let len = usize::try_from(len).ok()?;
        let s = rest.get(used..used + len)?;
        rest = &rest[used + len..];
        Some(String::from_utf8_lossy(s).to_string())
    };
    let (Some(_go_version), Some(modinfo)) = (next(), next()) else { return Vec::new() };
    modinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            match (f.next()?, f.next()?, f.next()) {
                ("mod" | "dep", path, Some(version)) => package(Ecosystem::Golang, path, version),
                _ => None,
            }
        })
        .collect()
}

fn uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}
