//! `apprunner.yaml` (configuration source REPOSITORY): the YAML tree read key by key, with
//! positions in every error and warnings for what real files get wrong but App Runner ran.

use super::keys::{conflict_marker, key_mark, misplaced, suggest_key, yaml_quoted, KNOWN_KEYS};
use super::rules::{check_env_name, check_run_settings};
use super::{
    AppConfig, ConfigError, ConfigErrors, EnvVar, Result, CONFIG_FILE, MAX_COMMANDS, MAX_CONFIG_BYTES, MAX_ENV,
    MAX_VALUE_BYTES, MAX_WARNINGS,
};
use crate::catalog::RuntimeCatalog;
use crate::shown::cut;
use crate::yaml::{self, Mark, Node, Value};

pub(super) struct FileReader<'a> {
    file: &'a str,
    warnings: Vec<String>,
    /// Warnings past [`MAX_WARNINGS`], counted.
    more_warnings: usize,
    /// Problems found so far; reading goes on past one to find the others (B5).
    problems: Vec<ConfigError>,
}

impl FileReader<'_> {
    /// The value, or None with the problem kept for the report.
    pub(super) fn keep<T>(&mut self, result: Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                if self.problems.len() < MAX_WARNINGS {
                    self.problems.push(e);
                }
                None
            }
        }
    }

    pub(super) fn err(&self, mark: Mark, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: Some(self.file.to_string()),
            mark: Some(mark),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn warn(&mut self, mark: Mark, message: impl std::fmt::Display) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(format!("{}:{mark}: {message}", self.file));
        } else {
            self.more_warnings += 1;
        }
    }

    /// Refuses a value longer than [`MAX_VALUE_BYTES`].
    pub(super) fn bounded(&self, node: &Node, key: &str, text: &str) -> Result<()> {
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
    pub(super) fn mapping<'n>(&mut self, node: &'n Node, path: &str) -> Result<Vec<(&'n str, &'n Node)>> {
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

    pub(super) fn tag_check(&self, node: &Node, key: &str) -> Result<()> {
        match &node.tag {
            Some(tag) => Err(self.err(
                node.mark,
                key,
                format!("the YAML tag `{tag}` has no meaning in {CONFIG_FILE}; write the plain value"),
            )),
            None => Ok(()),
        }
    }

    pub(super) fn scalar(&self, node: &Node, key: &str, expected: &str) -> Result<String> {
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
    pub(super) fn commands(&mut self, node: &Node, key: &str) -> Result<Vec<String>> {
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
                        format!(
                            "YAML read this command as a mapping because of the `: ` in it; quote the whole command, e.g. - {}",
                            yaml_quoted(&guess)
                        ),
                    ));
                }
                Value::Scalar { .. } if item.is_null() => {
                    return Err(self.err(item.mark, &at, "empty command; remove the line or write a command"))
                }
                Value::Scalar { text, .. } => {
                    self.tag_check(item, &at)?;
                    self.bounded(item, &at, text)?;
                    if text.starts_with(['\u{2013}', '\u{2014}']) {
                        self.warn(item.mark, format!("{at} starts with a dash that is not a hyphen (– or —): YAML reads the line as text, not as a list item; it runs as the command `{}`; write `- ` with a hyphen", cut(text)));
                    }
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

    pub(super) fn env_list(&mut self, node: &Node, key: &str) -> Result<Vec<EnvVar>> {
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
            if let Some(w) = check_env_name(&name).map_err(|m| self.err(item.mark, &format!("{at}.name"), m.0))? {
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

    pub(super) fn list<'n>(&self, node: &'n Node, key: &str) -> Result<Vec<&'n Node>> {
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

pub(super) fn field<'n>(entries: &[(&str, &'n Node)], key: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// Reads `apprunner.yaml`. `file` is the name used in messages (its path in the repository).
pub fn from_yaml(text: &str, file: &str, catalog: &RuntimeCatalog) -> std::result::Result<AppConfig, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text).replace("\r\n", "\n");
    let root = document_root(&text, file)?;
    let fail = |mark: Option<Mark>, key: &str, message: String| file_problem(file, mark, key, message);
    let one = |e: ConfigError| ConfigErrors::new(vec![e]);
    let mut r = FileReader { file, warnings: Vec::new(), more_warnings: 0, problems: Vec::new() };
    let top = r.mapping(&root, "").map_err(one)?;
    let missing = |key: &str, hint: &str| fail(Some(root.mark), key, format!("required key is missing; {hint}"));

    let version = field(&top, "version").ok_or_else(|| missing("version", "add `version: 1.0`"));
    let version = version.and_then(|n| Ok((n, r.scalar(n, "version", "the configuration version 1.0")?)));
    if let Some((node, version)) = r.keep(version) {
        if !matches!(version.trim(), "1.0" | "1") {
            let message = format!(
                "version `{}` is not a configuration-file version this worker knows; it is read as 1.0",
                cut(&version)
            );
            r.warn(node.mark, message);
        }
    }

    let runtime_node = field(&top, "runtime").ok_or_else(|| match misplaced(&root, "runtime") {
        Some((section, mark)) => r.err(
            mark,
            "runtime",
            format!("`runtime` is under `{section}:`; it belongs at the top level, beside `version` (no indentation)"),
        ),
        None => missing("runtime", "add e.g. `runtime: python3`"),
    });
    let rt = runtime_node.and_then(|n| {
        let text = r.scalar(n, "runtime", "a runtime name")?;
        catalog.lookup(&text).map_err(|m| r.err(n.mark, "runtime", m.to_string()))
    });
    let rt = r.keep(rt);

    let build_node = field(&top, "build")
        .ok_or_else(|| missing("build", "add `build:` with `commands:` and a `build:` list of commands"));
    let build = r.keep(build_node).and_then(|n| r.build_section(n));
    let run_node = field(&top, "run").ok_or_else(|| missing("run", "add `run:` with `command:`"));
    let run_node = r.keep(run_node);
    let cfg = run_node.and_then(|n| r.run_section(n, rt, catalog));
    let (Some(rt), Some(build), Some(mut cfg), Some(run_node), true) =
        (rt, build, cfg, run_node, r.problems.is_empty())
    else {
        return Err(ConfigErrors::new(r.problems));
    };
    cfg.runtime.clone_from(&rt.name);
    (cfg.pre_build, cfg.build, cfg.post_build, cfg.build_env) =
        (build.pre_build, build.build, build.post_build, build.env);
    let notes = check_run_settings(&cfg, rt.build_process, catalog).map_err(|(key, m)| {
        let mark = key_mark(&root, &key).unwrap_or(run_node.mark);
        one(r.err(mark, &key, m))
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

/// A problem at `mark` of the file, under `key`.
fn file_problem(file: &str, mark: Option<Mark>, key: &str, message: String) -> ConfigError {
    ConfigError { file: Some(file.to_string()), mark, key: key.to_string(), message }
}

/// The file's top mapping, or the one problem that stops it being read: too big, an unresolved
/// merge conflict, not YAML, empty, or not a mapping.
fn document_root(text: &str, file: &str) -> std::result::Result<Node, ConfigErrors> {
    let fail = |mark: Option<Mark>, key: &str, message: String| file_problem(file, mark, key, message);
    let one = |e: ConfigError| ConfigErrors::new(vec![e]);
    if text.len() > MAX_CONFIG_BYTES {
        let message = format!("the file is {} bytes; {CONFIG_FILE} may have at most {MAX_CONFIG_BYTES}", text.len());
        return Err(one(fail(None, "", message)));
    }
    if let Some((n, marker)) = conflict_marker(text) {
        return Err(one(fail(
            Some(Mark { line: n, col: 1 }),
            "",
            format!("the file has an unresolved merge conflict (`{marker}`); resolve it, keep one side, and commit"),
        )));
    }
    let root = yaml::parse(text)
        .map_err(|e| one(fail(Some(e.mark), "", format!("not valid YAML: {}", e.message))))?
        .ok_or_else(|| {
            one(fail(
                None,
                "",
                "the file is empty; it needs at least version, runtime, build.commands.build and run.command".into(),
            ))
        })?;
    if !matches!(root.value, Value::Map(_)) {
        return Err(one(fail(
            Some(root.mark),
            "",
            format!("expected a mapping of version, runtime, build and run at the top, found {}", root.kind()),
        )));
    }
    Ok(root)
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
