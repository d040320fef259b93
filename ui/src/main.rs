//! `lumen-ui`: the browser service map and flow explorer. Everything lives
//! in the library; this parses the flags and runs it.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = lumen_ui::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LUMEN_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(lumen_ui::run(args))
}
