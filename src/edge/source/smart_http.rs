//! Which commit a ref names on an HTTP(S) repository, asked with git's protocol v2 `ls-refs`
//! on one pooled client per process (`core::remote_refs` holds the bytes). `git ls-remote`
//! over HTTPS costs 65 ms of CPU a call (a `git` and a `git-remote-https` process, the CA
//! bundle parsed, a TLS handshake); a redeploy asks once, so this is most of what a redeploy of
//! a real repository costs. Anything unexpected (another protocol version, a redirect, a
//! login page, a credential store to consult) says so, and the caller asks git instead.

use crate::core::remote_refs::{self, Unreadable, ADVERTISEMENT_TYPE, RESULT_TYPE};
use std::time::Duration;

/// How this client names itself to the host (`User-Agent`, and `agent` in the request).
const AGENT: &str = concat!("apprunner-build/", env!("CARGO_PKG_VERSION"));

/// The most an advertisement may hold (git's is a few hundred bytes).
const MAX_ADVERTISEMENT: usize = 64 << 10;

/// One client for the process: its connections are kept between redeploys, and the system's
/// roots are parsed once (the registry client's TLS configuration).
fn client() -> Option<&'static reqwest::Client> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let builder = match crate::edge::registry::tls_config() {
                Some(config) => reqwest::Client::builder().use_preconfigured_tls(config.clone()),
                None => reqwest::Client::builder(),
            };
            builder
                .user_agent(AGENT)
                // A moved repository is followed by git, which says where it went.
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_secs(10))
                .timeout(Duration::from_secs(30))
                .build()
                .ok()
        })
        .as_ref()
}

/// The commit `wanted` (`HEAD` or `refs/heads/<branch>`) names at `url` (credentials taken out
/// of it, given as `userinfo`), or None when the repository has no such ref. `Err` when this
/// way cannot answer for sure: the caller asks git.
pub(super) async fn ls_ref(
    url: &str,
    userinfo: Option<&(String, String)>,
    wanted: &str,
) -> Result<Option<String>, Unreadable> {
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        return Err(Unreadable("not an HTTP(S) URL"));
    }
    if url.contains(['?', '#']) {
        return Err(Unreadable("a URL with a query or fragment"));
    }
    // Credentials go only where TLS keeps them; git asks for them on plain HTTP.
    if userinfo.is_some() && !https {
        return Err(Unreadable("credentials over plain HTTP"));
    }
    let request = remote_refs::ls_refs_request(wanted, AGENT)?;
    let client = client().ok_or(Unreadable("no HTTP client"))?;
    let base = if url.ends_with('/') { url.to_string() } else { format!("{url}/") };
    let authorized = |req: reqwest::RequestBuilder| match userinfo {
        Some((user, password)) => req.basic_auth(user, Some(password)),
        None => req,
    };

    let advertised = client.get(format!("{base}info/refs?service=git-upload-pack")).header("Git-Protocol", "version=2");
    let advertisement = answer(authorized(advertised), ADVERTISEMENT_TYPE, MAX_ADVERTISEMENT).await?;
    remote_refs::offers_ls_refs(&advertisement)?;

    let asked = client
        .post(format!("{base}git-upload-pack"))
        .header("Git-Protocol", "version=2")
        .header(reqwest::header::CONTENT_TYPE, remote_refs::REQUEST_TYPE)
        .header(reqwest::header::ACCEPT, RESULT_TYPE)
        .body(request);
    let refs = answer(authorized(asked), RESULT_TYPE, remote_refs::MAX_ANSWER).await?;
    remote_refs::commit_of(&refs, wanted)
}

/// A 200 answer of `content_type`, read to at most `max` bytes. What went wrong is not kept:
/// the URL it names may carry what the caller took out of it, and git will say it again.
async fn answer(req: reqwest::RequestBuilder, content_type: &str, max: usize) -> Result<Vec<u8>, Unreadable> {
    let mut resp = req.send().await.map_err(|_| Unreadable("the host could not be asked"))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(Unreadable("the host did not answer 200"));
    }
    let typed = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if typed.map(|t| t.split(';').next().unwrap_or("").trim()) != Some(content_type) {
        return Err(Unreadable("the answer is not of git's content type"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|_| Unreadable("the answer was cut off"))? {
        if body.len() + chunk.len() > max {
            return Err(Unreadable("the answer is too long"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
