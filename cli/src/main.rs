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

fn main() {
    let cli = commands::Cli::parse();
    if let Err(e) = commands::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
