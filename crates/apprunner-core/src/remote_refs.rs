//! Git's protocol v2 `ls-refs` over smart HTTP, the pure part: the request's bytes and the
//! reading of the two answers (the capability advertisement, the refs). A redeploy asks the
//! repository's host which commit a branch names; doing it over the worker's own pooled HTTPS
//! client instead of `git ls-remote` spares a `git` and a `git-remote-https` process and a TLS
//! handshake with the whole CA bundle parsed again (65 ms of CPU per call, measured). Anything
//! not exactly as expected is `Unreadable`, and the caller asks git instead.
//!
//! Framing (gitprotocol-common, gitprotocol-v2): a pkt-line is four hex
//! digits giving its length including those four, then the payload; `0000` is a flush, `0001`
//! a delimiter, `0002` a response end.

/// The most a refs answer may hold; a branch's prefix matches few refs, and git takes over
/// beyond this.
pub const MAX_ANSWER: usize = 1 << 20;

/// Why an answer could not be used (the caller asks git instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

/// The content type of an upload-pack request and of its result.
pub const REQUEST_TYPE: &str = "application/x-git-upload-pack-request";
pub const RESULT_TYPE: &str = "application/x-git-upload-pack-result";
pub const ADVERTISEMENT_TYPE: &str = "application/x-git-upload-pack-advertisement";

fn pkt(out: &mut Vec<u8>, payload: &str) {
    // Payloads here are short, well under the 65516-byte limit.
    out.extend_from_slice(format!("{:04x}", payload.len() + 4).as_bytes());
    out.extend_from_slice(payload.as_bytes());
}

/// The `ls-refs` request body for refs named `wanted` (`HEAD` or `refs/heads/<branch>`):
/// symbolic refs resolved, nothing peeled, only names starting with `wanted`. A name git would
/// not take (a space or control character, over 1,000 bytes) is left to git to refuse.
pub fn ls_refs_request(wanted: &str, agent: &str) -> Result<Vec<u8>, Unreadable> {
    if wanted.len() > 1000 || wanted.chars().any(|c| c == ' ' || c.is_control()) {
        return Err(Unreadable("a ref name git would not take"));
    }
    let mut body = Vec::new();
    pkt(&mut body, "command=ls-refs\n");
    pkt(&mut body, &format!("agent={agent}\n"));
    body.extend_from_slice(b"0001");
    pkt(&mut body, "symrefs\n");
    pkt(&mut body, &format!("ref-prefix {wanted}\n"));
    body.extend_from_slice(b"0000");
    Ok(body)
}

/// One framed item of an answer.
#[derive(Debug, PartialEq, Eq)]
enum Pkt<'a> {
    Data(&'a [u8]),
    Flush,
    Delim,
    End,
}

/// Splits `bytes` into pkt-lines, in one pass; fails on a bad length or a cut-off line.
fn pkts(mut bytes: &[u8]) -> Result<Vec<Pkt<'_>>, Unreadable> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let head = bytes.get(..4).ok_or(Unreadable("a pkt-line's length is cut off"))?;
        let len = std::str::from_utf8(head)
            .ok()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or(Unreadable("a pkt-line's length is not four hex digits"))?;
        match len {
            0 => out.push(Pkt::Flush),
            1 => out.push(Pkt::Delim),
            2 => out.push(Pkt::End),
            3 => return Err(Unreadable("a pkt-line of length 3")),
            n => out.push(Pkt::Data(bytes.get(4..n).ok_or(Unreadable("a pkt-line is cut off"))?)),
        }
        bytes = &bytes[len.max(4)..];
    }
    Ok(out)
}

fn text(line: &[u8]) -> Result<&str, Unreadable> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    std::str::from_utf8(line).map_err(|_| Unreadable("a line is not UTF-8"))
}

/// Whether a smart-HTTP advertisement (`GET info/refs?service=git-upload-pack` with
/// `Git-Protocol: version=2`) is protocol v2 offering `ls-refs` with SHA-1 objects. A server
/// speaking v0 or v1 answers with refs instead, and is asked through git.
pub fn offers_ls_refs(advertisement: &[u8]) -> Result<(), Unreadable> {
    let lines = pkts(advertisement)?;
    let mut lines = lines.iter().peekable();
    // The service line some servers send first, then its flush.
    if let Some(Pkt::Data(first)) = lines.peek() {
        if text(first)?.starts_with("# service=") {
            lines.next();
            if lines.next() != Some(&Pkt::Flush) {
                return Err(Unreadable("no flush after the service line"));
            }
        }
    }
    match lines.next() {
        Some(Pkt::Data(v)) if text(v)? == "version 2" => {}
        _ => return Err(Unreadable("the server does not speak protocol v2")),
    }
    let (mut ls_refs, mut sha1) = (false, true);
    for line in lines {
        match line {
            Pkt::Data(capability) => {
                let capability = text(capability)?;
                let (name, value) = capability.split_once('=').unwrap_or((capability, ""));
                match name {
                    "ls-refs" => ls_refs = true,
                    // A repository of SHA-256 objects: its commits are not the 40-digit kind a
                    // record keeps.
                    "object-format" => sha1 = value == "sha1",
                    _ => {}
                }
            }
            Pkt::Flush => break,
            Pkt::Delim | Pkt::End => return Err(Unreadable("a delimiter in the capabilities")),
        }
    }
    match (ls_refs, sha1) {
        (true, true) => Ok(()),
        (false, _) => Err(Unreadable("the server does not offer ls-refs")),
        (true, false) => Err(Unreadable("the repository's objects are not SHA-1")),
    }
}

/// The commit the ref named exactly `wanted` points at in an `ls-refs` answer: None when the
/// answer is whole and has no such ref.
pub fn commit_of(answer: &[u8], wanted: &str) -> Result<Option<String>, Unreadable> {
    if answer.len() > MAX_ANSWER {
        return Err(Unreadable("the answer is too long"));
    }
    let lines = pkts(answer)?;
    let Some((Pkt::Flush, refs)) = lines.split_last() else {
        return Err(Unreadable("the answer does not end with a flush"));
    };
    let mut found = None;
    for line in refs {
        let Pkt::Data(line) = line else { return Err(Unreadable("a delimiter among the refs")) };
        let line = text(line)?;
        if line.starts_with("ERR ") {
            return Err(Unreadable("the server answered with an error"));
        }
        // `<oid> <name>[ <attribute>]...`
        let mut fields = line.split(' ');
        let (Some(oid), Some(name)) = (fields.next(), fields.next()) else {
            return Err(Unreadable("a ref line without a name"));
        };
        // `unborn` in place of an object id: a HEAD naming a branch with no commit yet.
        if oid == "unborn" {
            continue;
        }
        if !crate::redeploy::is_full_commit(oid) {
            return Err(Unreadable("a ref line's object id is not 40 hex digits"));
        }
        if name == wanted && found.is_none() {
            found = Some(oid.to_ascii_lowercase());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for l in lines {
            match *l {
                "0000" | "0001" | "0002" => out.extend_from_slice(l.as_bytes()),
                l => pkt(&mut out, l),
            }
        }
        out
    }

    const A: &str = "7d21d26c93f4e63126869d6fe67315142da6c1e6";
    const B: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn the_request_is_what_git_sends() {
        let body = ls_refs_request("refs/heads/main", "apprunner-build/1").unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "0014command=ls-refs\n001cagent=apprunner-build/1\n0001000csymrefs\n001fref-prefix refs/heads/main\n0000"
        );
        for bad in ["refs/heads/a b", "refs/heads/a\n0000command=fetch", &"x".repeat(70_000)] {
            assert!(ls_refs_request(bad, "a").is_err(), "{bad:.40}");
        }
    }

    #[test]
    fn a_v2_advertisement_with_ls_refs_is_taken() {
        let http_backend = framed(&[
            "# service=git-upload-pack\n",
            "0000",
            "version 2\n",
            "agent=git/2.47.3\n",
            "ls-refs=unborn\n",
            "fetch=shallow wait-for-done\n",
            "server-option\n",
            "object-format=sha1\n",
            "0000",
        ]);
        assert_eq!(offers_ls_refs(&http_backend), Ok(()));
        assert_eq!(offers_ls_refs(&framed(&["version 2\n", "ls-refs\n", "0000"])), Ok(()));
    }

    #[test]
    fn anything_else_is_asked_through_git() {
        let v0 = framed(&["# service=git-upload-pack\n", "0000", &format!("{A} HEAD\0multi_ack\n"), "0000"]);
        assert!(offers_ls_refs(&v0).is_err());
        assert!(offers_ls_refs(&framed(&["version 2\n", "fetch\n", "0000"])).is_err());
        let sha256 = framed(&["version 2\n", "ls-refs\n", "object-format=sha256\n", "0000"]);
        assert!(offers_ls_refs(&sha256).is_err());
        assert!(offers_ls_refs(b"<html>login</html>").is_err());
        assert!(offers_ls_refs(b"").is_err());
    }

    #[test]
    fn the_wanted_ref_is_found_by_its_whole_name() {
        let answer = framed(&[
            &format!("{B} refs/heads/main-old\n"),
            &format!("{A} refs/heads/main\n"),
            &format!("{B} HEAD symref-target:refs/heads/main\n"),
            "0000",
        ]);
        assert_eq!(commit_of(&answer, "refs/heads/main"), Ok(Some(A.to_string())));
        assert_eq!(commit_of(&answer, "HEAD"), Ok(Some(B.to_string())));
        assert_eq!(commit_of(&answer, "refs/heads/mai"), Ok(None));
        assert_eq!(commit_of(&framed(&["0000"]), "HEAD"), Ok(None), "an empty repository has no HEAD commit");
        let unborn = framed(&["unborn HEAD symref-target:refs/heads/main\n", "0000"]);
        assert_eq!(commit_of(&unborn, "HEAD"), Ok(None));
    }

    #[test]
    fn a_bad_answer_is_unreadable_never_a_commit() {
        let cases: Vec<Vec<u8>> = vec![
            framed(&[&format!("{A} refs/heads/main\n")]),
            format!("0032{A} refs/heads/main").into_bytes(),
            b"zzzz".to_vec(),
            b"0003".to_vec(),
            b"00".to_vec(),
            framed(&["ERR access denied\n", "0000"]),
            framed(&["0001", "0000"]),
            framed(&["not-a-hash refs/heads/main\n", "0000"]),
            framed(&[&format!("{A}\n"), "0000"]),
            vec![b'0'; MAX_ANSWER + 1],
        ];
        for case in cases {
            assert!(commit_of(&case, "refs/heads/main").is_err(), "{:?}", String::from_utf8_lossy(&case));
        }
    }
}
