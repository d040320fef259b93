//! Command-line surface of `lumen` and the commands that talk to a running
//! observer over its control socket.

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use lumen_proto::lumen::v1 as pb;

use lumen_rpc::control::{Control, ControlError};

#[derive(Debug, Parser)]
#[command(name = "lumen", version, about = "Lumen: eBPF network-flow observability and policy")]
pub struct Cli {
    /// Control socket of the observer to talk to.
    #[arg(
        long,
        global = true,
        env = "LUMEN_CONTROL_SOCKET",
        default_value = "/var/run/lumen/control.sock"
    )]
    pub control_socket: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a small cluster on this machine, guard it, send traffic and show what happens (root).
    #[cfg(feature = "demo")]
    Demo(crate::demo::DemoArgs),
    /// Endpoints the observer guards.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Network policy: CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy.
    #[command(subcommand)]
    Policy(crate::policy::PolicyCommand),
    /// Set which packets become events: none (every packet), medium, max.
    Aggregation {
        #[arg(value_enum)]
        level: Aggregation,
    },
    /// Show flows from the observer's Hubble API (or from a file), like `hubble observe`.
    Observe(Box<crate::observe::ObserveArgs>),
    /// Health and flow-buffer status of the observer or relay, like `hubble status`.
    Status(crate::server::ServerArgs),
    /// A live dashboard of the cluster's workloads, connections, drops, flows and nodes.
    Top(Box<crate::top::TopArgs>),
    /// What an observer or relay knows, like `hubble list`.
    #[command(subcommand)]
    List(ListCommand),
    /// The browser service map and flow explorer (`lumen-ui`, on http://127.0.0.1:12000 by
    /// default); every flag is lumen-ui's: `lumen ui --help` lists them.
    #[command(disable_help_flag = true)]
    Ui {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// Event volume, like Cilium's `--monitor-aggregation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Aggregation {
    None,
    Medium,
    Max,
}

#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// The cluster's nodes: state, age, flow rate, flows held.
    Nodes(crate::nodes::ListNodesArgs),
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// List endpoints with their identity and enforcement.
    List {
        /// Output format.
        #[arg(short, long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Add an endpoint at runtime.
    Add {
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        /// A label `key=value`; repeat for more.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Host-side interface to guard; omit for an endpoint known only by IP.
        #[arg(long)]
        interface: Option<String>,
        /// An IP of the endpoint; repeat for more.
        #[arg(long = "ip", required = true)]
        ips: Vec<IpAddr>,
        /// A named port `NAME=PORT[/PROTOCOL]` (e.g. `http=8080/tcp`) policies can refer to.
        #[arg(long = "port", value_parser = parse_named_port)]
        ports: Vec<pb::NamedPort>,
    },
    /// Remove an endpoint added at runtime.
    Delete {
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

fn parse_named_port(s: &str) -> Result<pb::NamedPort, String> {
    let (name, rest) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not a named port: use NAME=PORT[/PROTOCOL]"))?;
    let (port, protocol) = rest.split_once('/').unwrap_or((rest, "tcp"));
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("{port:?} in {s:?} is not a port number"))?;
    Ok(pb::NamedPort {
        name: name.to_string(),
        port: port.into(),
        protocol: protocol.to_ascii_uppercase(),
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not a label: use key=value")),
    }
}

/// Connects to the observer's control socket and runs `f` on it.
pub(crate) fn with_control<T, F, Fut>(cli: &Cli, f: F) -> anyhow::Result<T>
where
    F: FnOnce(Control) -> Fut,
    Fut: Future<Output = Result<T, ControlError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let answer = rt.block_on(async {
        let control = Control::connect(&cli.control_socket).await?;
        f(control).await
    })?;
    Ok(answer)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        #[cfg(feature = "demo")]
        Command::Demo(args) => crate::demo::run(args, &cli.control_socket),
        Command::Ui { args } => crate::ui::run(args),
        Command::Endpoint(EndpointCommand::List { output }) => {
            let endpoints = with_control(&cli, |mut c| async move { c.list_endpoints().await })?;
            if output == "json" {
                println!("{}", crate::format::endpoints_json(&endpoints)?);
            } else {
                print!("{}", crate::format::endpoint_table(&endpoints));
            }
            Ok(())
        }
        Command::Endpoint(EndpointCommand::Add {
            name,
            namespace,
            labels,
            interface,
            ips,
            ports,
        }) => {
            let spec = pb::EndpointSpec {
                name: name.clone(),
                namespace: namespace.clone(),
                labels: labels.iter().cloned().collect(),
                ips: ips.iter().map(ToString::to_string).collect(),
                interface: interface.clone(),
                ports: ports.clone(),
            };
            let endpoint = with_control(&cli, |mut c| async move { c.add_endpoint(spec).await })?;
            let spec = endpoint.spec.unwrap_or_default();
            println!(
                "added {}/{} (endpoint {}, identity {})",
                spec.namespace, spec.name, endpoint.endpoint_id, endpoint.identity
            );
            Ok(())
        }
        Command::Endpoint(EndpointCommand::Delete { name, namespace }) => {
            with_control(&cli, |mut c| async move { c.delete_endpoint(namespace, name).await })?;
            println!("deleted {namespace}/{name}");
            Ok(())
        }
        Command::Policy(command) => crate::policy::run(&cli, command),
        Command::Observe(args) => crate::observe::observe(args),
        Command::Status(args) => crate::status::status(args),
        Command::Top(args) => crate::top::run(args),
        Command::List(ListCommand::Nodes(args)) => crate::nodes::list_nodes(args),
        Command::Aggregation { level } => {
            let wire = match level {
                Aggregation::None => pb::AggregationLevel::None,
                Aggregation::Medium => pb::AggregationLevel::Medium,
                Aggregation::Max => pb::AggregationLevel::Max,
            };
            with_control(&cli, |mut c| async move { c.set_aggregation(wire).await })?;
            println!("monitor aggregation is now {level:?}");
            Ok(())
        }
    }
}
