//! Which credentials a git-credential-store file (`--git-credentials`: one
//! `https://user:token@host[:port][/path]` URL a line) holds for a repository, picked as git's
//! `store` helper picks them: the first line whose scheme and host (with its port) are the
//! repository's; the path is not compared (git's default, `credential.useHttpPath` off).

use crate::shown::{percent_decode, split_userinfo};

/// `scheme://host[:port]` of a URL without user information, or None for one without `://`.
fn origin(url: &str) -> Option<&str> {
    let i = url.find("://")?;
    let end = url[i + 3..].find(['/', '?', '#']).map_or(url.len(), |e| i + 3 + e);
    Some(&url[..end])
}

/// The user and password the store's lines give for `url` (credentials already taken out).
/// Hosts are compared decoded: git writes a port's colon as `%3a`.
pub fn stored_for(store: &str, url: &str) -> Option<(String, String)> {
    let wanted = percent_decode(origin(url)?);
    store.lines().map(str::trim).find_map(|line| {
        let (without, credentials) = split_userinfo(line);
        (origin(&without).map(percent_decode).as_deref() == Some(wanted.as_str())).then_some(credentials).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "\n# not a URL\nhttps://other:o@git.example.org\nhttp://plain:p@git.example.com\nhttps://deploy:t%40ken@git.example.com/some/path\nhttps://later:l@git.example.com\nhttps://port:x@git.example.com:8443\nhttps://written:w@127.0.0.1%3a5001\n";

    #[test]
    fn the_first_line_of_the_same_scheme_and_host_is_taken() {
        let deploy = Some(("deploy".to_string(), "t@ken".to_string()));
        assert_eq!(stored_for(STORE, "https://git.example.com/team/app.git"), deploy);
        assert_eq!(stored_for(STORE, "https://git.example.com"), deploy);
        assert_eq!(stored_for(STORE, "http://git.example.com/team/app.git").unwrap().0, "plain");
        assert_eq!(stored_for(STORE, "https://git.example.com:8443/app.git").unwrap().0, "port");
        assert_eq!(stored_for(STORE, "https://127.0.0.1:5001/app.git").unwrap().0, "written", "as git writes a port");
    }

    #[test]
    fn another_host_or_port_gets_nothing() {
        assert_eq!(stored_for(STORE, "https://git.example.net/app.git"), None);
        assert_eq!(stored_for(STORE, "https://git.example.com:9443/app.git"), None);
        assert_eq!(stored_for(STORE, "https://example.com/app.git"), None);
        assert_eq!(stored_for(STORE, "git.example.com/app.git"), None);
        assert_eq!(stored_for("", "https://git.example.com/app.git"), None);
    }
}
