//! Rules both configuration sources share: names, ports, secret references, and the checks
//! made once a configuration is read (App Runner's configuration file reference; docs/configuration.md).

use super::AppConfig;
use crate::catalog::{BuildProcess, RuntimeCatalog};
use crate::error::Invalid;
use crate::shown::cut;

/// An environment variable or secret name, taken as App Runner takes it (docs/configuration.md B4):
/// any non-empty name without `=` or NUL. One a shell cannot use (`myapp/env`) is accepted
/// with the warning returned.
pub(super) fn check_env_name(name: &str) -> std::result::Result<Option<String>, Invalid> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(Invalid(format!(
            "`{}` is not an environment variable name; a name is not empty and has no `=` or NUL",
            cut(name)
        )));
    }
    // `.` and `-` are common (the guide's own `my-secret`) and pass silently, as they always did.
    let shell_usable = !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    Ok((!shell_usable).then(|| {
        format!(
            "`{}` is not a name a shell can use (`$NAME` needs letters, digits and `_`); the app can still read it from its environment",
            cut(name)
        )
    }))
}

pub(super) fn parse_port(text: &str) -> std::result::Result<u16, Invalid> {
    match text.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(u16::try_from(p).unwrap_or(u16::MAX)),
        _ => Err(Invalid(format!("`{}` is not a port number; expected an integer from 1 to 65535", cut(text)))),
    }
}

/// `value-from` is a Secrets Manager ARN, an SSM parameter ARN, or a bare SSM parameter name, as
/// App Runner's secrets reference takes them.
fn check_secret_reference(v: &str) -> std::result::Result<(), Invalid> {
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
        return if ok { Ok(()) } else { Err(Invalid(format!("`{}` is not a valid reference; {ACCEPTED}", cut(v)))) };
    }
    let ok = !v.is_empty() && v.len() <= 2048 && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Invalid(format!("`{}` is not a valid reference; {ACCEPTED}", cut(v))))
    }
}

/// A finding about one key: the key's path (`run.env[2].name`) and what is said of it.
pub(super) type KeyNote = (String, String);

/// Rules shared by both configuration sources, checked once everything is read: the first
/// problem, or the warnings.
pub(super) fn check_run_settings(
    cfg: &AppConfig,
    process: BuildProcess,
    catalog: &RuntimeCatalog,
) -> std::result::Result<Vec<KeyNote>, KeyNote> {
    let mut warnings = Vec::new();
    // B3: App Runner accepted PORT among a service's variables; the image's PORT is the port.
    let port = cfg.port.to_string();
    let port_note = |value: Option<&str>| match value {
        Some(v) if v == port => {
            format!("`PORT` is set by App Runner to the port ({port}); this line changes nothing and can go")
        }
        Some(v) => format!(
            "`PORT` is set by App Runner to the port ({port}), not to `{}`; to listen elsewhere set run.network.port",
            cut(v)
        ),
        None => format!("`PORT` is set by App Runner to the port ({port}); the secret is not used for it"),
    };
    for (i, e) in cfg.run_env.iter().enumerate() {
        if e.name == "PORT" {
            warnings.push((format!("run.env[{i}].name"), port_note(Some(&e.value))));
        }
    }
    let run_env_names: std::collections::HashSet<&str> = cfg.run_env.iter().map(|e| e.name.as_str()).collect();
    for (i, s) in cfg.secrets.iter().enumerate() {
        if s.name == "PORT" {
            warnings.push((format!("run.secrets[{i}].name"), port_note(None)));
        }
        if let Some(w) = check_env_name(&s.name).map_err(|m| (format!("run.secrets[{i}].name"), m.0))? {
            warnings.push((format!("run.secrets[{i}].name"), w));
        }
        check_secret_reference(&s.value_from).map_err(|m| (format!("run.secrets[{i}].value-from"), m.0))?;
        if run_env_names.contains(s.name.as_str()) {
            return Err((
                format!("run.secrets[{i}].name"),
                format!("`{}` is set both in run.env and run.secrets; keep one", s.name),
            ));
        }
    }
    if let Some(alias) = &cfg.port_env {
        if let Some(w) = check_env_name(alias).map_err(|m| ("run.network.env".to_string(), m.0))? {
            warnings.push(("run.network.env".to_string(), w));
        }
        // An alias named PORT is PORT itself: B3's warning above covers a PORT line.
        let set_elsewhere =
            cfg.run_env.iter().any(|e| &e.name == alias) || cfg.secrets.iter().any(|s| &s.name == alias);
        if alias != "PORT" && set_elsewhere {
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
        return Err((
            "run.command".into(),
            "the start command is empty; give the command that starts the web service".into(),
        ));
    }
    Ok(warnings)
}
