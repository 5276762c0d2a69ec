//! The `build:` and `run:` sections of `apprunner.yaml`, read key by key.

use super::file::{field, FileReader};
use super::rules::parse_port;
use super::{AppConfig, ConfigSource, EnvVar, Result, SecretRef, DEFAULT_PORT};
use crate::catalog::{Runtime, RuntimeCatalog};
use crate::yaml::{Node, Value};

/// The build phases' commands and the build environment.
pub(super) struct BuildSection {
    pub(super) pre_build: Vec<String>,
    pub(super) build: Vec<String>,
    pub(super) post_build: Vec<String>,
    pub(super) env: Vec<EnvVar>,
}

impl FileReader<'_> {
    /// `build:`: the commands of each phase and `env`. Problems are kept, each part read.
    pub(super) fn build_section(&mut self, build_node: &Node) -> Option<BuildSection> {
        let r = self;
        let build = r.mapping(build_node, "build");
        let build = r.keep(build)?;
        let commands_node = field(&build, "commands").ok_or_else(|| {
            r.err(build_node.mark, "build.commands", "required key is missing; add `commands:` with a `build:` list")
        });
        let commands_node = r.keep(commands_node);
        let env = match field(&build, "env") {
            Some(n) => {
                let env = r.env_list(n, "build.env");
                r.keep(env)
            }
            None => Some(Vec::new()),
        };
        let commands_node = commands_node?;
        let (mut pre_build, mut build_cmds, mut post_build) = (Some(Vec::new()), Some(Vec::new()), Some(Vec::new()));
        if let Value::Seq(_) = &commands_node.value {
            r.warn(
                commands_node.mark,
                "build.commands is a plain list; it is taken as the build phase (canonical form: `commands:` then `build:` with the list)",
            );
            let c = r.commands(commands_node, "build.commands");
            build_cmds = r.keep(c);
        } else {
            let phases = r.mapping(commands_node, "build.commands");
            let phases = r.keep(phases)?;
            for (key, slot) in
                [("pre-build", &mut pre_build), ("build", &mut build_cmds), ("post-build", &mut post_build)]
            {
                if let Some(n) = field(&phases, key) {
                    let c = r.commands(n, &format!("build.commands.{key}"));
                    *slot = r.keep(c);
                }
            }
        }
        if build_cmds.as_ref().is_some_and(Vec::is_empty) {
            let e = r.err(
                commands_node.mark,
                "build.commands.build",
                "at least one build command is required (App Runner requires build commands; `- echo nothing to build` will do)",
            );
            r.keep::<()>(Err(e));
        }
        Some(BuildSection { pre_build: pre_build?, build: build_cmds?, post_build: post_build?, env: env? })
    }

    /// `run:` of runtime `rt` (None: the runtime is wrong, its version is not checked); the
    /// build section's fields are left empty for the caller. Problems are kept, each key read.
    pub(super) fn run_section(
        &mut self,
        run_node: &Node,
        rt: Option<&Runtime>,
        catalog: &RuntimeCatalog,
    ) -> Option<AppConfig> {
        let r = self;
        let run = r.mapping(run_node, "run");
        let run = r.keep(run)?;
        let runtime_version = match field(&run, "runtime-version") {
            Some(n) if !n.is_null() => {
                let lock =
                    r.scalar(n, "run.runtime-version", "a version such as 3.8 or 3.8.16").and_then(|lock| match rt {
                        Some(rt) => catalog
                            .resolve(rt, Some(&lock))
                            .map(|_| lock)
                            .map_err(|m| r.err(n.mark, "run.runtime-version", m.to_string())),
                        None => Ok(lock),
                    });
                Some(r.keep(lock))
            }
            _ => Some(None),
        };
        let pre_run = match field(&run, "pre-run") {
            Some(n) => {
                let c = r.commands(n, "run.pre-run");
                r.keep(c)
            }
            None => Some(Vec::new()),
        };
        let command = r.command(run_node, &run);
        let command = r.keep(command);
        let network = r.network(&run);
        let network = r.keep(network);
        let run_env = match field(&run, "env") {
            Some(n) => {
                let env = r.env_list(n, "run.env");
                r.keep(env)
            }
            None => Some(Vec::new()),
        };
        let secrets = r.secrets(&run);
        let secrets = r.keep(secrets);
        let (port, port_env) = network?;
        Some(AppConfig {
            source: ConfigSource::Repository,
            runtime: String::new(),
            runtime_version: runtime_version?,
            pre_build: Vec::new(),
            build: Vec::new(),
            post_build: Vec::new(),
            build_env: Vec::new(),
            pre_run: pre_run?,
            command: command?,
            port,
            port_env,
            run_env: run_env?,
            secrets: secrets?,
            warnings: Vec::new(),
        })
    }

    /// `run.command`: one command.
    fn command(&mut self, run_node: &Node, run: &[(&str, &Node)]) -> Result<String> {
        let r = self;
        let command_node = field(run, "command").ok_or_else(|| {
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
        r.scalar(command_node, "run.command", "the start command")
    }

    /// `run.network`: the port and its alias variable.
    fn network(&mut self, run: &[(&str, &Node)]) -> Result<(u16, Option<String>)> {
        let r = self;
        let (mut port, mut port_env) = (DEFAULT_PORT, None);
        if let Some(n) = field(run, "network") {
            let net = r.mapping(n, "run.network")?;
            if let Some(p) = field(&net, "port") {
                let text = r.scalar(p, "run.network.port", "a port number")?;
                port = parse_port(&text).map_err(|m| r.err(p.mark, "run.network.port", m.0))?;
            }
            if let Some(e) = field(&net, "env") {
                port_env = Some(r.scalar(e, "run.network.env", "an environment variable name")?);
            }
        }
        Ok((port, port_env))
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
