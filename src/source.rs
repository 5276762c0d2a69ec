//! The user's source: a local directory or a git repository at a branch or commit, the source
//! directory confined to it, and packed as one deterministic tar+gzip layer.

use crate::error::BuildError;
use flate2::{write::GzEncoder, Compression};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Files in the packed layer all carry this modification time (2000-01-01T00:00:00Z): the same
/// content gives the same digest whenever and wherever it was checked out. It is after 1980,
/// which zip-based tools (Python wheels) require.
pub const SOURCE_MTIME: u64 = 946_684_800;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceLocation {
    Local(PathBuf),
    Git(String),
}

impl SourceLocation {
    pub fn parse(s: &str) -> Self {
        let is_git = s.starts_with("file://")
            || s.starts_with("http://")
            || s.starts_with("https://")
            || s.starts_with("ssh://")
            || s.starts_with("git://")
            || (s.contains('@') && s.contains(':') && !Path::new(s).exists());
        if is_git {
            SourceLocation::Git(s.to_string())
        } else {
            SourceLocation::Local(PathBuf::from(s))
        }
    }
}

impl SourceLocation {
    /// A short name for the source: the directory's or the repository's last path component.
    pub fn name(&self) -> Option<String> {
        match self {
            SourceLocation::Local(p) => p.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string())),
            SourceLocation::Git(u) => u.trim_end_matches('/').trim_end_matches(".git").rsplit(['/', ':']).next().filter(|s| !s.is_empty()).map(str::to_string),
        }
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
    _dir: Option<tempfile::TempDir>,
}

async fn git(args: &[&str], cwd: Option<&Path>) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0").env("GIT_ASKPASS", "true").kill_on_drop(true);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    let out = cmd.output().await.map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A git failure is transient when the host could not be reached, and the user's otherwise.
fn git_error(url: &str, what: &str, stderr: String) -> BuildError {
    let transient = [
        "Could not resolve host",
        "Connection refused",
        "Connection timed out",
        "timed out",
        "Connection reset",
        "unable to access",
        "early EOF",
        "The remote end hung up",
    ];
    let msg = format!("{what} {url}: {}", crate::error::one_line(stderr));
    if transient.iter().any(|t| msg.contains(t)) && !msg.contains("returned error: 404") {
        BuildError::transient(msg)
    } else {
        BuildError::user(msg)
    }
}

/// A hex string of 7 to 40 digits is taken as a commit, anything else as a branch or tag.
pub fn is_commit(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// Fetches `location` at `reference` (a branch, tag or commit; None: the default branch / as is).
pub async fn fetch(location: &SourceLocation, reference: Option<&str>) -> Result<Checkout, BuildError> {
    match location {
        SourceLocation::Local(path) => {
            let root = path.canonicalize().map_err(|e| BuildError::user(format!("source path {}: {e}", path.display())))?;
            if !root.is_dir() {
                return Err(BuildError::user(format!("source path {} is not a directory", path.display())));
            }
            if let Some(r) = reference {
                // A ref on a local repository means that commit, not the working tree.
                let url = format!("file://{}", root.display());
                return Box::pin(fetch(&SourceLocation::Git(url), Some(r))).await;
            }
            let commit = git(&["rev-parse", "HEAD"], Some(&root)).await.ok();
            let branch = git(&["rev-parse", "--abbrev-ref", "HEAD"], Some(&root)).await.ok();
            let dirty = commit.is_some() && git(&["status", "--porcelain"], Some(&root)).await.is_ok_and(|s| !s.is_empty());
            Ok(Checkout { root, commit, branch, dirty, _dir: None })
        }
        SourceLocation::Git(url) => {
            let dir = tempfile::Builder::new().prefix("apprunner-src-").tempdir().map_err(|e| BuildError::internal(format!("temporary directory: {e}")))?;
            let root = dir.path().to_path_buf();
            let root_s = root.to_string_lossy().to_string();
            match reference {
                Some(r) if is_commit(r) => {
                    git(&["init", "-q", &root_s], None).await.map_err(|e| git_error(url, "cannot create a clone of", e))?;
                    git(&["remote", "add", "origin", url], Some(&root)).await.map_err(|e| git_error(url, "cannot use", e))?;
                    // Servers that refuse a fetch by commit get a full fetch instead.
                    if git(&["fetch", "-q", "--depth", "1", "origin", r], Some(&root)).await.is_err() {
                        git(&["fetch", "-q", "origin"], Some(&root)).await.map_err(|e| git_error(url, "cannot fetch", e))?;
                        git(&["checkout", "-q", "--detach", r], Some(&root)).await.map_err(|e| git_error(url, &format!("commit {r} is not in"), e))?;
                    } else {
                        git(&["checkout", "-q", "--detach", "FETCH_HEAD"], Some(&root)).await.map_err(|e| git_error(url, "cannot check out", e))?;
                    }
                }
                Some(branch) => {
                    git(&["clone", "-q", "--depth", "1", "--branch", branch, "--", url, &root_s], None)
                        .await
                        .map_err(|e| git_error(url, &format!("cannot clone branch {branch} of"), e))?;
                }
                None => {
                    git(&["clone", "-q", "--depth", "1", "--", url, &root_s], None).await.map_err(|e| git_error(url, "cannot clone", e))?;
                }
            }
            let commit = git(&["rev-parse", "HEAD"], Some(&root)).await.ok();
            let branch = match reference {
                Some(r) if !is_commit(r) => Some(r.to_string()),
                _ => git(&["rev-parse", "--abbrev-ref", "HEAD"], Some(&root)).await.ok().filter(|b| b != "HEAD"),
            };
            Ok(Checkout { root, commit, branch, dirty: false, _dir: Some(dir) })
        }
    }
}

/// Normalises a source directory (`services/api/`, `/services/api`) to `/services/api`, and
/// rejects one that climbs out of the repository.
pub fn normalize_source_dir(given: &str) -> Result<String, BuildError> {
    let mut parts = Vec::new();
    for c in Path::new(given.trim()).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().to_string()),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(BuildError::user(format!(
                    "source directory `{given}` leaves the repository; give a path from the repository root such as /services/api"
                )))
            }
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The source directory on disk, which must be a directory inside the repository even after
/// symlinks are followed.
pub fn confine(root: &Path, source_dir: &str) -> Result<PathBuf, BuildError> {
    let rel = source_dir.trim_start_matches('/');
    let path = root.join(rel);
    let real_root = root.canonicalize().map_err(|e| BuildError::internal(format!("{}: {e}", root.display())))?;
    let real = path.canonicalize().map_err(|_| BuildError::user(format!("source directory {source_dir} does not exist in the repository")))?;
    if !real.starts_with(&real_root) {
        return Err(BuildError::user(format!(
            "source directory {source_dir} resolves outside the repository (through a symlink); point it at a directory inside it"
        )));
    }
    if !real.is_dir() {
        return Err(BuildError::user(format!("source directory {source_dir} is not a directory")));
    }
    Ok(real)
}

/// One gzip'd tar layer, and the digests an image needs of it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub gzip: Vec<u8>,
    /// sha256 of the gzip bytes (the blob digest).
    pub digest: String,
    /// sha256 of the uncompressed tar (the image config's diff_id).
    pub diff_id: String,
    pub files: usize,
}

/// A tar stream that hashes what it writes, so the diff_id costs no second pass.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Packs the tree under `dir` (without `.git`) in sorted order with fixed timestamps; modes,
/// ownership, symlinks and executable bits are kept.
pub fn pack_dir(dir: &Path) -> Result<Layer, BuildError> {
    let io = |e: std::io::Error| BuildError::internal(format!("packing {}: {e}", dir.display()));
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name().min_depth(1) {
        let entry = entry.map_err(|e| BuildError::user(format!("cannot read the source directory: {e}")))?;
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays under dir").to_path_buf();
        if rel.components().any(|c| c.as_os_str() == ".git") {
            continue;
        }
        entries.push((rel, entry));
    }
    let mut tar = new_layer_writer();
    tar.follow_symlinks(false);
    let mut files = 0;
    for (rel, entry) in &entries {
        let meta = entry.path().symlink_metadata().map_err(io)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_mtime(SOURCE_MTIME);
        let ft = meta.file_type();
        if ft.is_dir() {
            tar.append_data(&mut h, rel, std::io::empty()).map_err(io)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(io)?;
            h.set_size(0);
            tar.append_link(&mut h, rel, &target).map_err(io)?;
        } else if ft.is_file() {
            let f = std::fs::File::open(entry.path()).map_err(io)?;
            tar.append_data(&mut h, rel, f).map_err(io)?;
            files += 1;
        }
        // Sockets, fifos and devices have no place in a source tree; they are left out.
    }
    finish_layer(tar, files).map_err(io)
}

fn new_layer_writer() -> tar::Builder<HashingWriter<GzEncoder<Vec<u8>>>> {
    tar::Builder::new(HashingWriter { inner: GzEncoder::new(Vec::new(), Compression::new(6)), hash: Sha256::new() })
}

fn finish_layer(tar: tar::Builder<HashingWriter<GzEncoder<Vec<u8>>>>, files: usize) -> std::io::Result<Layer> {
    let hw = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(hw.hash.finalize()));
    let gzip = hw.inner.finish()?;
    Ok(Layer { digest: crate::registry::sha256_digest(&gzip), gzip, diff_id, files })
}

/// A layer holding one file at `/name`.
pub fn pack_file(name: &str, contents: &[u8], mode: u32) -> Result<Layer, BuildError> {
    let io = |e: std::io::Error| BuildError::internal(format!("packing {name}: {e}"));
    let mut tar = new_layer_writer();
    let mut h = tar::Header::new_gnu();
    h.set_size(contents.len() as u64);
    h.set_mode(mode);
    h.set_mtime(SOURCE_MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, name, contents).map_err(io)?;
    finish_layer(tar, 1).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_dirs_are_normalized_and_confined() {
        assert_eq!(normalize_source_dir("services/api/").unwrap(), "/services/api");
        assert_eq!(normalize_source_dir("/").unwrap(), "/");
        assert_eq!(normalize_source_dir("").unwrap(), "/");
        assert!(normalize_source_dir("/a/../../etc").unwrap_err().message.contains("leaves the repository"));
        let repo = tempfile::tempdir().unwrap();
        std::fs::create_dir(repo.path().join("svc")).unwrap();
        std::os::unix::fs::symlink("/etc", repo.path().join("escape")).unwrap();
        assert!(confine(repo.path(), "/svc").is_ok());
        assert!(confine(repo.path(), "/escape").unwrap_err().message.contains("outside the repository"));
        assert!(confine(repo.path(), "/nope").unwrap_err().message.contains("does not exist"));
    }

    #[test]
    fn packing_is_deterministic_and_skips_git() {
        let make = || {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join("b.txt"), "b").unwrap();
            std::fs::write(d.path().join("a.txt"), "a").unwrap();
            std::fs::create_dir(d.path().join(".git")).unwrap();
            std::fs::write(d.path().join(".git/HEAD"), "x").unwrap();
            d
        };
        let (one, two) = (make(), make());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        std::fs::write(two.path().join("a.txt"), "a").unwrap(); // newer mtime, same content
        let (l1, l2) = (pack_dir(one.path()).unwrap(), pack_dir(two.path()).unwrap());
        assert_eq!(l1.digest, l2.digest);
        assert_eq!(l1.files, 2);
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(l1.gzip.as_slice()));
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().to_string());
        }
        assert_eq!(names, ["a.txt", "b.txt"]);
    }
}
