use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("APPRUNNER_LOG"))
        .with_writer(std::io::stderr)
        .init();
    apprunner_build::cli::main().await
}
