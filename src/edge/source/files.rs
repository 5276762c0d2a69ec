//! Files of the source directory the worker itself reads: only regular files inside it,
//! bounded, never through a link out of the tree or a FIFO.

use super::{Result, SourceError};
use crate::core::config::AppConfig;
use crate::core::platform::{self, SourceFacts};
use std::path::{Path, PathBuf};

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

/// Which of `candidates` (paths relative to the source directory `dir`) are plain regular files
/// in it, not links: the dependency manifests a warm-up may copy. Anything odd is left out, for
/// the packing of the source to judge.
pub fn manifest_files(dir: &Path, candidates: impl IntoIterator<Item = String>) -> std::collections::BTreeSet<String> {
    candidates
        .into_iter()
        .filter(|name| std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file()))
        .filter(|name| matches!(confined_file(dir, name), Ok(Some(_))))
        .collect()
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
    let real_dir = dir.canonicalize().map_err(|e| SourceError::io(dir.display().to_string(), e))?;
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
pub(super) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
