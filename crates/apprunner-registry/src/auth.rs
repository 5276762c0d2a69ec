//! Who a registry is told we are: credentials per host (never sent to another), read from the
//! settings or a Docker auth file, and the bearer tokens a registry's token service hands out.

use serde_json::Value;

/// A Docker auth file that cannot be read as one: the operator's to fix, at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthFileError(String);

/// A bearer token from a registry's token service.
pub struct Token {
    pub token: String,
    pub expires_in: Option<i64>,
    /// Unix seconds.
    pub issued_at: Option<i64>,
}

/// Credentials for one registry host.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"…").finish()
    }
}

/// Credentials per registry host: each is sent to its own host and to no other.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryAuth(std::collections::BTreeMap<String, Credentials>);

impl RegistryAuth {
    pub fn for_host(host: &str, username: &str, password: &str) -> Self {
        let mut auth = Self::default();
        auth.insert(host, Credentials { username: username.to_string(), password: password.to_string() });
        auth
    }

    pub fn insert(&mut self, host: &str, credentials: Credentials) {
        self.0.insert(host.to_string(), credentials);
    }

    /// The credentials for `host`, if it has any.
    pub fn get(&self, host: &str) -> Option<&Credentials> {
        self.0.get(host)
    }

    /// Reads a Docker-style auth file: `{"auths": {"HOST": {"auth": base64("user:password")}}}`
    /// (or `username` and `password` fields).
    pub fn read_docker_config(&mut self, text: &str) -> std::result::Result<(), AuthFileError> {
        use base64::Engine as _;
        let v: Value = serde_json::from_str(text).map_err(|e| AuthFileError(format!("not JSON: {e}")))?;
        let auths = v["auths"].as_object().ok_or_else(|| AuthFileError("no `auths` object".into()))?;
        for (host, entry) in auths {
            let creds = if let Some(auth) = entry["auth"].as_str() {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth)
                    .map_err(|_| AuthFileError(format!("{host}: `auth` is not base64")))?;
                let text = String::from_utf8_lossy(&decoded);
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| AuthFileError(format!("{host}: `auth` is not user:password")))?;
                Credentials { username: u.to_string(), password: p.to_string() }
            } else {
                let field = |k: &str| entry[k].as_str().unwrap_or_default().to_string();
                Credentials { username: field("username"), password: field("password") }
            };
            self.insert(host, creds);
        }
        Ok(())
    }
}

/// A token server's answer (Docker's token spec names it `token`, `OAuth2` `access_token`).
#[derive(serde::Deserialize)]
pub(super) struct TokenResponse {
    pub(super) token: Option<String>,
    pub(super) access_token: Option<String>,
    pub(super) expires_in: Option<i64>,
    pub(super) issued_at: Option<String>,
}
