//! Rules both configuration sources share: names, ports, secret references, and the checks
//! made once a configuration is read (SPEC.md §2.4-2.6, DECISIONS.md).

use super::AppConfig;
use crate::core::catalog::{BuildProcess, RuntimeCatalog};
use crate::core::shown::cut;

pub(super) fn check_env_name(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a usable environment variable name; use letters, digits and `_` (not starting with a digit)",
            cut(name)
        ))
    }
}

pub(super) fn parse_port(text: &str) -> std::result::Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(u16::try_from(p).unwrap_or(u16::MAX)),
        _ => Err(format!("`{}` is not a port number; expected an integer from 1 to 65535", cut(text))),
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
        return if ok { Ok(()) } else { Err(format!("`{}` is not a valid reference; {ACCEPTED}", cut(v))) };
    }
    let ok = !v.is_empty() && v.len() <= 2048 && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not a valid reference; {ACCEPTED}", cut(v)))
    }
}

/// Rules shared by both configuration sources, checked once everything is read.
pub(super) fn check_run_settings(
    cfg: &AppConfig,
    process: BuildProcess,
    catalog: &RuntimeCatalog,
) -> std::result::Result<(), (String, String)> {
    for (i, e) in cfg.run_env.iter().enumerate() {
        if e.name == "PORT" {
            return Err((
                format!("run.env[{i}].name"),
                "`PORT` is reserved: App Runner sets it to the port; set run.network.port instead".into(),
            ));
        }
    }
    for (i, s) in cfg.secrets.iter().enumerate() {
        if s.name == "PORT" {
            return Err((
                format!("run.secrets[{i}].name"),
                "`PORT` is reserved: App Runner sets it to the port; set run.network.port instead".into(),
            ));
        }
        check_env_name(&s.name).map_err(|m| (format!("run.secrets[{i}].name"), m))?;
        check_secret_reference(&s.value_from).map_err(|m| (format!("run.secrets[{i}].value-from"), m))?;
        if cfg.run_env.iter().any(|e| e.name == s.name) {
            return Err((
                format!("run.secrets[{i}].name"),
                format!("`{}` is set both in run.env and run.secrets; keep one", s.name),
            ));
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
        return Err((
            "run.command".into(),
            "the start command is empty; give the command that starts the web service".into(),
        ));
    }
    Ok(())
}
