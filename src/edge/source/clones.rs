//! Temporary clones, each with a lock held while it lives, and the sweep of clones whose
//! process died.

use super::{Result, SourceError};
use std::path::PathBuf;

/// A temporary clone, removed when dropped, and a lock held while it lives: a clone whose lock
/// nobody holds was left by a process that died, and [`sweep_stale_clones`] removes it.
#[derive(Debug)]
pub(super) struct Clone {
    pub(super) dir: tempfile::TempDir,
    lock_path: PathBuf,
    _lock: std::fs::File,
}

impl Drop for Clone {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

const CLONE_PREFIX: &str = "apprunner-src-";

pub(super) fn new_clone() -> Result<Clone> {
    let io = |e: std::io::Error| SourceError::io("temporary directory", e);
    let dir = tempfile::Builder::new().prefix(CLONE_PREFIX).tempdir().map_err(io)?;
    let lock_path = dir.path().with_extension("lock");
    let lock = std::fs::File::create(&lock_path).map_err(io)?;
    lock.try_lock().map_err(|e| SourceError::io(format!("locking {}", lock_path.display()), e.into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
