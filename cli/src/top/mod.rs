//! `lumen top`: a terminal dashboard of the live cluster, against a relay
//! or one observer. Laid out as tokio-console is: [`conn`] (the server),
//! [`state`] and [`input`] (folding flows and keys, no terminal needed),
//! [`tabs`] (what each tab shows, as rows of text), [`view`] (drawing),
//! [`term`] (the terminal guard) and [`export`] (tables out).

mod conn;
mod export;
mod input;
mod state;
mod tabs;
mod term;
mod view;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use lumen_proto::observer::GetFlowsRequest;
use ratatui::crossterm::event::{self, Event, KeyEventKind};
use tokio::sync::mpsc;

use crate::filters::FilterFlags;
use crate::server::ServerArgs;
use state::App;
use tabs::{Level, Tab};

/// The most frames a second.
const FRAME: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten, next_help_heading = "Server")]
    pub server: ServerArgs,
    /// Print one snapshot of a tab (of the flows of the last --history) and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: the output format.
    #[arg(short, long, value_enum, default_value = "table", requires = "once")]
    pub output: Output,
    /// The tab to show first (with --once, the one printed): workloads,
    /// connections, drops, flows, nodes.
    #[arg(long, default_value = "workloads", value_parser = parse_tab)]
    pub tab: Tab,
    /// How far back to start.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub history: Duration,
    #[command(flatten)]
    pub filters: FilterFlags,
}

fn parse_tab(s: &str) -> Result<Tab, String> {
    Tab::parse(s).ok_or_else(|| format!("unknown tab {s:?} (workloads, connections, drops, flows, nodes)"))
}

/// The words of `lumen top`'s command line that are filter flags, as the
/// header shows them and `/` edits them.
fn filter_words(argv: &[String]) -> String {
    const VALUED: [&str; 9] = [
        "--server",
        "--tls-ca-cert-files",
        "--tls-client-cert-file",
        "--tls-client-key-file",
        "--tls-server-name",
        "-o",
        "--output",
        "--tab",
        "--history",
    ];
    let mut words = Vec::new();
    let mut args = argv.iter().skip_while(|a| *a != "top").skip(1);
    while let Some(a) = args.next() {
        let name = a.split('=').next().unwrap_or(a);
        if VALUED.contains(&name) {
            if !a.contains('=') {
                args.next();
            }
        } else if a != "--once" && a != "--tls" {
            words.push(if a.contains(' ') { format!("'{a}'") } else { a.clone() });
        }
    }
    words.join(" ")
}

pub fn run(args: &TopArgs) -> anyhow::Result<()> {
    let rt = crate::server::runtime()?;
    let filter_text = filter_words(&std::env::args().collect::<Vec<_>>());
    let mut app = App::new(&args.server.server, &filter_text, args.filters.clone());
    app.tab = args.tab;
    if args.once {
        return rt.block_on(once(args, app));
    }
    let printed = rt.block_on(interactive(args, app))?;
    if let Some(line) = printed {
        println!("{line}");
    }
    Ok(())
}

/// `--once`: every flow of the last `--history`, folded, one tab printed.
async fn once(args: &TopArgs, mut app: App) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let (channel, _) = crate::server::connect(&args.server).await?;
    let mut client = lumen_proto::observer::observer_client::ObserverClient::new(channel);
    let request = GetFlowsRequest {
        follow: false,
        ..conn::request(&app.filters, args.history, now)
    };
    let mut stream = client
        .get_flows(lumen_proto::with_extensions(request))
        .await
        .context("GetFlows")?
        .into_inner();
    while let Some(r) = stream.message().await.context("reading flows")? {
        app.response(Box::new(conn::Received::of(&r)), now);
    }
    let snapshot = app.snapshot(now);
    let flows = app.flows();
    let level = Level::Top(app.tab);
    let view = tabs::view(&level, &snapshot, app.sort[app.tab.index()], &flows, &[]);
    let out = match args.output {
        Output::Table => export::text(&view),
        Output::Json => {
            let value = match app.tab {
                Tab::Workloads => serde_json::to_value(&snapshot.workloads),
                Tab::Connections => serde_json::to_value(&snapshot.connections),
                Tab::Drops => serde_json::to_value(&snapshot.drops),
                Tab::Nodes => serde_json::to_value(&snapshot.nodes),
                Tab::Flows => Ok(export::json(&view)),
            }?;
            serde_json::to_string_pretty(&value)? + "\n"
        }
    };
    print!("{out}");
    Ok(())
}

/// The dashboard until `q`; returns the line `y` asked to print.
async fn interactive(args: &TopArgs, mut app: App) -> anyhow::Result<Option<String>> {
    let plain = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let mut guard = term::Guard::new().context("setting up the terminal")?;
    let (tx, mut rx) = mpsc::channel(8192);
    let mut link = conn::start(
        &args.server,
        conn::request(&app.filters, args.history, SystemTime::now()),
        tx.clone(),
    );
    let (keys_tx, mut keys) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(ev) = event::read() {
            if keys_tx.send(ev).is_err() {
                return;
            }
        }
    });
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let mut redraw = false;
        tokio::select! {
            Some(update) = rx.recv() => {
                let now = SystemTime::now();
                app.update(update, now);
                // Take what is waiting too: one wakeup, many flows.
                while let Ok(update) = rx.try_recv() {
                    app.update(update, now);
                }
            }
            Some(ev) = keys.recv() => {
                if let Event::Key(key) = ev {
                    if key.kind != KeyEventKind::Release {
                        let now = SystemTime::now();
                        let targets = targets(&app, now);
                        app.key(key, &targets, now);
                    }
                }
                redraw = true;
            }
            _ = tick.tick() => redraw = true,
        }
        if app.quit {
            break;
        }
        if app.restart {
            app.restart = false;
            drop(link);
            link = conn::start(
                &args.server,
                conn::request(&app.filters, args.history, SystemTime::now()),
                tx.clone(),
            );
        }
        if redraw {
            let now = SystemTime::now();
            guard.terminal.draw(|f| frame(f, &app, now, plain))?;
        }
    }
    drop(link);
    drop(guard);
    Ok(app.print_on_exit)
}

/// Where Enter leads from each row shown now.
fn targets(app: &App, now: SystemTime) -> Vec<tabs::Target> {
    let snapshot = app.snapshot(now);
    let flows = app.flows();
    tabs::view(
        &app.level(),
        &snapshot,
        app.sort[app.sort_slot()],
        &flows,
        &app.node_infos(),
    )
    .targets
}

/// Draws the dashboard as it is at `now`.
pub fn frame(f: &mut ratatui::Frame, app: &App, now: SystemTime, plain: bool) {
    let snapshot = app.snapshot(now);
    let flows = app.flows();
    let view = tabs::view(
        &app.level(),
        &snapshot,
        app.sort[app.sort_slot()],
        &flows,
        &app.node_infos(),
    );
    let detail = match app.detail {
        true => app.detail_lines(view.targets.get(app.selected), &snapshot, &flows),
        false => Vec::new(),
    };
    let screen = view::Screen {
        app,
        view: &view,
        flows_per_sec: snapshot.totals.flows_per_sec,
        history: &snapshot.totals.history,
        lost: snapshot.totals.lost_events,
        detail,
        plain,
    };
    view::draw(f, &screen);
}
