//! The user's source: a local directory or a git repository at a revision, the source
//! directory confined to it, the facts the platform rules need, and the packed layer (`pack`).

pub mod pack;

pub use pack::{pack_dir, pack_file, Layer, PackLimits};

use crate::core::config::AppConfig;
use crate::core::platform::{self, SourceFacts};
use crate::core::request::{Revision, SourceLocation};
use crate::error::{one_line, Classified, ErrorClass};
use std::path::{Component, Path, PathBuf};

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
    #[error("{0}")]
    Io(String),
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
            SourceError::Io(_) => ErrorClass::Internal,
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
    pub branch: Option<String>,
    /// A local working tree with changes not committed: what is built is not `commit`.
    pub dirty: bool,
    /// Keeps a temporary clone alive as long as the checkout.
    _dir: Option<Clone>,
}

/// A temporary clone, removed when dropped, and a lock held while it lives: a clone whose lock
/// nobody holds was left by a process that died, and [`sweep_stale_clones`] removes it.
#[derive(Debug)]
struct Clone {
    dir: tempfile::TempDir,
    lock_path: PathBuf,
    _lock: std::fs::File,
}

impl Drop for Clone {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

const CLONE_PREFIX: &str = "apprunner-src-";

fn new_clone() -> Result<Clone> {
    let io = |e: std::io::Error| SourceError::Io(format!("temporary directory: {e}"));
    let dir = tempfile::Builder::new().prefix(CLONE_PREFIX).tempdir().map_err(io)?;
    let lock_path = dir.path().with_extension("lock");
    let lock = std::fs::File::create(&lock_path).map_err(io)?;
    lock.try_lock().map_err(|e| SourceError::Io(format!("locking {}: {e}", lock_path.display())))?;
    Ok(Clone { dir, lock_path, _lock: lock })
}

/// Removes the clones under the temporary directory that no living process holds (a worker
/// killed mid-build leaves its clone); returns how many. A clone younger than a few seconds
/// may be one whose lock is about to be taken, and is left.
pub fn sweep_stale_clones() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(CLONE_PREFIX) || name.ends_with(".lock") || !path.is_dir() {
            continue;
        }
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() < 5);
        let lock_path = path.with_extension("lock");
        let held = std::fs::File::open(&lock_path).is_ok_and(|f| f.try_lock().is_err());
        if young || held {
            continue;
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            let _ = std::fs::remove_file(&lock_path);
            removed += 1;
        }
    }
    removed
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
        if let Some(store) = &self.store {
            cmd.arg("-c").arg(format!("credential.helper=store --file={}", store.display()));
        }
        if let Some((user, password)) = &self.userinfo {
            cmd.args(["-c", r#"credential.helper=!f() { test "$1" = get && printf 'username=%s\npassword=%s\n' "$APPRUNNER_GIT_USERNAME" "$APPRUNNER_GIT_PASSWORD"; }; f"#]);
            cmd.env("APPRUNNER_GIT_USERNAME", user).env("APPRUNNER_GIT_PASSWORD", password);
        }
    }
}

async fn git(args: &[&str], cwd: Option<&Path>) -> std::result::Result<String, String> {
    git_with(&GitAuth::default(), args, cwd).await
}

async fn git_with(auth: &GitAuth, args: &[&str], cwd: Option<&Path>) -> std::result::Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    auth.apply(&mut cmd);
    // Its own process group, so that a build dropped at its time limit ends git's helpers
    // (git-remote-http) with it, not only git.
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true").kill_on_drop(true).process_group(0);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().map_err(|e| format!("cannot run git: {e}"))?;
    let mut group = ProcessGroup(child.id());
    let out = child.wait_with_output().await.map_err(|e| format!("cannot run git: {e}"))?;
    group.0 = None;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A git failure is transient when the host could not be reached, and the user's otherwise:
/// git says which only in its words.
fn git_error(url: &str, what: &str, stderr: String) -> SourceError {
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
    git(&["rev-parse", "HEAD"], Some(dir)).await.ok()
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
            let commit = head_commit(&root).await;
            let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"], Some(&root)).await.ok();
            let dirty =
                commit.is_some() && git(&["status", "--porcelain"], Some(&root)).await.is_ok_and(|s| !s.is_empty());
            Ok(Checkout { root, commit, branch, dirty, _dir: None })
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
            git_with(auth, &["remote", "add", "origin", url], Some(&root))
                .await
                .map_err(|e| git_error(url, "cannot use", e))?;
            // Servers that refuse a fetch by commit get a full fetch instead.
            if git_with(auth, &["fetch", "-q", "--depth", "1", "origin", r], Some(&root)).await.is_err() {
                git_with(auth, &["fetch", "-q", "origin"], Some(&root))
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
    let commit = head_commit(&root).await;
    let branch = match revision {
        Revision::Branch(b) => Some(b.clone()),
        _ => git(&["rev-parse", "--abbrev-ref", "HEAD"], Some(&root)).await.ok().filter(|b| b != "HEAD"),
    };
    Ok(Checkout { root, commit, branch, dirty: false, _dir: Some(dir) })
}

/// Kills a process group when dropped, unless it has been let go (`.0 = None`).
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let pgid = self.0.and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw);
        if let Some(pgid) = pgid {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// The most of `package.json` the worker reads.
pub const MAX_PACKAGE_JSON_BYTES: usize = 4 << 20;

/// What the platform rules need to know of the files in `dir`, the source directory.
pub fn platform_facts(dir: &Path, cfg: &AppConfig) -> Result<SourceFacts> {
    use std::os::unix::fs::PermissionsExt;
    let package_json = read_confined(dir, "package.json", MAX_PACKAGE_JSON_BYTES)?;
    let start_script_executable = match platform::start_script(cfg) {
        Some(script) => confined_file(dir, script)?.map(|(_, meta)| meta.permissions().mode() & 0o111 != 0),
        None => None,
    };
    Ok(SourceFacts {
        package_json: package_json.map(|b| String::from_utf8_lossy(&b).into_owned()),
        start_script_executable,
    })
}

/// `name` in the source directory `dir`, if there is such an entry: its real path and metadata,
/// once it is known to be a regular file inside `dir` after symlinks are resolved. Anything
/// else (a link out of the tree, a FIFO, a device, a directory) is refused, never read.
fn confined_file(dir: &Path, name: &str) -> Result<Option<(PathBuf, std::fs::Metadata)>> {
    let path = dir.join(name);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let shown = crate::core::shown::cut(name);
    let real = path.canonicalize().map_err(|_| SourceError::Refused(format!("{shown} is a link to nothing")))?;
    let real_dir = dir.canonicalize().map_err(|e| SourceError::Io(format!("{}: {e}", dir.display())))?;
    if !real.starts_with(&real_dir) {
        return Err(SourceError::Refused(format!(
            "{shown} is a link to a file outside the source directory; only files inside it are read"
        )));
    }
    let meta = std::fs::metadata(&real).map_err(|e| SourceError::Refused(format!("{shown}: {e}")))?;
    if !meta.is_file() {
        return Err(SourceError::Refused(format!("{shown} is not a regular file; it must be a plain file")));
    }
    Ok(Some((real, meta)))
}

/// Opens a file known to be regular, without following a link swapped in since the check and
/// without blocking on a FIFO swapped in.
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits().cast_signed())
        .open(path)
}

/// The bytes of `name` in the source directory `dir` (see `confined_file`), at most `limit`.
pub fn read_confined(dir: &Path, name: &str, limit: usize) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let Some((real, meta)) = confined_file(dir, name)? else { return Ok(None) };
    let shown = crate::core::shown::cut(name);
    let too_big = |n: u64| SourceError::Refused(format!("{shown} is {n} bytes; at most {limit} are read"));
    if meta.len() > limit as u64 {
        return Err(too_big(meta.len()));
    }
    let file = open_regular(&real).map_err(|e| SourceError::Refused(format!("{shown}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes).map_err(|e| SourceError::Refused(format!("{shown}: {e}")))?;
    if bytes.len() > limit {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(Some(bytes))
}

/// Normalises a source directory (`services/api/`, `/services/api`) to `/services/api`, and
/// rejects one that climbs out of the repository.
pub fn normalize_source_dir(given: &str) -> Result<String> {
    let mut parts = Vec::new();
    for c in Path::new(given.trim()).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(SourceError::SourceDir(format!(
                    "`{given}` leaves the repository; give a path from the repository root such as /services/api"
                )))
            }
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The source directory on disk, which must be a directory inside the repository even after
/// symlinks are followed.
pub fn confine(root: &Path, source_dir: &str) -> Result<PathBuf> {
    let rel = source_dir.trim_start_matches('/');
    let path = root.join(rel);
    let real_root = root.canonicalize().map_err(|e| SourceError::Io(format!("{}: {e}", root.display())))?;
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
    fn files_are_read_only_when_they_are_regular_and_inside() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("apprunner.yaml"), "version: 1.0\n").unwrap();
        assert_eq!(read_confined(d, "apprunner.yaml", 100).unwrap().unwrap(), b"version: 1.0\n");
        assert_eq!(read_confined(d, "missing.yaml", 100).unwrap(), None);
        let refused = |name: &str| read_confined(d, name, 100).unwrap_err().to_string();
        std::os::unix::fs::symlink("/etc/passwd", d.join("out")).unwrap();
        assert!(refused("out").contains("outside the source directory"));
        std::os::unix::fs::symlink("/dev/zero", d.join("zero")).unwrap();
        assert!(refused("zero").contains("outside the source directory"));
        let fifo = std::process::Command::new("mkfifo").arg(d.join("fifo")).status().unwrap();
        assert!(fifo.success());
        assert!(refused("fifo").contains("not a regular file"));
        std::fs::write(d.join("big"), vec![b'x'; 101]).unwrap();
        assert!(refused("big").contains("101 bytes; at most 100"));
        std::os::unix::fs::symlink("apprunner.yaml", d.join("inside")).unwrap();
        assert!(read_confined(d, "inside", 100).unwrap().is_some());
    }

    #[test]
    fn clones_nobody_holds_are_swept_and_held_ones_kept() {
        let live = new_clone().unwrap();
        let dead = tempfile::Builder::new().prefix(CLONE_PREFIX).tempdir().unwrap().keep();
        std::fs::write(dead.with_extension("lock"), "").unwrap();
        let old = |p: &Path| {
            assert!(std::process::Command::new("touch").args(["-d", "1 hour ago"]).arg(p).status().unwrap().success());
        };
        old(&dead);
        old(live.dir.path());
        assert!(sweep_stale_clones() >= 1);
        assert!(!dead.exists() && !dead.with_extension("lock").exists());
        assert!(live.dir.path().exists(), "a clone whose lock is held stays");
        let path = live.dir.path().to_path_buf();
        drop(live);
        assert!(!path.exists() && !path.with_extension("lock").exists());
    }
}
