//! Stand-in runtime images made when a build first needs them: `docker/runtime-images` run for
//! one runtime version, with the local Docker Engine, pushing to the build's registry.
//!
//! The script holds a lock per image (and per shared content) while it builds, and looks at the
//! registry again once it has the lock: two builds that need one image, in this process, another
//! worker or a CLI on this machine, wait for one build of it, and the second finds it done. A
//! holder that dies releases its lock with its process, so nobody is wedged. Its progress lines
//! go to the deployment log as they come.

use crate::error::{Classified, ErrorClass};
use crate::log::DeploymentLog;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::io::AsyncBufReadExt;

/// Runs the recipes of `docker/runtime-images` for a runtime image a build lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandInBuilder {
    /// The `docker/runtime-images` script.
    pub script: PathBuf,
}

/// What the script prints to say how far it is.
const PROGRESS: &str = "[runtime-images] ";
/// Lines of the script's output kept for an error message.
const TAIL: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StandInError {
    /// The recipe cannot get this version here (the npm registry lacks it) or there is none.
    #[error(
        "no stand-in for {runtime} {version} can be made here ({detail}); push that runtime's images under these names"
    )]
    CannotMake { runtime: String, version: String, detail: String },
    /// Docker, apt or the npm registry failed mid-way: worth another attempt.
    #[error("building the stand-in runtime images for {runtime} {version} failed: {detail}")]
    Failed { runtime: String, version: String, detail: String },
}

impl Classified for StandInError {
    fn class(&self) -> ErrorClass {
        match self {
            StandInError::CannotMake { .. } => ErrorClass::User,
            StandInError::Failed { .. } => ErrorClass::Transient,
        }
    }
}
crate::error::classified_into_build_error!(StandInError);

impl StandInBuilder {
    /// The script of the checkout this binary was compiled from, if it is still there: what a
    /// binary built by `docker/quickstart` or `cargo test` uses.
    pub fn from_checkout() -> Option<Self> {
        Self::at(Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/runtime-images"))
    }

    /// The script at `script`, if it is a file.
    pub fn at(script: PathBuf) -> Option<Self> {
        script.is_file().then_some(Self { script })
    }

    /// Builds and pushes the build and run images of `runtime` `version` to `registry` (waiting
    /// for another build of them if one runs), since `missing` is not there; says what it does
    /// in `log`.
    pub async fn build(
        &self,
        missing: &str,
        registry: &str,
        runtime: &str,
        version: &str,
        log: &DeploymentLog,
    ) -> Result<(), StandInError> {
        log.apprunner(format!(
            "{missing} is not in the registry yet: building {runtime} {version}'s stand-in runtime images from their recipe first."
        ));
        let began = Instant::now();
        let failed = |detail: String| StandInError::Failed {
            runtime: runtime.to_string(),
            version: version.to_string(),
            detail,
        };
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(&self.script)
            .arg(format!("{runtime}={version}"))
            .env("APPRUNNER_RUNTIME_REGISTRY", registry)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            // Its own group: a build dropped at its time limit ends the docker builds too. Their
            // locks go with them.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| failed(format!("cannot run {}: {e}", self.script.display())))?;
        let mut group = super::process::ProcessGroup(child.id());
        let mut tail: Vec<String> = Vec::new();
        // The recipe's reason when it cannot get this version, said on a line of its own.
        let cannot = format!("cannot make {runtime} {version}: ");
        let mut reason = None;
        if let Some(stderr) = child.stderr.take() {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(progress) = line.strip_prefix(PROGRESS) {
                    log.apprunner(format!("Runtime images: {}", crate::core::shown::cut(progress)));
                    if let Some(why) = progress.strip_prefix(&cannot) {
                        reason = Some(why.to_string());
                    }
                }
                tail.push(line);
                if tail.len() > TAIL {
                    tail.remove(0);
                }
            }
        }
        let status = child.wait().await.map_err(|e| failed(format!("waiting for {}: {e}", self.script.display())))?;
        group.0 = None;
        let detail = || {
            let lines: Vec<&str> =
                tail.iter().map(|l| l.strip_prefix(PROGRESS).unwrap_or(l).trim()).filter(|l| !l.is_empty()).collect();
            lines.join("; ")
        };
        match status.code() {
            Some(0) => {
                log.apprunner(format!(
                    "Runtime images of {runtime} {version} ready at {registry} after {:.1}s.",
                    began.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            Some(3) => Err(StandInError::CannotMake {
                runtime: runtime.to_string(),
                version: version.to_string(),
                detail: reason.unwrap_or_else(detail),
            }),
            _ => Err(failed(format!("{} ({status})", detail()))),
        }
    }
}

/// `APPRUNNER_RUNTIME_REGISTRY=<registry> <script> <runtime>=<version>`.
pub fn command_line(script: &str, registry: &str, runtime: &str, version: &str) -> String {
    format!("APPRUNNER_RUNTIME_REGISTRY={registry} {script} {runtime}={version}")
}

/// What to do about a missing image of `runtime` `version` at `registry`, in one clause.
pub fn remedy(
    runtime: &crate::core::catalog::Runtime,
    version: &str,
    registry: &str,
    builder: Option<&StandInBuilder>,
) -> String {
    if runtime.stand_in.is_none() {
        return format!(
            "no stand-in recipe can build {} here; push that runtime's image under this name",
            runtime.name
        );
    }
    let script = builder.map_or_else(|| "docker/runtime-images".to_string(), |b| b.script.display().to_string());
    format!(
        "make it with `{}`, let builds make it (--build-runtime-images on), or push that runtime's image under this name",
        command_line(&script, registry, &runtime.name, version)
    )
}

/// Where a build's runtime images are, and what makes one that is missing.
#[derive(Clone, Copy)]
pub struct RuntimeImages<'a> {
    /// The registry host that holds them.
    pub host: &'a str,
    /// None: a missing image is an error naming it.
    pub builder: Option<&'a StandInBuilder>,
    /// Where the builder says what it does.
    pub log: &'a DeploymentLog,
}
