//! API values (configuration source API): `CodeConfigurationValues` as App Runner's API takes
//! them; any `apprunner.yaml` is ignored.

use super::rules::{check_env_name, check_run_settings, parse_port};
use super::{
    AppConfig, ConfigError, ConfigSource, EnvVar, Result, SecretRef, DEFAULT_PORT, MAX_COMMANDS, MAX_CONFIG_BYTES,
    MAX_ENV, MAX_WARNINGS,
};
use crate::catalog::{closest, RuntimeCatalog};
use crate::shown::cut;

/// Reads API values (`CodeConfigurationValues`): `Runtime`, `BuildCommand`, `StartCommand`,
/// `Port`, `RuntimeEnvironmentVariables`, `RuntimeEnvironmentSecrets`, in `PascalCase` or camelCase.
pub fn from_api(values: &serde_json::Value, catalog: &RuntimeCatalog) -> Result<AppConfig> {
    let fail = api_error;
    // Bounded like a file: every later check is linear in this size.
    let size = serde_json::to_string(values).map_or(usize::MAX, |s| s.len());
    if size > MAX_CONFIG_BYTES {
        return Err(fail(
            "CodeConfigurationValues",
            format!("the values are {size} bytes; at most {MAX_CONFIG_BYTES} are accepted"),
        ));
    }
    let obj = values.as_object().ok_or_else(|| {
        fail("CodeConfigurationValues", "expected a JSON object of Runtime, BuildCommand, StartCommand, Port, …".into())
    })?;
    // Accept the whole CodeConfiguration too, as the API and CloudTrail show it.
    if let Some(inner) = get(obj, "CodeConfigurationValues") {
        return from_api(inner, catalog);
    }
    let warnings = unknown_fields(obj);
    let string = |key: &str| string_field(obj, key);
    let runtime_text = string("Runtime")?
        .ok_or_else(|| fail("Runtime", "required field is missing; e.g. \"Runtime\": \"PYTHON_3\"".into()))?;
    let rt = catalog.lookup(&runtime_text).map_err(|m| fail("Runtime", m.to_string()))?;
    let build = build_commands(obj)?;
    let command = string("StartCommand")?.ok_or_else(|| {
        fail(
            "StartCommand",
            "required field is missing; give the command that starts the service, e.g. \"python server.py\"".into(),
        )
    })?;
    let port = match string("Port")? {
        Some(p) => parse_port(&p).map_err(|m| fail("Port", m.0))?,
        None => DEFAULT_PORT,
    };
    let mut warnings = warnings;
    let run_env = name_values(get(obj, "RuntimeEnvironmentVariables"), "RuntimeEnvironmentVariables", &mut warnings)?
        .into_iter()
        .map(|(name, value)| EnvVar { name, value })
        .collect();
    let secrets = name_values(get(obj, "RuntimeEnvironmentSecrets"), "RuntimeEnvironmentSecrets", &mut warnings)?
        .into_iter()
        .map(|(name, value_from)| SecretRef { name, value_from })
        .collect();
    let mut cfg = AppConfig {
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
    let notes = check_run_settings(&cfg, rt.build_process, catalog).map_err(|(key, m)| fail(api_key(&key), m))?;
    cfg.warnings.extend(notes.into_iter().map(|(key, note)| format!("{}: {note}", api_key(&key))));
    Ok(cfg)
}

/// A problem with the field `key`.
fn api_error(key: &str, message: String) -> ConfigError {
    ConfigError { file: None, mark: None, key: key.to_string(), message }
}

/// The field `key` as a string (a number is taken as its text), or None when it is absent.
fn string_field(obj: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Option<String>> {
    match get(obj, key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(api_error(key, format!("expected a string, found {}", json_kind(other)))),
    }
}

/// `BuildCommand`: one shell command line (A5); a list is taken as several commands. Blank ones
/// are dropped, and none left is a problem: App Runner requires one.
fn build_commands(obj: &serde_json::Map<String, serde_json::Value>) -> Result<Vec<String>> {
    let build = match get(obj, "BuildCommand") {
        Some(serde_json::Value::Array(items)) if items.len() > MAX_COMMANDS => {
            let message = format!("{} commands; at most {MAX_COMMANDS} are accepted", items.len());
            return Err(api_error("BuildCommand", message));
        }
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| api_error("BuildCommand", "expected a string".into()))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => string_field(obj, "BuildCommand")?.into_iter().collect(),
    };
    let build: Vec<String> = build.into_iter().filter(|c| !c.trim().is_empty()).collect();
    if build.is_empty() {
        return Err(api_error(
            "BuildCommand",
            "required field is missing or empty; App Runner requires a build command, e.g. \"pip install -r requirements.txt\"".into(),
        ));
    }
    Ok(build)
}

/// The API's field that a check of the run settings (keyed as in a file) is about.
fn api_key(key: &str) -> &'static str {
    if key.starts_with("run.env") {
        "RuntimeEnvironmentVariables"
    } else if key.starts_with("run.secrets") {
        "RuntimeEnvironmentSecrets"
    } else {
        "StartCommand"
    }
}

/// A warning for each field the API does not have, with the closest one it does.
fn unknown_fields(obj: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    const KNOWN: &[&str] = &[
        "Runtime",
        "BuildCommand",
        "StartCommand",
        "Port",
        "RuntimeEnvironmentVariables",
        "RuntimeEnvironmentSecrets",
        "ConfigurationSource",
    ];
    let mut warnings = Vec::new();
    let unknown: Vec<&String> = obj.keys().filter(|k| !KNOWN.iter().any(|n| n.eq_ignore_ascii_case(k))).collect();
    for k in unknown.iter().take(MAX_WARNINGS) {
        let hint = closest(k, KNOWN).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
        warnings.push(format!("API values: unknown field `{}` is ignored{hint}", cut(k)));
    }
    if unknown.len() > MAX_WARNINGS {
        warnings.push(format!("API values: … and {} more unknown fields", unknown.len() - MAX_WARNINGS));
    }
    warnings
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
fn name_values(v: Option<&serde_json::Value>, key: &str, notes: &mut Vec<String>) -> Result<Vec<(String, String)>> {
    let fail = |message: String| ConfigError { file: None, mark: None, key: key.to_string(), message };
    let mut out = Vec::new();
    let mut add = |obj: &serde_json::Map<String, serde_json::Value>| -> Result<()> {
        for (k, v) in obj {
            if out.len() >= MAX_ENV {
                return Err(fail(format!("more than {MAX_ENV} entries; at most {MAX_ENV} are accepted")));
            }
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => return Err(fail(format!("`{k}` must be a string, found {}", json_kind(other)))),
            };
            if let Some(w) = check_env_name(k).map_err(|m| fail(m.0))? {
                notes.push(format!("{key}: {w}"));
            }
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
        Some(other) => {
            return Err(fail(format!("expected an object of NAME: value pairs, found {}", json_kind(other))))
        }
    }
    Ok(out)
}
