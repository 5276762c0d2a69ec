//! Values from the user as messages show them: control characters escaped, long values cut
//! with an ellipsis, so an error line stays one readable line whatever the input held.

/// The longest value a message repeats whole.
pub const MAX_SHOWN: usize = 120;

/// `value` with control characters escaped (`\n`, `\u{1b}`) and cut after [`MAX_SHOWN`]
/// characters with `…`.
pub fn cut(value: &str) -> String {
    message(value, MAX_SHOWN)
}

/// A whole message made safe to print: control characters escaped, at most `max` characters.
pub fn message(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `text` with the user information of every URL in it removed (`scheme://user:secret@host/path`
/// becomes `scheme://host/path`): a credential in a URL never reaches a log line, a label, an
/// event or an error.
pub fn redact_userinfo(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#`, space or quote; a `@` before it ends userinfo.
        let end = tail.find(|c: char| "/?#'\"` \t<>".contains(c)).unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => rest = &tail[at + 1..],
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// (`scheme://host/path`, Some((user, password))) for a URL with user information, the
/// percent-encoded parts decoded.
pub fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some(i) = url.find("://") else { return (url.to_string(), None) };
    let tail = &url[i + 3..];
    let end = tail.find(['/', '?', '#']).unwrap_or(tail.len());
    let Some(at) = tail[..end].rfind('@') else { return (url.to_string(), None) };
    let (user, password) = tail[..at].split_once(':').unwrap_or((&tail[..at], ""));
    (format!("{}{}", &url[..i + 3], &tail[at + 1..]), Some((percent_decode(user), percent_decode(password))))
}

/// `s` with `%XX` sequences decoded (invalid UTF-8 replaced).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(cut("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
        let long = "x".repeat(1000);
        assert_eq!(cut(&long).chars().count(), MAX_SHOWN + 1);
        assert!(cut(&long).ends_with('…'));
        assert_eq!(message("ok", 10), "ok");
    }

    #[test]
    fn credentials_in_urls_never_show() {
        assert_eq!(redact_userinfo("https://user:TOKEN@github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(redact_userinfo("https://github.com/o/r.git"), "https://github.com/o/r.git");
        assert_eq!(redact_userinfo("git@github.com:o/r.git"), "git@github.com:o/r.git");
        assert_eq!(
            redact_userinfo("fatal: unable to access 'https://u:p%40ss@h:8/r/': refused; see http://x@y/z"),
            "fatal: unable to access 'https://h:8/r/': refused; see http://y/z"
        );
        let (url, creds) = split_userinfo("https://u:p%40ss@h:8/r.git");
        assert_eq!((url.as_str(), creds), ("https://h:8/r.git", Some(("u".into(), "p@ss".into()))));
        assert_eq!(split_userinfo("file:///srv/r").1, None);
    }
}
