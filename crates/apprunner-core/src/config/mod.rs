//! `apprunner.yaml` (configuration source REPOSITORY) and API values (API) become one validated
//! [`AppConfig`]: every key of App Runner's configuration file reference, its rules, and the
//! decisions of docs/configuration.md.
//! Pure: text in, configuration or one-line error out.

mod api;
mod file;
mod keys;
mod rules;
mod sections;

pub use api::from_api;
pub use file::from_yaml;

use crate::yaml::Mark;
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "apprunner.yaml";
pub const DEFAULT_PORT: u16 = 8080;

// Limits on what a configuration may hold, each far above what a real one needs, so that a
// hostile file costs the worker little: every check is linear in what is below them.
/// Bytes of `apprunner.yaml` (or of API values).
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Commands in one phase.
pub const MAX_COMMANDS: usize = 1000;
/// Entries of one env or secrets list.
pub const MAX_ENV: usize = 1000;
/// Bytes of one command, name or value.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Warnings kept; more are counted in one last line.
pub const MAX_WARNINGS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigSource {
    #[serde(alias = "Repository", alias = "repository")]
    Repository,
    #[serde(alias = "Api", alias = "api")]
    Api,
}

impl ConfigSource {
    /// As App Runner's API (and the serialised job) names it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigSource::Repository => "REPOSITORY",
            ConfigSource::Api => "API",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

/// A runtime secret: only ever a reference, resolved by whoever deploys the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
    #[serde(rename = "value-from")]
    pub value_from: String,
}

/// A validated build configuration: what App Runner would run, and how the image starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppConfig {
    pub source: ConfigSource,
    /// Catalog name of the runtime (`python3`, never `PYTHON_3`).
    pub runtime: String,
    /// `run.runtime-version` exactly as written.
    pub runtime_version: Option<String>,
    pub pre_build: Vec<String>,
    pub build: Vec<String>,
    pub post_build: Vec<String>,
    pub build_env: Vec<EnvVar>,
    pub pre_run: Vec<String>,
    pub command: String,
    pub port: u16,
    pub port_env: Option<String>,
    pub run_env: Vec<EnvVar>,
    pub secrets: Vec<SecretRef>,
    /// Things worth telling the user that do not stop the build (unknown keys, …).
    pub warnings: Vec<String>,
}

/// A rejected configuration: where, which key, and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<String>,
    pub mark: Option<Mark>,
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.mark) {
            (Some(file), Some(m)) => write!(f, "{file}:{m}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, _) => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem a configuration file has, in file order (docs/configuration.md B5): the first line
/// says how many, then one line each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems sorted into file order (those without a position first).
    pub fn new(mut problems: Vec<ConfigError>) -> Self {
        problems.sort_by_key(|p| p.mark.map(|m| (m.line, m.col)));
        Self(problems)
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(f, "{only}");
        }
        let file = self.0.iter().find_map(|p| p.file.as_deref()).unwrap_or(CONFIG_FILE);
        write!(f, "{file}: {} problems, one per line:", self.0.len())?;
        for p in &self.0 {
            write!(f, "\n{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigErrors> for crate::error::BuildError {
    fn from(e: ConfigErrors) -> Self {
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        let mut error = crate::error::BuildError::user(e.to_string());
        if lines.len() > 1 {
            error.lines = lines;
        }
        error
    }
}

impl crate::error::Classified for ConfigError {
    fn class(&self) -> crate::error::ErrorClass {
        crate::error::ErrorClass::User
    }
}

crate::error::classified_into_build_error!(ConfigError);

type Result<T> = std::result::Result<T, ConfigError>;
