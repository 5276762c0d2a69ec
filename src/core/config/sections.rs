//! The `build:` and `run:` sections of `apprunner.yaml`, read key by key.

use super::file::{field, FileReader};
use super::rules::parse_port;
use super::{AppConfig, ConfigSource, EnvVar, Result, SecretRef, DEFAULT_PORT};
use crate::core::catalog::{Runtime, RuntimeCatalog};
use crate::core::yaml::{Node, Value};

/// The build phases' commands and the build environment.
pub(super) struct BuildSection {
    pre_build: Vec<String>,
    build: Vec<String>,
    post_build: Vec<String>,
    env: Vec<EnvVar>,
}

impl FileReader<'_> {
    /// `build:`: the commands of each phase and `env`.
    pub(super) fn build_section(&mut self, build_node: &Node) -> Result<BuildSection> {
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
    pub(super) fn run_section(
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
