//! The source directory packed as one deterministic tar+gzip layer: sorted, fixed timestamps,
//! so the same content always gives the same digest.

use super::SourceError;
use crate::core::digest::sha256_digest;
use flate2::{write::GzEncoder, Compression};
use sha2::{Digest, Sha256};
use std::io::Write;
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
    pub digest: String,
    /// sha256 of the uncompressed tar (the image config's `diff_id`).
    pub diff_id: String,
    pub files: usize,
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

/// Packs the tree under `dir` (without `.git`) in sorted order with fixed timestamps; modes,
/// ownership, symlinks and executable bits are kept.
pub fn pack_dir(dir: &Path) -> Result<Layer, SourceError> {
    let io = |e: std::io::Error| SourceError::Io(format!("packing {}: {e}", dir.display()));
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
    Ok(Layer { digest: sha256_digest(&gzip), gzip, diff_id, files })
}

/// A layer holding one file at `/name`.
pub fn pack_file(name: &str, contents: &[u8], mode: u32) -> Result<Layer, SourceError> {
    let io = |e: std::io::Error| SourceError::Io(format!("packing {name}: {e}"));
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
