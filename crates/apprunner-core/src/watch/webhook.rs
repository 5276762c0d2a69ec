//! A git host's push webhook, read: which provider sent it (GitHub, GitLab, Bitbucket Cloud),
//! what it says happened (a push, a ping, something else), and the repository and branch it
//! names. A webhook only says "look now": what deploys is decided as for a poll, so a forged or
//! replayed payload can at worst cause a look. Checking who sent it (a signature, a token) is the
//! caller's, before any of this is read. Pure.

use serde_json::Value;

/// The largest body read; a larger one is refused unread (413).
pub const MAX_WEBHOOK_BYTES: usize = 1 << 20;

/// Who sent a webhook, by its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// `X-GitHub-Event`, signed in `X-Hub-Signature-256`.
    GitHub,
    /// `X-Gitlab-Event`, its secret token in `X-Gitlab-Token`.
    GitLab,
    /// `X-Event-Key`, signed in `X-Hub-Signature`.
    Bitbucket,
}

impl Provider {
    /// The provider whose event header is there (`header` looks one up by lowercase name), and
    /// the event it names.
    pub fn of(header: impl Fn(&str) -> Option<String>) -> Option<(Self, String)> {
        if let Some(e) = header("x-github-event") {
            return Some((Provider::GitHub, e));
        }
        if let Some(e) = header("x-gitlab-event") {
            return Some((Provider::GitLab, e));
        }
        header("x-event-key").map(|e| (Provider::Bitbucket, e))
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Bitbucket => "bitbucket",
        }
    }

    /// Whether `event` is a push.
    pub fn is_push(self, event: &str) -> bool {
        match self {
            Provider::GitHub => event == "push",
            Provider::GitLab => event == "Push Hook",
            Provider::Bitbucket => event == "repo:push",
        }
    }

    /// Whether `event` is the provider's test of the hook (answered 200, nothing done).
    pub fn is_ping(self, event: &str) -> bool {
        match self {
            Provider::GitHub => event == "ping",
            Provider::GitLab => false,
            Provider::Bitbucket => event == "diagnostics:ping",
        }
    }
}

/// What a push event names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Every URL the payload gives the repository, normalized (`normalize_url`).
    pub repositories: Vec<String>,
    /// The branches pushed to.
    pub branches: Vec<String>,
}

/// The push `body` says, or why it is not one this reads.
pub fn push_of(provider: Provider, body: &[u8]) -> Result<Push, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let text = |v: &Value, path: &[&str]| -> Option<String> {
        path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str).map(str::to_string)
    };
    let (urls, branches): (Vec<Option<String>>, Vec<String>) = match provider {
        Provider::GitHub => {
            let r = |k: &str| text(&v, &["repository", k]);
            let branch = text(&v, &["ref"]).and_then(|r| r.strip_prefix("refs/heads/").map(str::to_string));
            (vec![r("clone_url"), r("ssh_url"), r("html_url"), r("git_url")], branch.into_iter().collect())
        }
        Provider::GitLab => {
            let p = |k: &str| text(&v, &["project", k]);
            let branch = text(&v, &["ref"]).and_then(|r| r.strip_prefix("refs/heads/").map(str::to_string));
            (vec![p("git_http_url"), p("git_ssh_url"), p("web_url")], branch.into_iter().collect())
        }
        Provider::Bitbucket => {
            let html = text(&v, &["repository", "links", "html", "href"]);
            let changes = v.pointer("/push/changes").and_then(Value::as_array).cloned().unwrap_or_default();
            let branches = changes
                .iter()
                .filter_map(|c| c.get("new"))
                .filter(|n| n.get("type").and_then(Value::as_str) == Some("branch"))
                .filter_map(|n| n.get("name").and_then(Value::as_str).map(str::to_string))
                .collect();
            (vec![html], branches)
        }
    };
    let repositories: Vec<String> = urls.into_iter().flatten().map(|u| normalize_url(&u)).collect();
    if repositories.is_empty() {
        return Err("the payload names no repository".into());
    }
    Ok(Push { repositories, branches })
}

/// A repository URL as the same repository's other URLs normalize: host and path, lowercase,
/// without scheme, user, port, `.git` or trailing slash (`git@host:team/app.git`,
/// `https://host/team/app` and `ssh://git@host:22/team/app.git` are all `host/team/app`).
pub fn normalize_url(url: &str) -> String {
    let url = url.trim().to_ascii_lowercase();
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.to_string(),
        // scp-like: user@host:path
        None => url.replacen(':', "/", 1),
    };
    let rest = rest.rsplit_once('@').map_or(rest.as_str(), |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or(host);
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    format!("{host}/{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_url_of_one_repository_normalizes_alike() {
        for url in [
            "https://github.com/Team/App.git",
            "git@github.com:team/app.git",
            "ssh://git@github.com:22/team/app",
            "https://user@github.com/team/app/",
            "git://github.com/team/app.git",
        ] {
            assert_eq!(normalize_url(url), "github.com/team/app", "{url}");
        }
    }

    #[test]
    fn each_provider_says_its_repository_and_branch() {
        let github = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://github.com/t/a.git","ssh_url":"git@github.com:t/a.git","html_url":"https://github.com/t/a"}}"#;
        let p = push_of(Provider::GitHub, github).unwrap();
        assert_eq!((p.repositories[0].as_str(), p.branches.as_slice()), ("github.com/t/a", &["main".to_string()][..]));
        let gitlab = br#"{"ref":"refs/heads/dev","project":{"git_http_url":"https://gitlab.com/t/a.git"}}"#;
        assert_eq!(push_of(Provider::GitLab, gitlab).unwrap().branches, ["dev"]);
        let bitbucket = br#"{"repository":{"links":{"html":{"href":"https://bitbucket.org/t/a"}}},"push":{"changes":[{"new":{"type":"branch","name":"main"}},{"new":{"type":"tag","name":"v1"}}]}}"#;
        let p = push_of(Provider::Bitbucket, bitbucket).unwrap();
        assert_eq!(
            (p.repositories[0].as_str(), p.branches.as_slice()),
            ("bitbucket.org/t/a", &["main".to_string()][..])
        );
        let tag = br#"{"ref":"refs/tags/v1","repository":{"clone_url":"https://github.com/t/a.git"}}"#;
        assert!(push_of(Provider::GitHub, tag).unwrap().branches.is_empty());
        assert!(push_of(Provider::GitHub, b"{}").unwrap_err().contains("names no repository"));
        assert!(push_of(Provider::GitHub, b"nope").unwrap_err().starts_with("the body is not JSON"));
        let header = |name: &str| (name == "x-gitlab-event").then(|| "Push Hook".to_string());
        let (provider, event) = Provider::of(header).unwrap();
        assert!(provider == Provider::GitLab && provider.is_push(&event));
    }
}
