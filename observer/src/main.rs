use lumen_observer::daemon::{self, ObserverConfig};

/// Flows are built on one thread and dropped on others (GetFlows, metrics,
/// the exporters' writers), where glibc's allocator contends on its arena
/// locks; mimalloc frees across threads cheaply.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("LUMEN_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let env: lumen_config::Env = std::env::vars_os().collect();
    let loaded = match ObserverConfig::load(std::env::args_os(), &env, |path| std::fs::read_to_string(path)) {
        Ok(loaded) => loaded,
        Err(lumen_config::Error::Args(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    if loaded.print_config {
        print!("{}", loaded.effective);
        return Ok(());
    }
    let cfg = loaded.config;
    if cfg.uninstall {
        daemon::uninstall(&cfg.pin_dir())?;
        eprintln!("removed {}", cfg.pin_dir().display());
        return Ok(());
    }
    // Before the runtime starts, so every worker thread inherits the namespace.
    if let Some(ns) = &cfg.netns {
        daemon::enter_netns(ns).map_err(|e| anyhow::anyhow!("cannot enter network namespace {ns}: {e}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            let _ = tx.send(true);
        });
        daemon::run(cfg, rx).await?;
        Ok(())
    })
}
