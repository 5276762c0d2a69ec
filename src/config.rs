//! `apprunner.yaml` (configuration source REPOSITORY) and API values (API) become one validated
//! [`AppConfig`]: every key of SPEC.md §2.3, the rules of §2.4–2.6 and DECISIONS.md.
//! Pure: text in, configuration or one-line error out.

use crate::catalog::{closest, BuildProcess, RuntimeCatalog};
use crate::yaml::{self, Mark, Node, Value};
use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "apprunner.yaml";
pub const DEFAULT_PORT: u16 = 8080;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConfigSource {
    #[serde(alias = "Repository", alias = "repository")]
    Repository,
    #[serde(alias = "Api", alias = "api")]
    Api,
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

type Result<T> = std::result::Result<T, ConfigError>;

/// Every key the file format has, by the path of the mapping that holds it.
const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("", &["version", "runtime", "build", "run"]),
    ("build", &["commands", "env"]),
    ("build.commands", &["pre-build", "build", "post-build"]),
    ("build.env[]", &["name", "value"]),
    ("run", &["runtime-version", "pre-run", "command", "network", "env", "secrets"]),
    ("run.network", &["port", "env"]),
    ("run.env[]", &["name", "value"]),
    ("run.secrets[]", &["name", "value-from"]),
];

struct FileReader<'a> {
    file: &'a str,
    warnings: Vec<String>,
}

impl FileReader<'_> {
    fn err(&self, mark: Mark, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { file: Some(self.file.to_string()), mark: Some(mark), key: key.to_string(), message: message.into() }
    }

    fn warn(&mut self, mark: Mark, message: String) {
        self.warnings.push(format!("{}:{mark}: {message}", self.file));
    }

    /// The entries of a mapping node; unknown keys become warnings with a suggestion.
    fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Result<Vec<(&'n str, &'n Node)>> {
        if node.is_null() {
            // `network:` with nothing under it is an empty mapping, not a mistake worth failing for.
            return Ok(Vec::new());
        }
        let Value::Map(entries) = &node.value else {
            return Err(self.err(node.mark, path, format!("expected a mapping, found {}", node.kind())));
        };
        let known = KNOWN_KEYS.iter().find(|(p, _)| *p == path).map(|(_, k)| *k).unwrap_or(&[]);
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_scalar() else {
                return Err(self.err(k.mark, path, "a key must be a plain name"));
            };
            if known.contains(&key) {
                out.push((key, v));
            } else {
                let shown = if path.is_empty() { key.to_string() } else { format!("{}.{key}", path.replace("[]", "[…]")) };
                let hint = suggest_key(path, key).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
                self.warn(k.mark, format!("unknown key `{shown}` is ignored{hint}"));
            }
        }
        Ok(out)
    }

    fn tag_check(&self, node: &Node, key: &str) -> Result<()> {
        match &node.tag {
            Some(tag) => Err(self.err(node.mark, key, format!("the YAML tag `{tag}` has no meaning in {CONFIG_FILE}; write the plain value"))),
            None => Ok(()),
        }
    }

    fn scalar(&self, node: &Node, key: &str, expected: &str) -> Result<String> {
        self.tag_check(node, key)?;
        match node.as_scalar() {
            Some(text) if !node.is_null() => Ok(text.to_string()),
            _ => Err(self.err(node.mark, key, format!("expected {expected}, found {}", node.kind()))),
        }
    }

    /// A list of shell commands. A single string is taken as a one-command list.
    fn commands(&mut self, node: &Node, key: &str) -> Result<Vec<String>> {
        self.tag_check(node, key)?;
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Scalar { .. } if node.is_null() => Vec::new(),
            Value::Scalar { .. } => {
                self.warn(node.mark, format!("`{key}` is a single string; it is run as one command (the canonical form is a list: `- command`)"));
                vec![node]
            }
            Value::Map(_) => return Err(self.err(node.mark, key, "expected a list of commands, found a mapping")),
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{key}[{i}]");
            match &item.value {
                Value::Map(entries) if entries.len() == 1 && entries[0].0.as_scalar().is_some() => {
                    let (k, v) = &entries[0];
                    let guess = format!("{}: {}", k.as_scalar().unwrap_or(""), v.as_scalar().unwrap_or("…"));
                    return Err(self.err(
                        item.mark,
                        &at,
                        format!("YAML read this command as a mapping because of the `: ` in it; quote the whole command, e.g. - \"{guess}\""),
                    ));
                }
                Value::Scalar { .. } if item.is_null() => return Err(self.err(item.mark, &at, "empty command; remove the line or write a command")),
                Value::Scalar { text, .. } => {
                    self.tag_check(item, &at)?;
                    out.push(text.clone());
                }
                _ => return Err(self.err(item.mark, &at, format!("expected a command (a string), found {}", item.kind()))),
            }
        }
        Ok(out)
    }

    fn env_list(&mut self, node: &Node, key: &str) -> Result<Vec<EnvVar>> {
        let path = format!("{key}[]");
        let items = self.list(node, key)?;
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{key}[{i}]");
            let entries = self.mapping(item, &path)?;
            let name = field(&entries, "name").ok_or_else(|| self.err(item.mark, &at, "missing `name`; each entry is `- name: NAME` with `value: VALUE`"))?;
            let name = self.scalar(name, &format!("{at}.name"), "a variable name")?;
            check_env_name(&name).map_err(|m| self.err(item.mark, &format!("{at}.name"), m))?;
            let value =
                field(&entries, "value").ok_or_else(|| self.err(item.mark, &at, format!("`{name}` has no `value`; write `value: \"\"` for an empty one")))?;
            self.tag_check(value, &format!("{at}.value"))?;
            let value = match value.as_scalar() {
                Some(_) if value.is_null() => String::new(),
                Some(text) => text.to_string(),
                None => return Err(self.err(value.mark, &format!("{at}.value"), format!("expected a string, found {}", value.kind()))),
            };
            out.push(EnvVar { name, value });
        }
        Ok(out)
    }

    fn list<'n>(&self, node: &'n Node, key: &str) -> Result<Vec<&'n Node>> {
        self.tag_check(node, key)?;
        match &node.value {
            Value::Seq(items) => Ok(items.iter().collect()),
            _ if node.is_null() => Ok(Vec::new()),
            _ => Err(self.err(node.mark, key, format!("expected a list, found {}", node.kind()))),
        }
    }
}

fn field<'n>(entries: &[(&str, &'n Node)], key: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// For an unknown key: the same name where it belongs (`run.port` -> `run.network.port`), or the
/// closest known key at that level (`pre_build` -> `pre-build`).
fn suggest_key(path: &str, key: &str) -> Option<String> {
    let normal = key.trim().to_ascii_lowercase().replace('_', "-");
    let here = KNOWN_KEYS.iter().find(|(p, _)| *p == path).map(|(_, k)| *k).unwrap_or(&[]);
    let join = |p: &str, k: &str| if p.is_empty() { k.to_string() } else { format!("{}.{k}", p.replace("[]", "[…]")) };
    if let Some(k) = here.iter().find(|k| **k == normal) {
        return Some(join(path, k));
    }
    if let Some((p, k)) = KNOWN_KEYS.iter().flat_map(|(p, ks)| ks.iter().map(move |k| (*p, *k))).find(|(p, k)| *k == normal && !p.contains("[]") && *p != path)
    {
        return Some(join(p, k));
    }
    closest(&normal, here).map(|k| join(path, k))
}

fn check_env_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!("`{name}` is not a usable environment variable name; use letters, digits and `_` (not starting with a digit)"))
    }
}

fn parse_port(text: &str) -> std::result::Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err(format!("`{text}` is not a port number; expected an integer from 1 to 65535")),
    }
}

/// `value-from` is a Secrets Manager ARN, an SSM parameter ARN, or a bare SSM parameter name (§2.5).
fn check_secret_reference(v: &str) -> std::result::Result<(), String> {
    const ACCEPTED: &str = "expected a Secrets Manager secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), an SSM parameter ARN (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME) or an SSM parameter name";
    if let Some(rest) = v.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let ok = parts.len() == 5
            && !parts[0].is_empty()
            && !parts[2].is_empty()
            && parts[3].len() == 12
            && parts[3].bytes().all(|b| b.is_ascii_digit())
            && match parts[1] {
                "secretsmanager" => parts[4].strip_prefix("secret:").is_some_and(|s| !s.is_empty()),
                "ssm" => parts[4].strip_prefix("parameter").is_some_and(|s| s.len() > 1 && s.starts_with('/')),
                _ => false,
            };
        return if ok { Ok(()) } else { Err(format!("`{v}` is not a valid reference; {ACCEPTED}")) };
    }
    let ok = !v.is_empty() && v.len() <= 2048 && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{v}` is not a valid reference; {ACCEPTED}"))
    }
}

/// Rules shared by both configuration sources, checked once everything is read.
fn check_run_settings(cfg: &AppConfig, process: BuildProcess, catalog: &RuntimeCatalog) -> std::result::Result<(), (String, String)> {
    for (i, e) in cfg.run_env.iter().enumerate() {
        if e.name == "PORT" {
            return Err((format!("run.env[{i}].name"), "`PORT` is reserved: App Runner sets it to the port; set run.network.port instead".into()));
        }
    }
    for (i, s) in cfg.secrets.iter().enumerate() {
        if s.name == "PORT" {
            return Err((format!("run.secrets[{i}].name"), "`PORT` is reserved: App Runner sets it to the port; set run.network.port instead".into()));
        }
        check_env_name(&s.name).map_err(|m| (format!("run.secrets[{i}].name"), m))?;
        check_secret_reference(&s.value_from).map_err(|m| (format!("run.secrets[{i}].value-from"), m))?;
        if cfg.run_env.iter().any(|e| e.name == s.name) {
            return Err((format!("run.secrets[{i}].name"), format!("`{}` is set both in run.env and run.secrets; keep one", s.name)));
        }
    }
    if let Some(alias) = &cfg.port_env {
        check_env_name(alias).map_err(|m| ("run.network.env".to_string(), m))?;
        if cfg.run_env.iter().any(|e| &e.name == alias) || cfg.secrets.iter().any(|s| &s.name == alias) {
            return Err((
                "run.network.env".into(),
                format!("`{alias}` is also set in run.env or run.secrets; App Runner sets it to the port, so remove the other one"),
            ));
        }
    }
    if !cfg.pre_run.is_empty() && process == BuildProcess::Original {
        return Err((
            "run.pre-run".into(),
            format!(
                "pre-run is only for runtimes with the revised build ({}); {} uses the original build, which reruns build.commands.build in the run image instead, so put these commands there",
                catalog.revised_names().join(", "),
                cfg.runtime
            ),
        ));
    }
    if cfg.command.trim().is_empty() {
        return Err(("run.command".into(), "the start command is empty; give the command that starts the web service".into()));
    }
    Ok(())
}

/// Reads `apprunner.yaml`. `file` is the name used in messages (its path in the repository).
pub fn from_yaml(text: &str, file: &str, catalog: &RuntimeCatalog) -> Result<AppConfig> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let mut r = FileReader { file, warnings: Vec::new() };
    let fail = |mark: Option<Mark>, key: &str, message: String| ConfigError { file: Some(file.to_string()), mark, key: key.to_string(), message };
    let root = yaml::parse(&text)
        .map_err(|e| fail(Some(e.mark), "", format!("not valid YAML: {}", e.message)))?
        .ok_or_else(|| fail(None, "", "the file is empty; it needs at least version, runtime, build.commands.build and run.command".into()))?;
    if !matches!(root.value, Value::Map(_)) {
        return Err(fail(Some(root.mark), "", format!("expected a mapping of version, runtime, build and run at the top, found {}", root.kind())));
    }
    let top = r.mapping(&root, "")?;
    let missing = |key: &str, hint: &str| fail(Some(root.mark), key, format!("required key is missing; {hint}"));

    let version_node = field(&top, "version").ok_or_else(|| missing("version", "add `version: 1.0`"))?;
    let version = r.scalar(version_node, "version", "the configuration version 1.0")?;
    if !matches!(version.trim(), "1.0" | "1") {
        r.warn(version_node.mark, format!("version `{version}` is not a configuration-file version this worker knows; it is read as 1.0"));
    }

    let runtime_node = field(&top, "runtime").ok_or_else(|| missing("runtime", "add e.g. `runtime: python3`"))?;
    let runtime_text = r.scalar(runtime_node, "runtime", "a runtime name")?;
    let rt = catalog.lookup(&runtime_text).map_err(|m| r.err(runtime_node.mark, "runtime", m))?;

    let build_node = field(&top, "build").ok_or_else(|| missing("build", "add `build:` with `commands:` and a `build:` list of commands"))?;
    let build = r.mapping(build_node, "build")?;
    let commands_node =
        field(&build, "commands").ok_or_else(|| r.err(build_node.mark, "build.commands", "required key is missing; add `commands:` with a `build:` list"))?;
    let (mut pre_build, mut build_cmds, mut post_build) = (Vec::new(), Vec::new(), Vec::new());
    match &commands_node.value {
        Value::Seq(_) => {
            r.warn(
                commands_node.mark,
                "build.commands is a plain list; it is taken as the build phase (canonical form: `commands:` then `build:` with the list)".into(),
            );
            build_cmds = r.commands(commands_node, "build.commands")?;
        }
        _ => {
            let phases = r.mapping(commands_node, "build.commands")?;
            if let Some(n) = field(&phases, "pre-build") {
                pre_build = r.commands(n, "build.commands.pre-build")?;
            }
            if let Some(n) = field(&phases, "build") {
                build_cmds = r.commands(n, "build.commands.build")?;
            }
            if let Some(n) = field(&phases, "post-build") {
                post_build = r.commands(n, "build.commands.post-build")?;
            }
        }
    }
    if build_cmds.is_empty() {
        return Err(r.err(
            commands_node.mark,
            "build.commands.build",
            "at least one build command is required (App Runner requires build commands; `- echo nothing to build` will do)",
        ));
    }
    let build_env = match field(&build, "env") {
        Some(n) => r.env_list(n, "build.env")?,
        None => Vec::new(),
    };

    let run_node = field(&top, "run").ok_or_else(|| missing("run", "add `run:` with `command:`"))?;
    let run = r.mapping(run_node, "run")?;
    let runtime_version = match field(&run, "runtime-version") {
        Some(n) if !n.is_null() => Some(r.scalar(n, "run.runtime-version", "a version such as 3.8 or 3.8.16")?),
        _ => None,
    };
    if let Some(lock) = &runtime_version {
        let n = field(&run, "runtime-version").expect("just read");
        catalog.resolve(rt, Some(lock)).map_err(|m| r.err(n.mark, "run.runtime-version", m))?;
    }
    let pre_run = match field(&run, "pre-run") {
        Some(n) => r.commands(n, "run.pre-run")?,
        None => Vec::new(),
    };
    let command_node = field(&run, "command").ok_or_else(|| {
        r.err(run_node.mark, "run.command", "required key is missing; add the command that starts the service, e.g. `command: python app.py`")
    })?;
    if let Value::Seq(_) = command_node.value {
        return Err(r.err(
            command_node.mark,
            "run.command",
            "expected a single command (a string), found a list; join the commands with && or use a start script",
        ));
    }
    if let Value::Map(_) = command_node.value {
        return Err(r.err(command_node.mark, "run.command", "YAML read the command as a mapping because of the `: ` in it; quote the whole command"));
    }
    let command = r.scalar(command_node, "run.command", "the start command")?;
    let (mut port, mut port_env) = (DEFAULT_PORT, None);
    if let Some(n) = field(&run, "network") {
        let net = r.mapping(n, "run.network")?;
        if let Some(p) = field(&net, "port") {
            let text = r.scalar(p, "run.network.port", "a port number")?;
            port = parse_port(&text).map_err(|m| r.err(p.mark, "run.network.port", m))?;
        }
        if let Some(e) = field(&net, "env") {
            port_env = Some(r.scalar(e, "run.network.env", "an environment variable name")?);
        }
    }
    let run_env = match field(&run, "env") {
        Some(n) => r.env_list(n, "run.env")?,
        None => Vec::new(),
    };
    let mut secrets = Vec::new();
    if let Some(n) = field(&run, "secrets") {
        for (i, item) in r.list(n, "run.secrets")?.into_iter().enumerate() {
            let at = format!("run.secrets[{i}]");
            let entries = r.mapping(item, "run.secrets[]")?;
            let name = field(&entries, "name").ok_or_else(|| r.err(item.mark, &at, "missing `name`; each entry is `- name: NAME` with `value-from: ARN`"))?;
            let name = r.scalar(name, &format!("{at}.name"), "a variable name")?;
            let from = field(&entries, "value-from")
                .ok_or_else(|| r.err(item.mark, &at, format!("`{name}` has no `value-from`; give a Secrets Manager ARN, an SSM parameter ARN or name")))?;
            let value_from = r.scalar(from, &format!("{at}.value-from"), "a secret reference")?;
            secrets.push(SecretRef { name, value_from });
        }
    }
    let mut cfg = AppConfig {
        source: ConfigSource::Repository,
        runtime: rt.name.clone(),
        runtime_version,
        pre_build,
        build: build_cmds,
        post_build,
        build_env,
        pre_run,
        command,
        port,
        port_env,
        run_env,
        secrets,
        warnings: Vec::new(),
    };
    check_run_settings(&cfg, rt.build_process, catalog).map_err(|(key, m)| {
        let mark = key_mark(&root, &key).unwrap_or(run_node.mark);
        r.err(mark, &key, m)
    })?;
    dedupe_env_warnings(&mut r.warnings, &cfg.build_env, "build.env", file);
    dedupe_env_warnings(&mut r.warnings, &cfg.run_env, "run.env", file);
    cfg.warnings = r.warnings;
    Ok(cfg)
}

fn dedupe_env_warnings(warnings: &mut Vec<String>, env: &[EnvVar], key: &str, file: &str) {
    for (i, e) in env.iter().enumerate() {
        if env[i + 1..].iter().any(|o| o.name == e.name) {
            warnings.push(format!("{file}: {key} sets `{}` more than once; the last value wins", e.name));
        }
    }
}

/// Best-effort position of a dotted key such as `run.env[2].name`, for errors found after reading.
fn key_mark(root: &Node, key: &str) -> Option<Mark> {
    let mut node = root;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Value::Map(entries) = &node.value else { return None };
        node = &entries.iter().find(|(k, _)| k.as_scalar() == Some(name))?.1;
        if let Some(i) = index {
            let Value::Seq(items) = &node.value else { return None };
            node = items.get(i)?;
        }
    }
    Some(node.mark)
}

/// Reads API values (`CodeConfigurationValues`): `Runtime`, `BuildCommand`, `StartCommand`,
/// `Port`, `RuntimeEnvironmentVariables`, `RuntimeEnvironmentSecrets`, in PascalCase or camelCase.
pub fn from_api(values: &serde_json::Value, catalog: &RuntimeCatalog) -> Result<AppConfig> {
    let fail = |key: &str, message: String| ConfigError { file: None, mark: None, key: key.to_string(), message };
    let obj =
        values.as_object().ok_or_else(|| fail("CodeConfigurationValues", "expected a JSON object of Runtime, BuildCommand, StartCommand, Port, …".into()))?;
    // Accept the whole CodeConfiguration too, as the API and CloudTrail show it.
    if let Some(inner) = get(obj, "CodeConfigurationValues") {
        return from_api(inner, catalog);
    }
    const KNOWN: &[&str] =
        &["Runtime", "BuildCommand", "StartCommand", "Port", "RuntimeEnvironmentVariables", "RuntimeEnvironmentSecrets", "ConfigurationSource"];
    let mut warnings = Vec::new();
    for k in obj.keys() {
        if !KNOWN.iter().any(|n| n.eq_ignore_ascii_case(k)) {
            let hint = closest(k, KNOWN).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
            warnings.push(format!("API values: unknown field `{k}` is ignored{hint}"));
        }
    }
    let string = |key: &str| -> Result<Option<String>> {
        match get(obj, key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(fail(key, format!("expected a string, found {}", json_kind(other)))),
        }
    };
    let runtime_text = string("Runtime")?.ok_or_else(|| fail("Runtime", "required field is missing; e.g. \"Runtime\": \"PYTHON_3\"".into()))?;
    let rt = catalog.lookup(&runtime_text).map_err(|m| fail("Runtime", m))?;
    // BuildCommand is one shell command line (A5); a list is taken as several commands.
    let build = match get(obj, "BuildCommand") {
        Some(serde_json::Value::Array(items)) => {
            items.iter().map(|i| i.as_str().map(str::to_string).ok_or_else(|| fail("BuildCommand", "expected a string".into()))).collect::<Result<Vec<_>>>()?
        }
        _ => string("BuildCommand")?.into_iter().collect(),
    };
    let build: Vec<String> = build.into_iter().filter(|c| !c.trim().is_empty()).collect();
    if build.is_empty() {
        return Err(fail(
            "BuildCommand",
            "required field is missing or empty; App Runner requires a build command, e.g. \"pip install -r requirements.txt\"".into(),
        ));
    }
    let command = string("StartCommand")?
        .ok_or_else(|| fail("StartCommand", "required field is missing; give the command that starts the service, e.g. \"python server.py\"".into()))?;
    let port = match string("Port")? {
        Some(p) => parse_port(&p).map_err(|m| fail("Port", m))?,
        None => DEFAULT_PORT,
    };
    let run_env =
        name_values(get(obj, "RuntimeEnvironmentVariables"), "RuntimeEnvironmentVariables")?.into_iter().map(|(name, value)| EnvVar { name, value }).collect();
    let secrets = name_values(get(obj, "RuntimeEnvironmentSecrets"), "RuntimeEnvironmentSecrets")?
        .into_iter()
        .map(|(name, value_from)| SecretRef { name, value_from })
        .collect();
    let cfg = AppConfig {
        source: ConfigSource::Api,
        runtime: rt.name.clone(),
        runtime_version: None,
        pre_build: Vec::new(),
        build,
        post_build: Vec::new(),
        build_env: Vec::new(),
        pre_run: Vec::new(),
        command,
        port,
        port_env: None,
        run_env,
        secrets,
        warnings,
    };
    check_run_settings(&cfg, rt.build_process, catalog).map_err(|(key, m)| {
        let api_key = if key.starts_with("run.env") {
            "RuntimeEnvironmentVariables"
        } else if key.starts_with("run.secrets") {
            "RuntimeEnvironmentSecrets"
        } else {
            "StartCommand"
        };
        fail(api_key, m)
    })?;
    Ok(cfg)
}

fn get<'a>(obj: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> Option<&'a serde_json::Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// `{"A": "1"}` or `[{"A": "1"}]` (the describe-service form) -> ordered pairs.
fn name_values(v: Option<&serde_json::Value>, key: &str) -> Result<Vec<(String, String)>> {
    let fail = |message: String| ConfigError { file: None, mark: None, key: key.to_string(), message };
    let mut out = Vec::new();
    let mut add = |obj: &serde_json::Map<String, serde_json::Value>| -> Result<()> {
        for (k, v) in obj {
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => return Err(fail(format!("`{k}` must be a string, found {}", json_kind(other)))),
            };
            check_env_name(k).map_err(fail)?;
            out.push((k.clone(), value));
        }
        Ok(())
    };
    match v {
        None | Some(serde_json::Value::Null) => {}
        Some(serde_json::Value::Object(obj)) => add(obj)?,
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                add(item.as_object().ok_or_else(|| fail("expected an object of NAME: value pairs".into()))?)?;
            }
        }
        Some(other) => return Err(fail(format!("expected an object of NAME: value pairs, found {}", json_kind(other)))),
    }
    Ok(out)
}
