//! The files of a layer blob, as `verify` compares them: each path's kind, mode, size, content
//! digest and time. Bounded: at most `MAX_ENTRIES` entries are listed.

use crate::core::digest::Digest;
use crate::core::verify::FileFacts;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;

const MAX_ENTRIES: usize = 200_000;

/// The tar stream of a layer blob: gunzipped when it is gzip (by its magic bytes), as it is
/// otherwise.
pub fn layer_reader(blob: &[u8]) -> Box<dyn Read + '_> {
    if blob.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(blob))
    } else {
        Box::new(blob)
    }
}

/// The files of `blob` (a tar, gzip-compressed or not), by path without a leading `/`.
pub fn layer_files(blob: &[u8]) -> BTreeMap<String, FileFacts> {
    let reader = layer_reader(blob);
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(reader);
    let Ok(entries) = archive.entries() else { return files };
    for entry in entries.take(MAX_ENTRIES) {
        let Ok(mut entry) = entry else { break };
        let Ok(path) =
            entry.path().map(|p| p.to_string_lossy().trim_start_matches("./").trim_end_matches('/').to_string())
        else {
            continue;
        };
        let header = entry.header();
        let link = || entry.link_name().ok().flatten().map(|l| l.to_string_lossy().to_string()).unwrap_or_default();
        let kind = match header.entry_type() {
            tar::EntryType::Regular => "file".to_string(),
            tar::EntryType::Directory => "dir".to_string(),
            tar::EntryType::Symlink => format!("symlink -> {}", link()),
            tar::EntryType::Link => format!("hardlink -> {}", link()),
            _ => "other".to_string(),
        };
        let (mode, size, mtime) = (header.mode().unwrap_or(0), header.size().unwrap_or(0), header.mtime().unwrap_or(0));
        let digest = if kind == "file" {
            let mut hasher = Sha256::new();
            if std::io::copy(&mut entry, &mut hasher).is_err() {
                return files;
            }
            Some(Digest::from_sha256(hasher.finalize().into()))
        } else {
            None
        };
        files.insert(path, FileFacts { kind, mode, size, digest, mtime });
    }
    files
}
