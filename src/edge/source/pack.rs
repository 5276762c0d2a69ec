//! The source directory packed as one deterministic tar+gzip layer: sorted, fixed timestamps,
//! so the same content always gives the same digest.

use super::SourceError;
use crate::core::digest::Digest;
use flate2::{write::GzEncoder, Compression};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::Path;

/// Files in the packed layer all carry this modification time (2000-01-01T00:00:00Z): the same
/// content gives the same digest whenever and wherever it was checked out. It is after 1980,
/// which zip-based tools (Python wheels) require.
pub const SOURCE_MTIME: u64 = 946_684_800;

/// One gzip'd tar layer, and the digests an image needs of it.
#[derive(Debug, Clone)]
pub struct Layer {
    pub gzip: Vec<u8>,
    /// sha256 of the gzip bytes (the blob digest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the image config's `diff_id`).
    pub diff_id: String,
    pub files: usize,
    /// Files whose setuid or setgid bit was dropped.
    pub special_bits_dropped: usize,
}

/// How much of a source directory is packed: larger files or trees are refused, not packed
/// (the layer is built in memory, and a sparse file would become a dense one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackLimits {
    /// Bytes of one file.
    pub file: u64,
    /// Bytes of all files together.
    pub total: u64,
}

impl Default for PackLimits {
    fn default() -> Self {
        Self { file: 256 << 20, total: 512 << 20 }
    }
}

/// A tar stream that hashes what it writes, so the `diff_id` costs no second pass.
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

/// Packs the tree under `dir` (without `.git`) in sorted order with fixed timestamps. Modes,
/// symlinks and executable bits are kept; every entry is owned by root, setuid and setgid
/// bits are dropped, and files over `limits` are refused.
pub fn pack_dir(dir: &Path, limits: PackLimits) -> Result<Layer, SourceError> {
    let io = |e: std::io::Error| SourceError::io(format!("packing {}", dir.display()), e);
    let mut entries = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name().min_depth(1) {
        let entry = entry.map_err(|e| SourceError::Unreadable(e.to_string()))?;
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays under dir").to_path_buf();
        if rel.components().any(|c| c.as_os_str() == ".git") {
            continue;
        }
        entries.push((rel, entry));
    }
    let mut tar = new_layer_writer();
    tar.follow_symlinks(false);
    let (mut files, mut total, mut special_bits_dropped) = (0, 0u64, 0);
    for (rel, entry) in &entries {
        let meta = entry.path().symlink_metadata().map_err(io)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        h.set_mtime(SOURCE_MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").map_err(io)?;
        h.set_groupname("root").map_err(io)?;
        let mode = h.mode().map_err(io)?;
        if mode & 0o6000 != 0 {
            special_bits_dropped += 1;
        }
        h.set_mode(mode & 0o1777);
        let ft = meta.file_type();
        if ft.is_dir() {
            tar.append_data(&mut h, rel, std::io::empty()).map_err(io)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(io)?;
            h.set_size(0);
            tar.append_link(&mut h, rel, &target).map_err(io)?;
        } else if ft.is_file() {
            let shown = || crate::core::shown::cut(&rel.to_string_lossy());
            if meta.len() > limits.file {
                return Err(SourceError::Refused(format!(
                    "{} is {} bytes; files of at most {} bytes are packed (APPRUNNER_MAX_FILE_SIZE)",
                    shown(),
                    meta.len(),
                    limits.file
                )));
            }
            total += meta.len();
            if total > limits.total {
                return Err(SourceError::Refused(format!(
                    "the source directory holds more than {} bytes (APPRUNNER_MAX_SOURCE_SIZE); leave build outputs and data out of the repository",
                    limits.total
                )));
            }
            let f = super::files::open_regular(entry.path()).map_err(io)?;
            tar.append_data(&mut h, rel, f.take(meta.len())).map_err(io)?;
            files += 1;
        }
        // Sockets, fifos and devices have no place in a source tree; they are left out.
    }
    let mut layer = finish_layer(tar, files).map_err(io)?;
    layer.special_bits_dropped = special_bits_dropped;
    Ok(layer)
}

fn new_layer_writer() -> tar::Builder<HashingWriter<GzEncoder<Vec<u8>>>> {
    tar::Builder::new(HashingWriter { inner: GzEncoder::new(Vec::new(), Compression::new(6)), hash: Sha256::new() })
}

fn finish_layer(tar: tar::Builder<HashingWriter<GzEncoder<Vec<u8>>>>, files: usize) -> std::io::Result<Layer> {
    let hw = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(hw.hash.finalize()));
    let gzip = hw.inner.finish()?;
    Ok(Layer { digest: Digest::of(&gzip), gzip, diff_id, files, special_bits_dropped: 0 })
}

/// A layer holding one file at `/name`.
/// The contents of the one file a layer made by [`pack_file`] holds, if it is one and holds at
/// most `max` bytes (the layer is read back from a registry: bounded, never trusted).
pub fn unpack_file(gzip: &[u8], max: u64) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gzip));
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > max {
        return None;
    }
    let mut out = Vec::new();
    entry.by_ref().take(max).read_to_end(&mut out).ok()?;
    Some(out)
}

pub fn pack_file(name: &str, contents: &[u8], mode: u32) -> Result<Layer, SourceError> {
    let io = |e: std::io::Error| SourceError::io(format!("packing {name}"), e);
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
        let (l1, l2) = (
            pack_dir(one.path(), PackLimits::default()).unwrap(),
            pack_dir(two.path(), PackLimits::default()).unwrap(),
        );
        assert_eq!(l1.digest, l2.digest);
        assert_eq!(l1.files, 2);
        let mut names = Vec::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(l1.gzip.as_slice()));
        for e in ar.entries().unwrap() {
            names.push(e.unwrap().path().unwrap().to_string_lossy().to_string());
        }
        assert_eq!(names, ["a.txt", "b.txt"]);
    }

    #[test]
    fn owners_and_special_bits_are_dropped_and_big_files_refused() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(d.path().join("run.sh"), std::fs::Permissions::from_mode(0o6755)).unwrap();
        let layer = pack_dir(d.path(), PackLimits::default()).unwrap();
        assert_eq!(layer.special_bits_dropped, 1);
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(layer.gzip.as_slice()));
        let entry = ar.entries().unwrap().next().unwrap().unwrap();
        let h = entry.header();
        assert_eq!((h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap()), (0o755, 0, 0));
        assert_eq!(h.username().unwrap(), Some("root"));

        // A 1 GB sparse file costs nothing on disk and is refused before it is read.
        let sparse = std::fs::File::create(d.path().join("sparse.img")).unwrap();
        sparse.set_len(1 << 30).unwrap();
        let started = std::time::Instant::now();
        let e = pack_dir(d.path(), PackLimits::default()).unwrap_err().to_string();
        assert!(e.contains("sparse.img is 1073741824 bytes; files of at most 268435456 bytes are packed"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let e = pack_dir(d.path(), PackLimits { file: 2 << 30, total: 1 << 20 }).unwrap_err().to_string();
        assert!(e.contains("holds more than 1048576 bytes"), "{e}");
    }
}
