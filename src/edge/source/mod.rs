//! The user's source: a local directory or a git repository at a revision, the source
//! directory confined to it, the facts the platform rules need, and the packed layer (`pack`).

mod changes;
mod clones;
mod files;
pub mod pack;
mod remote;
mod smart_http;

pub use changes::Mirrors;
pub use clones::sweep_stale_clones;
use clones::{new_clone, Clone};
pub use files::{manifest_files, platform_facts, read_confined, MAX_PACKAGE_JSON_BYTES};

pub use pack::{pack_dir, pack_file, unpack_file, Layer, PackLimits};
pub use remote::{remote_commit, remote_head};

use crate::core::request::{Revision, SourceLocation};
use crate::error::{one_line, Cause, Classified, ErrorClass};
use std::path::{Path, PathBuf};

/// Why the source could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The git host could not be reached or broke off: may pass.
    #[error("{what} {url}: {detail}")]
    GitUnreachable { what: String, url: String, detail: String },
    /// The git host answered, and said no (no such repository, branch or commit).
    #[error("{what} {url}: {detail}")]
    GitRefused { what: String, url: String, detail: String },
    #[error("source path {path}: {detail}")]
    Path { path: String, detail: String },
    #[error("source path {0} is not a directory")]
    NotADirectory(String),
    #[error("source directory {0}")]
    SourceDir(String),
    #[error("cannot read the source directory: {0}")]
    Unreadable(String),
    /// A file the worker will not read (a link out of the tree, a FIFO, too big).
    #[error("{0}")]
    Refused(String),
    /// The worker's own filesystem failed it (`what` it was doing): a bug or a full disk.
    #[error("{what}: {cause}")]
    Io {
        what: String,
        #[source]
        cause: Cause,
    },
}

impl SourceError {
    /// The filesystem failed while doing `what`.
    pub fn io(what: impl Into<String>, cause: std::io::Error) -> Self {
        Self::Io { what: what.into(), cause: Cause::new(cause) }
    }
}

impl Classified for SourceError {
    fn class(&self) -> ErrorClass {
        match self {
            SourceError::GitUnreachable { .. } => ErrorClass::Transient,
            SourceError::GitRefused { .. }
            | SourceError::Path { .. }
            | SourceError::NotADirectory(_)
            | SourceError::SourceDir(_)
            | SourceError::Unreadable(_)
            | SourceError::Refused(_) => ErrorClass::User,
            SourceError::Io { .. } => ErrorClass::Internal,
        }
    }
}
crate::error::classified_into_build_error!(SourceError);

type Result<T> = std::result::Result<T, SourceError>;

/// A source as a person names it: a URL (`file://`, `http(s)://`, `ssh://`, `git://`,
/// `user@host:path`) is a git repository, anything else a local directory.
pub fn locate(s: &str) -> SourceLocation {
    let is_git = s.starts_with("file://")
        || s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("ssh://")
        || s.starts_with("git://")
        || (s.contains('@') && s.contains(':') && !Path::new(s).exists());
    if is_git {
        SourceLocation::Git(s.to_string())
    } else {
        // Absolute, so the source's name is its directory's even for `.`.
        let path = Path::new(s);
        SourceLocation::Local(path.canonicalize().unwrap_or_else(|_| path.to_path_buf()))
    }
}

/// A checked-out repository: where it is on disk and which commit it is.
#[derive(Debug)]
pub struct Checkout {
    pub root: PathBuf,
    pub commit: Option<String>,
    /// When `commit` was made (Unix seconds), as git says.
    pub committed_at: Option<i64>,
    pub branch: Option<String>,
    /// A local working tree with changes not committed: what is built is not `commit`.
    pub dirty: bool,
    /// Keeps a temporary clone alive as long as the checkout.
    _dir: Option<Clone>,
}

/// How git authenticates to a repository's host: never through the URL, so no credential
/// is in a process's arguments or in anything git prints.
#[derive(Debug, Clone, Default)]
pub struct GitAuth {
    /// User and password (or token) that were in the job's URL.
    pub userinfo: Option<(String, String)>,
    /// A git-credential-store file (`https://user:token@host` lines): the worker's setting.
    pub store: Option<PathBuf>,
}

impl GitAuth {
    /// git's `-c` options and environment for these credentials.
    fn apply(&self, cmd: &mut tokio::process::Command) {
        // Stalls end: a host that stops sending for a minute fails the fetch.
        cmd.args(["-c", "http.lowSpeedLimit=1000", "-c", "http.lowSpeedTime=60", "-c", "credential.helper="]);
        // A clone without the template's sample hooks and files: 19 of a shallow clone's 46
        // files and directories, and a third to a half of its CPU (the kernel allocating inodes).
        cmd.args(["-c", "init.templateDir="]);
        // Helpers that only answer `get`: git's `store` helper would write a job's credentials
        // into the worker's store on success (for every later job to that host to use), and
        // erase the worker's own entry for a host that refused it once. A job's credentials
        // are its alone: with them, the store is not asked.
        if let Some((user, password)) = &self.userinfo {
            cmd.args(["-c", r#"credential.helper=!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$APPRUNNER_GIT_USERNAME" "$APPRUNNER_GIT_PASSWORD"; }; f"#]);
            cmd.env("APPRUNNER_GIT_USERNAME", user).env("APPRUNNER_GIT_PASSWORD", password);
        } else if let Some(store) = &self.store {
            cmd.args(["-c", r#"credential.helper=!f() { test "$1" = get && git credential-store --file="$APPRUNNER_GIT_STORE" get; }; f"#]);
            cmd.env("APPRUNNER_GIT_STORE", store);
        }
    }
}

/// A git command that failed: what it said on stderr, or why it could not run.
#[derive(Debug)]
struct GitFailed(String);

async fn git(args: &[&str], cwd: Option<&Path>) -> std::result::Result<String, GitFailed> {
    git_with(&GitAuth::default(), args, cwd).await
}

async fn git_with(auth: &GitAuth, args: &[&str], cwd: Option<&Path>) -> std::result::Result<String, GitFailed> {
    let mut cmd = tokio::process::Command::new("git");
    auth.apply(&mut cmd);
    // Its own process group, so that a build dropped at its time limit ends git's helpers
    // (git-remote-http) with it, not only git.
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true").kill_on_drop(true).process_group(0);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| GitFailed(format!("cannot run git: {e}")))?;
    let mut group = crate::edge::process::ProcessGroup(child.id());
    let out = child.wait_with_output().await.map_err(|e| GitFailed(format!("cannot run git: {e}")))?;
    group.0 = None;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(GitFailed(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// A git failure is transient when the host could not be reached, and the user's otherwise:
/// git says which only in its words.
fn git_error(url: &str, what: &str, GitFailed(stderr): GitFailed) -> SourceError {
    const UNREACHABLE: &[&str] = &[
        "Could not resolve host",
        "Connection refused",
        "Connection timed out",
        "timed out",
        "Connection reset",
        "unable to access",
        "early EOF",
        "The remote end hung up",
    ];
    let detail = one_line(stderr);
    let (what, url) = (what.to_string(), url.to_string());
    if UNREACHABLE.iter().any(|t| detail.contains(t)) && !detail.contains("returned error: 404") {
        SourceError::GitUnreachable { what, url, detail }
    } else {
        SourceError::GitRefused { what, url, detail }
    }
}

/// The commit HEAD of a local git checkout is at, if it is one.
pub async fn head_commit(dir: &Path) -> Option<String> {
    head_facts(dir).await.commit
}

/// What a checkout's HEAD is: its commit, when that was made, and the branch it is on.
#[derive(Debug, Default, PartialEq, Eq)]
struct HeadFacts {
    commit: Option<String>,
    committed_at: Option<i64>,
    branch: Option<String>,
}

/// HEAD's facts from one git process (a fetch is otherwise most of its git processes).
async fn head_facts(dir: &Path) -> HeadFacts {
    // Only HEAD and local branches decorate, whatever the user's log.excludeDecoration says.
    let args = ["log", "-1", "--decorate-refs=HEAD", "--decorate-refs=refs/heads/", "--format=%H%x1f%ct%x1f%D", "HEAD"];
    git(&args, Some(dir)).await.map(|out| parse_head_facts(&out)).unwrap_or_default()
}

/// `<commit>\x1f<unix time>\x1f<decorations>`; on a branch the decorations start `HEAD -> <branch>`.
fn parse_head_facts(out: &str) -> HeadFacts {
    let mut fields = out.trim_end_matches('\n').splitn(3, '\x1f');
    let commit = fields.next().filter(|c| c.len() >= 40 && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let committed_at = fields.next().and_then(|t| t.trim().parse().ok());
    // Branch names hold no spaces, so ", " ends one; a shallow clone's commit is also "grafted".
    let branch = fields.next().and_then(|d| d.split(", ").find_map(|r| r.strip_prefix("HEAD -> "))).map(str::to_string);
    HeadFacts { commit: commit.map(str::to_string), committed_at, branch }
}

/// Fetches `location` at `revision`; `store` is a git-credential-store file for private hosts.
pub async fn fetch(location: &SourceLocation, revision: &Revision, store: Option<&Path>) -> Result<Checkout> {
    match location {
        SourceLocation::Local(path) => {
            let shown = path.display().to_string();
            let root =
                path.canonicalize().map_err(|e| SourceError::Path { path: shown.clone(), detail: e.to_string() })?;
            if !root.is_dir() {
                return Err(SourceError::NotADirectory(shown));
            }
            if !matches!(revision, Revision::WorkingTree | Revision::DefaultBranch) {
                // A revision of a local repository means that commit, not the working tree.
                let url = format!("file://{}", root.display());
                return Box::pin(fetch(&SourceLocation::Git(url), revision, store)).await;
            }
            let HeadFacts { commit, committed_at, branch } = head_facts(&root).await;
            let dirty =
                commit.is_some() && git(&["status", "--porcelain"], Some(&root)).await.is_ok_and(|s| !s.is_empty());
            Ok(Checkout { root, commit, committed_at, branch, dirty, _dir: None })
        }
        SourceLocation::Git(url) => {
            let (url, userinfo) = crate::core::shown::split_userinfo(url);
            clone(&url, revision, &GitAuth { userinfo, store: store.map(Path::to_path_buf) }).await
        }
    }
}

async fn clone(url: &str, revision: &Revision, auth: &GitAuth) -> Result<Checkout> {
    let dir = new_clone()?;
    let root = dir.dir.path().to_path_buf();
    let root_s = root.to_string_lossy().to_string();
    match revision {
        Revision::Commit(r) => {
            git(&["init", "-q", &root_s], None).await.map_err(|e| git_error(url, "cannot create a clone of", e))?;
            // Fetched by URL (no remote to add: a process fewer).
            // Servers that refuse a fetch by commit get a full fetch instead.
            if git_with(auth, &["fetch", "-q", "--depth", "1", "--", url, r], Some(&root)).await.is_err() {
                let all = "+refs/heads/*:refs/remotes/origin/*";
                git_with(auth, &["fetch", "-q", "--", url, all], Some(&root))
                    .await
                    .map_err(|e| git_error(url, "cannot fetch", e))?;
                git(&["checkout", "-q", "--detach", r], Some(&root))
                    .await
                    .map_err(|e| git_error(url, &format!("commit {r} is not in"), e))?;
            } else {
                git(&["checkout", "-q", "--detach", "FETCH_HEAD"], Some(&root))
                    .await
                    .map_err(|e| git_error(url, "cannot check out", e))?;
            }
        }
        Revision::Branch(branch) => {
            git_with(auth, &["clone", "-q", "--depth", "1", "--branch", branch, "--", url, &root_s], None)
                .await
                .map_err(|e| git_error(url, &format!("cannot clone branch {branch} of"), e))?;
        }
        Revision::DefaultBranch | Revision::WorkingTree => {
            git_with(auth, &["clone", "-q", "--depth", "1", "--", url, &root_s], None)
                .await
                .map_err(|e| git_error(url, "cannot clone", e))?;
        }
    }
    let HeadFacts { commit, committed_at, branch } = head_facts(&root).await;
    let branch = match revision {
        Revision::Branch(b) => Some(b.clone()),
        _ => branch,
    };
    Ok(Checkout { root, commit, committed_at, branch, dirty: false, _dir: Some(dir) })
}

/// Normalises a source directory (`services/api/`, `/services/api`) to `/services/api`, and
/// rejects one that climbs out of the repository.
pub fn normalize_source_dir(given: &str) -> Result<String> {
    crate::core::request::normalize_source_dir(given).map_err(|e| SourceError::SourceDir(e.0))
}

/// The source directory on disk, which must be a directory inside the repository even after
/// symlinks are followed.
pub fn confine(root: &Path, source_dir: &str) -> Result<PathBuf> {
    let rel = source_dir.trim_start_matches('/');
    let path = root.join(rel);
    let real_root = root.canonicalize().map_err(|e| SourceError::io(root.display().to_string(), e))?;
    let real = path
        .canonicalize()
        .map_err(|_| SourceError::SourceDir(format!("{source_dir} does not exist in the repository")))?;
    if !real.starts_with(&real_root) {
        return Err(SourceError::SourceDir(format!(
            "{source_dir} resolves outside the repository (through a symlink); point it at a directory inside it"
        )));
    }
    if !real.is_dir() {
        return Err(SourceError::SourceDir(format!("{source_dir} is not a directory")));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_dirs_are_normalized_and_confined() {
        assert_eq!(normalize_source_dir("services/api/").unwrap(), "/services/api");
        assert_eq!(normalize_source_dir("/").unwrap(), "/");
        assert_eq!(normalize_source_dir("").unwrap(), "/");
        assert!(normalize_source_dir("/a/../../etc").unwrap_err().to_string().contains("leaves the repository"));
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("svc")).unwrap();
        std::os::unix::fs::symlink("/etc", repo.path().join("escape")).unwrap();
        assert!(confine(repo.path(), "/svc").is_ok());
        assert!(confine(repo.path(), "/escape").unwrap_err().to_string().contains("outside the repository"));
        assert!(confine(repo.path(), "/nope").unwrap_err().to_string().contains("does not exist"));
    }

    #[test]
    fn head_facts_come_from_one_log_line() {
        let c = "7f727e34a986ff2ac3345410821ca39ac56dd398";
        let facts = |branch: Option<&str>| HeadFacts {
            commit: Some(c.into()),
            committed_at: Some(1_796_503_963),
            branch: branch.map(Into::into),
        };
        // A shallow clone of a branch, a detached checkout, a branch named with a comma.
        assert_eq!(parse_head_facts(&format!("{c}\x1f1796503963\x1fgrafted, HEAD -> main\n")), facts(Some("main")));
        assert_eq!(parse_head_facts(&format!("{c}\x1f1796503963\x1fgrafted, HEAD\n")), facts(None));
        assert_eq!(parse_head_facts(&format!("{c}\x1f1796503963\x1fHEAD -> a,b, main\n")), facts(Some("a,b")));
        assert_eq!(parse_head_facts(""), HeadFacts::default());
    }
}
