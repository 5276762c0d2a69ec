//! What a build is asked to do, and what it hands back: the seam between whoever asks (the CLI,
//! the queue) and the pipeline. Plain data.

use crate::error::Invalid;
use crate::image_ref::{repository_component, ImageRef};
use crate::result::PriorBuild;
use std::path::PathBuf;

/// Where the source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    Local(PathBuf),
    Git(String),
}

impl SourceLocation {
    /// A short name for the source: the directory's or the repository's last path component.
    pub fn name(&self) -> Option<String> {
        match self {
            SourceLocation::Local(p) => p.file_name().map(|n| n.to_string_lossy().to_string()),
            SourceLocation::Git(u) => u
                .trim_end_matches('/')
                .trim_end_matches(".git")
                .rsplit(['/', ':'])
                .next()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    }
}

/// Which version of the source to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revision {
    /// The repository's default branch (git sources).
    DefaultBranch,
    /// A branch (or tag) by name.
    Branch(String),
    /// A commit by its hash (7 to 40 hex digits).
    Commit(String),
    /// A local directory as it is on disk, committed or not.
    WorkingTree,
}

impl Revision {
    /// A `--ref` as a person types it: 7 to 40 hex digits name a commit, anything else a branch
    /// or tag.
    pub fn from_ref(r: &str) -> Self {
        if (7..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit()) {
            Revision::Commit(r.to_string())
        } else {
            Revision::Branch(r.to_string())
        }
    }

    /// The revision a person's `--ref` names for a source, or else a git repository's default
    /// branch and a local directory as it is.
    pub fn for_source(reference: Option<&str>, location: &SourceLocation) -> Self {
        match (reference, location) {
            (Some(r), _) => Revision::from_ref(r),
            (None, SourceLocation::Git(_)) => Revision::DefaultBranch,
            (None, SourceLocation::Local(_)) => Revision::WorkingTree,
        }
    }

    /// The deployment log's name for it: `[Branch: main]`, `[Commit: 0123…]`.
    pub fn describe(&self) -> String {
        match self {
            Revision::Commit(c) => format!("[Commit: {c}]"),
            Revision::Branch(b) => format!("[Branch: {b}]"),
            Revision::DefaultBranch | Revision::WorkingTree => "[Branch: (default)]".to_string(),
        }
    }
}

/// Where the build settings come from (App Runner's `ConfigurationSource`).
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigInput {
    /// `apprunner.yaml` in the source directory.
    Repository,
    /// API values (`CodeConfigurationValues`); any `apprunner.yaml` is ignored.
    Api(serde_json::Value),
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub location: SourceLocation,
    pub revision: Revision,
    /// The source directory as given (normalised and confined by the pipeline).
    pub source_dir: String,
    pub config: ConfigInput,
    /// Where the image goes.
    pub target: ImageRef,
    pub operation_id: String,
    /// `SERVICE_CREATE`, `SERVICE_UPDATE` or `SERVICE_DEPLOY`, for the first log line.
    pub trigger: String,
    /// The service's current image (`repository@sha256:…`, in the target's repository), when
    /// one is known: taken again, as the image at the target tag is, when its build key is this
    /// build's. The queue's deployments name it from the service record (their tag is new).
    pub current_image: Option<ImageRef>,
    /// What the service's record keeps of the build that made `current_image`: a deployment
    /// of the same known inputs takes that image without fetching anything (`redeploy`).
    pub prior: Option<PriorBuild>,
}

/// The repository images go to when nobody names one.
pub const APPS_REPOSITORY: &str = "apprunner-apps";

/// A service's default name: the source's name, with the source directory's path after it.
pub fn default_service_name(location: &SourceLocation, source_dir: &str) -> String {
    let dir = source_dir.trim_matches('/').replace('/', "-");
    let base = location.name().unwrap_or_else(|| "app".into());
    let name = [base, dir].into_iter().filter(|s| !s.is_empty()).collect::<Vec<_>>().join("-");
    repository_component(&name)
}

/// `<registry>/apprunner-apps/<service>`, the image repository when nobody names one.
pub fn default_repository(registry: &str, service: &str) -> String {
    format!("{registry}/{APPS_REPOSITORY}/{}", repository_component(service))
}

/// The worker's own repositories: runtime images, source and CA-bundle images, markers, the
/// stand-ins' base. No job may push to them, on any registry.
pub const PROTECTED_REPOSITORIES: &[&str] = &["apprunner-runtimes", "apprunner-build", "apprunner-base"];

/// Whether a job may push to `target`: never into the worker's own repositories, and, when
/// `allowed` names prefixes (`registry/path`), only under one of them.
pub fn check_target(target: &ImageRef, allowed: &[String]) -> Result<(), Invalid> {
    let first = target.repository.split('/').next().unwrap_or_default();
    if PROTECTED_REPOSITORIES.contains(&first) {
        return Err(Invalid(format!(
            "target image {target} is in {first}/, which holds the build service's own images; push to another repository, e.g. {}/{APPS_REPOSITORY}/<service>",
            target.registry
        )));
    }
    let name = target.name();
    let under = |prefix: &String| {
        let prefix = prefix.trim_end_matches('/');
        name == prefix || name.starts_with(&format!("{prefix}/"))
    };
    if !allowed.is_empty() && !allowed.iter().any(under) {
        return Err(Invalid(format!(
            "target image {target} is outside the repositories jobs may push to: {}",
            allowed.join(", ")
        )));
    }
    Ok(())
}

/// An operation id: letters, digits, `-` and `_` (App Runner's are 32 lower-case hex digits).
pub fn check_operation_id(id: &str) -> Result<(), Invalid> {
    if id.is_empty() || id.len() > 128 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Invalid(format!(
            "operation id `{id}` must be 1-128 letters, digits, - and _ (App Runner uses 32 hex digits)"
        )));
    }
    Ok(())
}

pub fn new_operation_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A source directory as given (`services/api/`, `/services/api`), from the repository root:
/// `/services/api`. One that climbs out of the repository is refused.
pub fn normalize_source_dir(given: &str) -> Result<String, Invalid> {
    let mut parts = Vec::new();
    for c in given.trim().split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Invalid(format!(
                    "`{}` leaves the repository; give a path from the repository root such as /services/api",
                    crate::shown::cut(given)
                )))
            }
            part => parts.push(part),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// What may start a deployment, as the first line of its log names it: App Runner's three (a
/// service created, its configuration updated, a deployment asked for), and a commit that
/// changed the source directory of a service a watcher follows (docs/configuration.md says why
/// this word).
pub const TRIGGERS: [&str; 4] = ["SERVICE_CREATE", "SERVICE_UPDATE", "SERVICE_DEPLOY", "SOURCE_CODE_CHANGE"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_name_commits_or_branches() {
        assert_eq!(Revision::from_ref("0123abc"), Revision::Commit("0123abc".into()));
        assert_eq!(Revision::from_ref("main"), Revision::Branch("main".into()));
        assert_eq!(Revision::from_ref("abc"), Revision::Branch("abc".into()));
    }

    #[test]
    fn targets_are_confined() {
        let t = |s: &str| ImageRef::parse(s).unwrap();
        assert!(check_target(&t("r:5000/apprunner-runtimes/python3:3.8.16-run"), &[])
            .unwrap_err()
            .0
            .contains("build service's own"));
        assert!(check_target(&t("r:5000/apprunner-build/reported:op"), &[]).is_err());
        assert!(check_target(&t("r:5000/apps/web:1"), &[]).is_ok());
        let allowed = vec!["r:5000/apps".to_string()];
        assert!(check_target(&t("r:5000/apps/web:1"), &allowed).is_ok());
        assert!(check_target(&t("r:5000/appsx/web:1"), &allowed).unwrap_err().0.contains("outside the repositories"));
        assert!(check_target(&t("other:5000/apps/web:1"), &allowed).is_err());
    }

    #[test]
    fn default_names() {
        let git = SourceLocation::Git("https://github.com/u/Python-Hello.git".into());
        assert_eq!(default_service_name(&git, "/"), "python-hello");
        assert_eq!(default_service_name(&git, "/services/api/"), "python-hello-services-api");
        assert_eq!(default_repository("r:5000", "web"), "r:5000/apprunner-apps/web");
    }
}
