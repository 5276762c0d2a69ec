//! What `BuildKit` says when it could not reach a registry, in words a person can act on: what
//! it was doing and which registry, not the URL of its first try (`https://` even for a
//! plain-HTTP registry). Pure: text in, text out.

/// Whether `BuildKit`'s error says a registry could not be reached.
pub fn is_unreachable(message: &str) -> bool {
    [
        "connection refused",
        "no such host",
        "i/o timeout",
        "TLS handshake timeout",
        "connection reset",
        "503 Service Unavailable",
        "502 Bad Gateway",
        "server misbehaving",
    ]
    .iter()
    .any(|t| message.contains(t))
}

/// `could not push the image: registry 127.0.0.1:5000 unreachable`, from `BuildKit`'s words.
pub fn unreachable_registry(message: &str) -> String {
    let doing = if message.contains("failed to push") || message.contains("pushing") {
        "push the image"
    } else if message.contains("failed to resolve source metadata") || message.contains("pull") {
        "pull an image"
    } else {
        "reach a registry"
    };
    let host =
        message.split("://").nth(1).and_then(|rest| rest.split(['/', '"', ' ', '\'']).next()).filter(|h| !h.is_empty());
    match host {
        Some(h) => format!("could not {doing}: registry {h} unreachable"),
        None => format!("could not {doing}: a registry is unreachable ({})", crate::shown::cut(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_registry_is_named_by_its_host() {
        let push = "failed to push 127.0.0.1:5000/apps/web:1: failed to do request: Head \"https://127.0.0.1:5000/v2/apps/web/blobs/sha256:ab\": dial tcp 127.0.0.1:5000: connect: connection refused";
        assert!(is_unreachable(push));
        assert_eq!(unreachable_registry(push), "could not push the image: registry 127.0.0.1:5000 unreachable");
        let pull = "failed to resolve source metadata for r.example:5000/x:1: dial tcp: lookup r.example: no such host";
        assert!(unreachable_registry(pull).starts_with("could not pull an image: a registry is unreachable"));
    }
}
