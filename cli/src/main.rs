use clap::Parser;

mod commands;
#[cfg(feature = "demo")]
mod demo;
mod filters;
mod format;
mod nodes;
mod observe;
mod policy;
mod printer;
mod server;
mod status;
mod top;
mod ui;

/// `lumen top` and `lumen observe -f` decode every flow they are sent, each
/// some thirty small allocations; glibc's allocator was a third of `top`'s
/// time at 100,000 flows a second.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = commands::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
