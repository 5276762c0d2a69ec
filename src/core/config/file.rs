//! `apprunner.yaml` (configuration source REPOSITORY): the YAML tree read key by key, with
//! positions in every error and warnings for what real files get wrong but App Runner ran.

use super::keys::{key_mark, suggest_key, KNOWN_KEYS};
use super::rules::{check_env_name, check_run_settings, parse_port};
use super::{
    AppConfig, ConfigError, ConfigSource, EnvVar, Result, SecretRef, CONFIG_FILE, DEFAULT_PORT, MAX_COMMANDS,
    MAX_CONFIG_BYTES, MAX_ENV, MAX_VALUE_BYTES, MAX_WARNINGS,
};
use crate::core::catalog::{Runtime, RuntimeCatalog};
use crate::core::shown::cut;
use crate::core::yaml::{self, Mark, Node, Value};

struct FileReader<'a> {
    file: &'a str,
    warnings: Vec<String>,
    /// Warnings past [`MAX_WARNINGS`], counted.
    more_warnings: usize,
}

impl FileReader<'_> {
    fn err(&self, mark: Mark, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(self.file.to_string()),
            mark: Some(mark),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn warn(&mut self, mark: Mark, message: impl std::fmt::Display) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(format!("{}:{mark}: {message}", self.file));
        } else {
            self.more_warnings += 1;
        }
    }

    /// Refuses a value longer than [`MAX_VALUE_BYTES`].
    fn bounded(&self, node: &Node, key: &str, text: &str) -> Result<()> {
        if text.len() > MAX_VALUE_BYTES {
            return Err(self.err(
                node.mark,
                key,
                format!("the value is {} bytes; at most {MAX_VALUE_BYTES} are accepted", text.len()),
            ));
        }
        Ok(())
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
        let known = KNOWN_KEYS.iter().find(|(p, _)| *p == path).map_or(&[][..], |(_, k)| *k);
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.as_scalar() else {
                return Err(self.err(k.mark, path, "a key must be a plain name"));
            };
            if known.contains(&key) {
                out.push((key, v));
            } else if self.warnings.len() >= MAX_WARNINGS {
                self.more_warnings += 1;
            } else {
                let key = cut(key);
                let shown =
                    if path.is_empty() { key.clone() } else { format!("{}.{key}", path.replace("[]", "[…]")) };
                let hint = suggest_key(path, &key).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
                self.warn(k.mark, format!("unknown key `{shown}` is ignored{hint}"));
            }
        }
        Ok(out)
    }

    fn tag_check(&self, node: &Node, key: &str) -> Result<()> {
        match &node.tag {
            Some(tag) => Err(self.err(
                node.mark,
                key,
                format!("the YAML tag `{tag}` has no meaning in {CONFIG_FILE}; write the plain value"),
            )),
            None => Ok(()),
        }
    }

    fn scalar(&self, node: &Node, key: &str, expected: &str) -> Result<String> {
        self.tag_check(node, key)?;
        match node.as_scalar() {
            Some(text) if !node.is_null() => {
                self.bounded(node, key, text)?;
                Ok(text.to_string())
            }
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
        if items.len() > MAX_COMMANDS {
            let n = items.len();
            return Err(self.err(node.mark, key, format!("{n} commands; a phase may have at most {MAX_COMMANDS}")));
        }
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let at = format!("{key}[{i}]");
            match &item.value {
                Value::Map(entries) if entries.len() == 1 && entries[0].0.as_scalar().is_some() => {
                    let (k, v) = &entries[0];
                    let guess = cut(&format!("{}: {}", k.as_scalar().unwrap_or(""), v.as_scalar().unwrap_or("…")));
                    return Err(self.err(
                        item.mark,
                        &at,
                        format!("YAML read this command as a mapping because of the `: ` in it; quote the whole command, e.g. - \"{guess}\""),
                    ));
                }
                Value::Scalar { .. } if item.is_null() => {
                    return Err(self.err(item.mark, &at, "empty command; remove the line or write a command"))
                }
                Value::Scalar { text, .. } => {
                    self.tag_check(item, &at)?;
                    self.bounded(item, &at, text)?;
                    out.push(text.clone());
                }
                _ => {
                    return Err(self.err(
                        item.mark,
                        &at,
                        format!("expected a command (a string), found {}", item.kind()),
                    ))
                }
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
            let name = field(&entries, "name").ok_or_else(|| {
                self.err(item.mark, &at, "missing `name`; each entry is `- name: NAME` with `value: VALUE`")
            })?;
            let name = self.scalar(name, &format!("{at}.name"), "a variable name")?;
            if let Some(w) = check_env_name(&name).map_err(|m| self.err(item.mark, &format!("{at}.name"), m))? {
                self.warn(item.mark, format!("{at}.name: {w}"));
            }
            let value = field(&entries, "value").ok_or_else(|| {
                self.err(item.mark, &at, format!("`{name}` has no `value`; write `value: \"\"` for an empty one"))
            })?;
            self.tag_check(value, &format!("{at}.value"))?;
            let value = match value.as_scalar() {
                Some(_) if value.is_null() => String::new(),
                Some(text) => {
                    self.bounded(value, &format!("{at}.value"), text)?;
                    text.to_string()
                }
                None => {
                    return Err(self.err(
                        value.mark,
                        &format!("{at}.value"),
                        format!("expected a string, found {}", value.kind()),
                    ))
                }
            };
            out.push(EnvVar { name, value });
        }
        Ok(out)
    }

    fn list<'n>(&self, node: &'n Node, key: &str) -> Result<Vec<&'n Node>> {
        self.tag_check(node, key)?;
        match &node.value {
            Value::Seq(items) if items.len() > MAX_ENV => {
                let n = items.len();
                Err(self.err(node.mark, key, format!("{n} entries; a list may have at most {MAX_ENV}")))
            }
            Value::Seq(items) => Ok(items.iter().collect()),
            _ if node.is_null() => Ok(Vec::new()),
            _ => Err(self.err(node.mark, key, format!("expected a list, found {}", node.kind()))),
        }
    }
}

fn field<'n>(entries: &[(&str, &'n Node)], key: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The build phases' commands and the build environment.
struct BuildSection {
    pre_build: Vec<String>,
    build: Vec<String>,
    post_build: Vec<String>,
    env: Vec<EnvVar>,
}

impl FileReader<'_> {
    /// `build:`: the commands of each phase and `env`.
    fn build_section(&mut self, build_node: &Node) -> Result<BuildSection> {
        let r = self;
        let build = r.mapping(build_node, "build")?;
        let commands_node = field(&build, "commands").ok_or_else(|| {
            r.err(build_node.mark, "build.commands", "required key is missing; add `commands:` with a `build:` list")
        })?;
        let (mut pre_build, mut build_cmds, mut post_build) = (Vec::new(), Vec::new(), Vec::new());
        if let Value::Seq(_) = &commands_node.value {
            r.warn(
                commands_node.mark,
                "build.commands is a plain list; it is taken as the build phase (canonical form: `commands:` then `build:` with the list)",
            );
            build_cmds = r.commands(commands_node, "build.commands")?;
        } else {
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
        Ok(BuildSection { pre_build, build: build_cmds, post_build, env: build_env })
    }

    /// `run:`, completing the configuration of runtime `rt` whose build section is `b`.
    fn run_section(
        &mut self,
        run_node: &Node,
        rt: &Runtime,
        catalog: &RuntimeCatalog,
        b: BuildSection,
    ) -> Result<AppConfig> {
        let r = self;
        let run = r.mapping(run_node, "run")?;
        let runtime_version = match field(&run, "runtime-version") {
            Some(n) if !n.is_null() => Some(r.scalar(n, "run.runtime-version", "a version such as 3.8 or 3.8.16")?),
            _ => None,
        };
        if let Some(lock) = &runtime_version {
            let n = field(&run, "runtime-version").expect("just read");
            catalog.resolve(rt, Some(lock)).map_err(|m| r.err(n.mark, "run.runtime-version", m.to_string()))?;
        }
        let pre_run = match field(&run, "pre-run") {
            Some(n) => r.commands(n, "run.pre-run")?,
            None => Vec::new(),
        };
        let command_node = field(&run, "command").ok_or_else(|| {
            r.err(
                run_node.mark,
                "run.command",
                "required key is missing; add the command that starts the service, e.g. `command: python app.py`",
            )
        })?;
        if let Value::Seq(_) = command_node.value {
            return Err(r.err(
                command_node.mark,
                "run.command",
                "expected a single command (a string), found a list; join the commands with && or use a start script",
            ));
        }
        if let Value::Map(_) = command_node.value {
            return Err(r.err(
                command_node.mark,
                "run.command",
                "YAML read the command as a mapping because of the `: ` in it; quote the whole command",
            ));
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
        let secrets = r.secrets(&run)?;
        Ok(AppConfig {
            source: ConfigSource::Repository,
            runtime: rt.name.clone(),
            runtime_version,
            pre_build: b.pre_build,
            build: b.build,
            post_build: b.post_build,
            build_env: b.env,
            pre_run,
            command,
            port,
            port_env,
            run_env,
            secrets,
            warnings: Vec::new(),
        })
    }

    /// `run.secrets`: names and their `value-from` references.
    fn secrets(&mut self, run: &[(&str, &Node)]) -> Result<Vec<SecretRef>> {
        let r = self;
        let mut secrets = Vec::new();
        if let Some(n) = field(run, "secrets") {
            for (i, item) in r.list(n, "run.secrets")?.into_iter().enumerate() {
                let at = format!("run.secrets[{i}]");
                let entries = r.mapping(item, "run.secrets[]")?;
                let name = field(&entries, "name").ok_or_else(|| {
                    r.err(item.mark, &at, "missing `name`; each entry is `- name: NAME` with `value-from: ARN`")
                })?;
                let name = r.scalar(name, &format!("{at}.name"), "a variable name")?;
                let from = field(&entries, "value-from").ok_or_else(|| {
                    r.err(
                        item.mark,
                        &at,
                        format!(
                            "`{name}` has no `value-from`; give a Secrets Manager ARN, an SSM parameter ARN or name"
                        ),
                    )
                })?;
                let value_from = r.scalar(from, &format!("{at}.value-from"), "a secret reference")?;
                secrets.push(SecretRef { name, value_from });
            }
        }
        Ok(secrets)
    }
}

/// Reads `apprunner.yaml`. `file` is the name used in messages (its path in the repository).
pub fn from_yaml(text: &str, file: &str, catalog: &RuntimeCatalog) -> Result<AppConfig> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError {
            file: Some(file.to_string()),
            mark: None,
            key: String::new(),
            message: format!("the file is {} bytes; {CONFIG_FILE} may have at most {MAX_CONFIG_BYTES}", text.len()),
        });
    }
    let mut r = FileReader { file, warnings: Vec::new(), more_warnings: 0 };
    let fail = |mark: Option<Mark>, key: &str, message: String| ConfigError {
        file: Some(file.to_string()),
        mark,
        key: key.to_string(),
        message,
    };
    let root = yaml::parse(&text)
        .map_err(|e| fail(Some(e.mark), "", format!("not valid YAML: {}", e.message)))?
        .ok_or_else(|| {
            fail(
                None,
                "",
                "the file is empty; it needs at least version, runtime, build.commands.build and run.command".into(),
            )
        })?;
    if !matches!(root.value, Value::Map(_)) {
        return Err(fail(
            Some(root.mark),
            "",
            format!("expected a mapping of version, runtime, build and run at the top, found {}", root.kind()),
        ));
    }
    let top = r.mapping(&root, "")?;
    let missing = |key: &str, hint: &str| fail(Some(root.mark), key, format!("required key is missing; {hint}"));

    let version_node = field(&top, "version").ok_or_else(|| missing("version", "add `version: 1.0`"))?;
    let version = r.scalar(version_node, "version", "the configuration version 1.0")?;
    if !matches!(version.trim(), "1.0" | "1") {
        r.warn(
            version_node.mark,
            format!("version `{version}` is not a configuration-file version this worker knows; it is read as 1.0"),
        );
    }

    let runtime_node = field(&top, "runtime").ok_or_else(|| missing("runtime", "add e.g. `runtime: python3`"))?;
    let runtime_text = r.scalar(runtime_node, "runtime", "a runtime name")?;
    let rt = catalog.lookup(&runtime_text).map_err(|m| r.err(runtime_node.mark, "runtime", m.to_string()))?;

    let build_node = field(&top, "build")
        .ok_or_else(|| missing("build", "add `build:` with `commands:` and a `build:` list of commands"))?;
    let build = r.build_section(build_node)?;
    let run_node = field(&top, "run").ok_or_else(|| missing("run", "add `run:` with `command:`"))?;
    let mut cfg = r.run_section(run_node, rt, catalog, build)?;
    let notes = check_run_settings(&cfg, rt.build_process, catalog).map_err(|(key, m)| {
        let mark = key_mark(&root, &key).unwrap_or(run_node.mark);
        r.err(mark, &key, m)
    })?;
    for (key, note) in notes {
        let mark = key_mark(&root, &key).unwrap_or(run_node.mark);
        r.warn(mark, format!("{key}: {note}"));
    }
    dedupe_env_warnings(&mut r.warnings, &cfg.build_env, "build.env", file);
    dedupe_env_warnings(&mut r.warnings, &cfg.run_env, "run.env", file);
    if r.more_warnings > 0 {
        r.warnings.push(format!("{file}: … and {} more warnings like these", r.more_warnings));
    }
    cfg.warnings = r.warnings;
    Ok(cfg)
}

/// A warning for each entry whose name a later entry sets again.
fn dedupe_env_warnings(warnings: &mut Vec<String>, env: &[EnvVar], key: &str, file: &str) {
    let mut later = std::collections::HashSet::new();
    let mut repeated: Vec<&str> = Vec::new();
    for e in env.iter().rev() {
        if !later.insert(e.name.as_str()) {
            repeated.push(&e.name);
        }
    }
    for name in repeated.into_iter().rev().take(MAX_WARNINGS) {
        warnings.push(format!("{file}: {key} sets `{}` more than once; the last value wins", cut(name)));
    }
}
