//! Which commit a ref names on a remote, asked without fetching: over smart HTTP on the
//! process's own client (`smart_http`), else one `git ls-remote`.

use super::{git_error, git_with, smart_http, GitAuth, Result};
use crate::core::request::{Revision, SourceLocation};
use std::path::Path;

/// The commit `revision` names at `location` now, asked of the remote without fetching (over
/// smart HTTP on the worker's own client, or one `git ls-remote`): a full hash given is itself,
/// a branch its head, the default branch the remote's HEAD. None for a local directory, a short
/// hash, a tag, or any failure: the fetch that follows says what was wrong.
pub async fn remote_commit(location: &SourceLocation, revision: &Revision, store: Option<&Path>) -> Option<String> {
    remote_head(location, revision, store).await.ok().flatten()
}

/// As `remote_commit`, telling a remote that has no such ref (`Ok(None)`) from one that could
/// not be asked (the error, unreachable or refused as git says).
pub async fn remote_head(
    location: &SourceLocation,
    revision: &Revision,
    store: Option<&Path>,
) -> Result<Option<String>> {
    let SourceLocation::Git(url) = location else { return Ok(None) };
    let wanted = match revision {
        Revision::Commit(c) => return Ok(crate::core::redeploy::is_full_commit(c).then(|| c.to_ascii_lowercase())),
        Revision::Branch(b) => format!("refs/heads/{b}"),
        Revision::DefaultBranch => "HEAD".to_string(),
        Revision::WorkingTree => return Ok(None),
    };
    let (url, userinfo) = crate::core::shown::split_userinfo(url);
    if url.starts_with("https://") || url.starts_with("http://") {
        // Asked on the worker's own client first, with the URL's credentials or else those the
        // store holds for its host; git otherwise.
        let stored = store.filter(|_| userinfo.is_none()).and_then(|s| stored_credentials(s, &url));
        match smart_http::ls_ref(&url, userinfo.as_ref().or(stored.as_ref()), &wanted).await {
            Ok(commit) => return Ok(commit),
            Err(crate::core::remote_refs::Unreadable(why)) => {
                tracing::debug!("asking git which commit {wanted} is: {why}");
            }
        }
    }
    let auth = GitAuth { userinfo, store: store.map(Path::to_path_buf) };
    let out = git_with(&auth, &["ls-remote", "--", &url, &wanted], None)
        .await
        .map_err(|e| git_error(&url, "cannot list the refs of", e))?;
    Ok(out.lines().find_map(|line| {
        let (commit, name) = line.split_once('\t')?;
        (name == wanted && crate::core::redeploy::is_full_commit(commit)).then(|| commit.to_string())
    }))
}

/// The credentials a git-credential-store file holds for `url`, picked as git's `store` helper
/// picks them; None when it cannot be read (git will say why).
fn stored_credentials(store: &Path, url: &str) -> Option<(String, String)> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(store).ok()?.take(1 << 20).read_to_string(&mut text).ok()?;
    crate::core::git_credentials::stored_for(&text, url)
}
