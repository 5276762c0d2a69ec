//! This binary's GNU build id: the linker's hash of the whole program, the same for the same
//! build on every machine and another for any change of code. A service's record names the
//! builder by it, so a redeploy is recognised only by the binary that made the image.

use std::io::{Read, Seek, SeekFrom};
use std::sync::OnceLock;

/// The running binary's build id (hex), read once; None when it has none or is not a 64-bit
/// little-endian ELF file (then no redeploy is recognised before fetching).
pub fn own_build_id() -> Option<&'static str> {
    static ID: OnceLock<Option<String>> = OnceLock::new();
    ID.get_or_init(|| std::fs::File::open("/proc/self/exe").ok().and_then(|mut f| read_build_id(&mut f))).as_deref()
}

const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;
/// Program headers and note segments are small; more than this is not a binary we made.
const MAX_READ: u64 = 64 * 1024;

fn read_build_id(file: &mut (impl Read + Seek)) -> Option<String> {
    let header = read_at(file, 0, 64)?;
    // ELF magic, 64-bit, little-endian.
    if header[..4] != *b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let phoff = u64_at(&header, 0x20)?;
    let phentsize = u64::from(u16_at(&header, 0x36)?);
    let phnum = u64::from(u16_at(&header, 0x38)?);
    if phentsize < 56 || phentsize * phnum > MAX_READ {
        return None;
    }
    let table = read_at(file, phoff, phentsize * phnum)?;
    for entry in table.chunks_exact(usize::try_from(phentsize).ok()?) {
        if u32_at(entry, 0)? != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(entry, 8)?, u64_at(entry, 32)?);
        if size > MAX_READ {
            continue;
        }
        if let Some(id) = gnu_build_id(&read_at(file, offset, size)?) {
            return Some(id);
        }
    }
    None
}

/// The build id among the notes of one segment: `namesz, descsz, type, name, desc`, each of the
/// last two padded to four bytes.
fn gnu_build_id(notes: &[u8]) -> Option<String> {
    let mut at = 0usize;
    let pad = |n: usize| n.checked_add(3).map(|n| n & !3);
    while at + 12 <= notes.len() {
        let namesz = usize::try_from(u32_at(notes, at)?).ok()?;
        let descsz = usize::try_from(u32_at(notes, at + 4)?).ok()?;
        let kind = u32_at(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at.checked_add(pad(namesz)?)?;
        let next = desc_at.checked_add(pad(descsz)?)?;
        let name = notes.get(name_at..name_at + namesz)?;
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(hex::encode(desc));
        }
        at = next;
    }
    None
}

fn read_at(file: &mut (impl Read + Seek), offset: u64, len: u64) -> Option<Vec<u8>> {
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut buf = vec![0; usize::try_from(len).ok()?];
    file.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_running_binary_has_a_build_id_that_readelf_agrees_with() {
        let id = own_build_id().expect("a build id");
        assert!(id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        // readelf, where the machine has it, reads the same note.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        if let Ok(out) = std::process::Command::new("readelf").arg("-n").arg(&exe).output() {
            let text = String::from_utf8_lossy(&out.stdout);
            if let Some(line) = text.lines().find(|l| l.trim_start().starts_with("Build ID:")) {
                assert_eq!(line.trim_start().trim_start_matches("Build ID:").trim(), id);
            }
        }
    }

    #[test]
    fn anything_but_an_elf_file_has_none() {
        assert_eq!(read_build_id(&mut std::io::Cursor::new(b"#!/bin/sh\necho hi\n".to_vec())), None);
        assert_eq!(read_build_id(&mut std::io::Cursor::new(Vec::new())), None);
        // Notes cut short or of another kind.
        assert_eq!(gnu_build_id(&[4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N']), None);
        let mut other = vec![4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0];
        other.extend(b"GNU\0\xab\xcd\0\0");
        assert_eq!(gnu_build_id(&other), None);
        other[8] = 3;
        assert_eq!(gnu_build_id(&other).as_deref(), Some("abcd"));
    }
}
