//! What one layer holds that an SBOM needs, read from its bytes: the files that say what is
//! installed, the whiteouts, and the Maven packages inside jars (nested ones too), each read
//! within a budget.

use crate::core::sbom::{self, Interest, LayerScan};
use std::io::Read;

/// What one layer (a tar, gzip-compressed or not) holds that the SBOM needs. A layer that cannot
/// be read as a tar gives what was read before the fault.
pub fn scan_layer(blob: &[u8]) -> LayerScan {
    let reader = crate::edge::layers::layer_reader(blob);
    let mut scan = LayerScan::default();
    // What the jars of one layer may unpack in all: a zip bomb costs this much, no more.
    let mut jar_budget = JAR_BUDGET;
    let mut archive = tar::Archive::new(reader);
    let Ok(entries) = archive.entries() else { return scan };
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        let Ok(path) = entry.path().map(|p| p.to_string_lossy().to_string()) else { continue };
        if scan.whiteout(&path) || entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
        let Some(interest) = sbom::interest(&path, executable) else { continue };
        let path = path.trim_start_matches("./").trim_start_matches('/').to_string();
        let size = entry.header().size().unwrap_or(u64::MAX);
        let limit =
            if matches!(interest, Interest::Jar | Interest::Executable) { sbom::MAX_BINARY } else { sbom::MAX_TEXT };
        let needs_content = !matches!(interest, Interest::Gemspec | Interest::MavenRepository);
        let mut bytes = Vec::new();
        if needs_content {
            if size > limit {
                continue;
            }
            if interest == Interest::Executable {
                // Only ELF files are opened whole.
                let mut head = [0u8; 4];
                if entry.read_exact(&mut head).is_err() || &head != b"\x7fELF" {
                    continue;
                }
                bytes.extend_from_slice(&head);
            }
            if entry.by_ref().take(limit).read_to_end(&mut bytes).is_err() {
                break;
            }
        }
        let packages = match interest {
            Interest::OsRelease => {
                scan.os = sbom::os_release(&String::from_utf8_lossy(&bytes));
                continue;
            }
            Interest::Jar => jar_packages(&bytes, 1, &mut jar_budget),
            _ => sbom::parse_found(interest, &path, &bytes),
        };
        if !packages.is_empty() {
            scan.files.insert(path, packages);
        }
    }
    scan
}

/// The bytes the jars of one layer may unpack in all.
const JAR_BUDGET: u64 = 1 << 30;

/// The Maven packages a jar (or war) records in its `META-INF/maven/**/pom.properties`, and
/// those of the jars it holds under `BOOT-INF/lib/` or `WEB-INF/lib/` (`depth` levels down),
/// unpacking at most `budget` bytes.
#[allow(clippy::case_sensitive_file_extension_comparisons)] // as Maven and Spring Boot name them
fn jar_packages(zip: &[u8], depth: u32, budget: &mut u64) -> Vec<sbom::Package> {
    let mut out = Vec::new();
    for entry in zip_entries(zip) {
        let name = entry.name.as_str();
        let nested = name.ends_with(".jar") && (name.starts_with("BOOT-INF/lib/") || name.starts_with("WEB-INF/lib/"));
        let pom = name.starts_with("META-INF/maven/") && name.ends_with("/pom.properties");
        if !(pom || (nested && depth > 0)) {
            continue;
        }
        let Some(bytes) = entry.read(zip, *budget) else { continue };
        *budget = budget.saturating_sub(bytes.len() as u64);
        if pom {
            out.extend(sbom::pom_properties(&String::from_utf8_lossy(&bytes)));
        } else {
            out.extend(jar_packages(&bytes, depth - 1, budget));
        }
        if *budget == 0 {
            break;
        }
    }
    out
}

/// One entry of a zip archive's central directory.
struct ZipEntry {
    name: String,
    method: usize,
    compressed: usize,
    local_header: usize,
}

fn u16_at(b: &[u8], o: usize) -> Option<usize> {
    b.get(o..o + 2).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
}

fn u32_at(b: &[u8], o: usize) -> Option<usize> {
    b.get(o..o + 4).and_then(|b| usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok())
}

impl ZipEntry {
    /// Its bytes (stored or deflated, at most `MAX_BINARY` and `budget`).
    fn read(&self, zip: &[u8], budget: u64) -> Option<Vec<u8>> {
        let local = self.local_header;
        if !zip.get(local..)?.starts_with(b"PK\x03\x04") {
            return None;
        }
        let data = local + 30 + u16_at(zip, local + 26)? + u16_at(zip, local + 28)?;
        let raw = zip.get(data..data + self.compressed)?;
        match self.method {
            0 => Some(raw.to_vec()),
            8 => {
                let mut out = Vec::new();
                flate2::read::DeflateDecoder::new(raw).take(sbom::MAX_BINARY.min(budget)).read_to_end(&mut out).ok()?;
                Some(out)
            }
            _ => None,
        }
    }
}

/// The entries a zip archive's central directory lists (Zip64 is not read).
fn zip_entries(zip: &[u8]) -> Vec<ZipEntry> {
    let mut out = Vec::new();
    // The end-of-central-directory record is in the last 64 KiB + 22 bytes.
    let start = zip.len().saturating_sub(65_557);
    let Some(eocd) = (start..zip.len().saturating_sub(21)).rev().find(|&i| zip[i..].starts_with(b"PK\x05\x06")) else {
        return out;
    };
    let (Some(count), Some(mut at)) = (u16_at(zip, eocd + 10), u32_at(zip, eocd + 16)) else { return out };
    for _ in 0..count {
        if !zip.get(at..).is_some_and(|b| b.starts_with(b"PK\x01\x02")) {
            break;
        }
        let fields = (
            u16_at(zip, at + 10),
            u32_at(zip, at + 20),
            u16_at(zip, at + 28),
            u16_at(zip, at + 30),
            u16_at(zip, at + 32),
            u32_at(zip, at + 42),
        );
        let (Some(method), Some(compressed), Some(name_len), Some(extra), Some(comment), Some(local_header)) = fields
        else {
            break;
        };
        let Some(name) = zip.get(at + 46..at + 46 + name_len) else { break };
        out.push(ZipEntry { name: String::from_utf8_lossy(name).to_string(), method, compressed, local_header });
        at += 46 + name_len + extra + comment;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar layer with these regular files (gzip-compressed).
    fn layer(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, bytes, mode) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(*mode);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, *bytes).unwrap();
        }
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn a_layer_says_its_packages_and_whiteouts() {
        let blob = layer(&[
            ("etc/os-release", b"ID=debian\nVERSION_ID=\"12\"\n", 0o644),
            ("app/node_modules/express/package.json", br#"{"name":"express","version":"4.18.2"}"#, 0o644),
            ("app/node_modules/.wh.left-pad", b"", 0o644),
            ("app/run.sh", b"#!/bin/sh\n", 0o755),
        ]);
        let scan = scan_layer(&blob);
        assert_eq!(scan.os, Some(("debian".into(), "12".into())));
        assert_eq!(scan.files.keys().collect::<Vec<_>>(), ["app/node_modules/express/package.json"]);
        assert_eq!(scan.deleted, ["app/node_modules/left-pad"]);
    }

    /// A Spring Boot style jar (made with Python's zipfile): its own pom.properties, and a
    /// nested jar's, stored under BOOT-INF/lib.
    #[test]
    fn a_jar_says_its_own_and_its_nested_jars_packages() {
        let jar = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sbom/boot.jar")).unwrap();
        let scan = scan_layer(&layer(&[("app/target/boot.jar", &jar, 0o644)]));
        let names: Vec<String> = scan.files.values().flatten().map(|p| format!("{}@{}", p.name, p.version)).collect();
        assert_eq!(names, ["com.example/demo@0.0.1-SNAPSHOT", "org.yaml/snakeyaml@2.0"]);
    }
}
