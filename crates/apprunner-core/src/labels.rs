//! The labels the worker writes on every image it builds, and reads back to recognise its own
//! work (a redelivered job whose image already exists). One list, so writer and reader agree.

pub const RUNTIME: &str = "dev.apprunner-build.runtime";
pub const RUNTIME_VERSION: &str = "dev.apprunner-build.runtime-version";
pub const BUILD_PROCESS: &str = "dev.apprunner-build.build-process";
pub const OPERATION_ID: &str = "dev.apprunner-build.operation-id";
pub const SOURCE_DIRECTORY: &str = "dev.apprunner-build.source-directory";
/// `REPOSITORY` (apprunner.yaml) or `API` (the build settings given with the job).
pub const CONFIGURATION_SOURCE: &str = "dev.apprunner-build.configuration-source";
pub const OCI_SOURCE: &str = "org.opencontainers.image.source";
pub const OCI_REVISION: &str = "org.opencontainers.image.revision";
pub const OCI_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const OCI_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// The stand-in run image's own title and description describe it, not the app: dropped.
pub const OCI_TITLE: &str = "org.opencontainers.image.title";
pub const OCI_DESCRIPTION: &str = "org.opencontainers.image.description";
/// On a revised build: how many pre-run commands ran on the run image. `0` means the image is
/// the run image plus copied layers only, which `rebase` can move to another run image.
pub const PRE_RUN_COMMANDS: &str = "dev.apprunner-build.pre-run-commands";
/// The configuration's `runtime-version`, when it gives one: rebases and roll-outs keep to it.
pub const RUNTIME_VERSION_LOCK: &str = "dev.apprunner-build.runtime-version-lock";
/// The names of the variables the app sets over the run image's (`run.env`, `PORT`, its alias),
/// comma-separated, so a rebase can lay them over another run image's.
pub const RUN_ENV: &str = "dev.apprunner-build.run-env";
/// On a rebased image: the image manifest it was rebased from, and that image's runtime version.
pub const REBASED_FROM: &str = "dev.apprunner-build.rebased-from";
pub const REBASED_FROM_VERSION: &str = "dev.apprunner-build.rebased-from-version";
/// An annotation of the image index: the build key of the solve that made the image
/// (`core::reuse`), so a build with the same inputs to the same tag reuses it.
pub const BUILD_KEY: &str = "dev.apprunner-build.build-key";
