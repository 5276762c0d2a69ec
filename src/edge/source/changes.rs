//! What changed under a source directory between two commits of a branch, from git: a bare
//! mirror of the repository kept in the watcher's state directory, fetched without file
//! contents (`--filter=blob:none`: commits and trees are enough to diff trees), then
//! `merge-base --is-ancestor` (a force push) and `diff-tree` limited to the directory.

use super::{git, git_error, git_with, GitAuth, SourceError};
use crate::core::digest::Digest;
use crate::core::watch::Changes;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The mirrors of a watcher, one per repository URL, each changed by one look at a time.
pub struct Mirrors {
    dir: PathBuf,
    store: Option<PathBuf>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Mirrors {
    /// Mirrors under `dir` (made if missing), fetched with the git-credentials file `store`.
    pub fn new(dir: &Path, store: Option<PathBuf>) -> Self {
        Self { dir: dir.to_path_buf(), store, locks: Mutex::default() }
    }

    /// What changed under `source_dir` from `from` to `head` on `branch` (None: the default
    /// branch) of the repository at `url`.
    pub async fn changes(
        &self,
        url: &str,
        branch: Option<&str>,
        from: &str,
        head: &str,
        source_dir: &str,
    ) -> Result<Changes, SourceError> {
        let lock =
            self.locks.lock().unwrap_or_else(PoisonError::into_inner).entry(url.to_string()).or_default().clone();
        let _turn = lock.lock().await;
        let mirror = self.mirror(url).await?;
        let auth = GitAuth { userinfo: None, store: self.store.clone() };
        let wanted = branch.map_or_else(|| "HEAD".to_string(), |b| format!("refs/heads/{b}"));
        // The branch's history, every commit and tree of it (no file's contents).
        let refspec = format!("+{wanted}:refs/watched/head");
        let fetch = ["fetch", "-q", "--no-tags", "--filter=blob:none", "--", url, refspec.as_str()];
        git_with(&auth, &fetch, Some(&mirror)).await.map_err(|e| git_error(url, "cannot fetch", e))?;
        if git(&["cat-file", "-e", &format!("{head}^{{commit}}")], Some(&mirror)).await.is_err() {
            // The branch moved on past `head` already, or back: the commit itself, then.
            let by_commit = ["fetch", "-q", "--no-tags", "--filter=blob:none", "--", url, head];
            git_with(&auth, &by_commit, Some(&mirror))
                .await
                .map_err(|e| git_error(url, &format!("cannot fetch {head} of"), e))?;
        }
        let known = git(&["cat-file", "-e", &format!("{from}^{{commit}}")], Some(&mirror)).await.is_ok();
        if !known || git(&["merge-base", "--is-ancestor", from, head], Some(&mirror)).await.is_err() {
            return Ok(Changes::Rewritten);
        }
        let dir = source_dir.trim_matches('/');
        let diff = ["diff-tree", "-r", "--name-only", "--no-renames", from, head, "--", dir];
        let paths = git(&diff, Some(&mirror)).await.map_err(|e| git_error(url, "cannot compare commits of", e))?;
        let n = paths.lines().filter(|l| !l.is_empty()).count();
        Ok(if n == 0 { Changes::NoneUnder } else { Changes::Under(n) })
    }

    /// The bare mirror of `url`, made when missing; named by the URL's digest, so no URL text
    /// becomes a path.
    async fn mirror(&self, url: &str) -> Result<PathBuf, SourceError> {
        let name = format!("{}.git", &Digest::of(url.as_bytes()).hex()[..24]);
        let path = self.dir.join(name);
        if !path.join("HEAD").is_file() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| SourceError::io(format!("the watcher's state directory {}", self.dir.display()), e))?;
            let shown = path.to_string_lossy().to_string();
            git(&["init", "-q", "--bare", &shown], None)
                .await
                .map_err(|e| git_error(url, "cannot make a mirror of", e))?;
        }
        Ok(path)
    }
}
