//! Where `lumen` finds Hubble's API: the server flags every command that
//! asks an observer or a relay shares. Connecting is `lumen-rpc`'s.

use clap::Args;
use lumen_proto::tonic::transport::Channel;
use lumen_rpc::TlsArgs;

/// Where the observer (or relay) serves Hubble's API.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Hubble API address: host:port (a relay or an observer) or
    /// unix:///path/to.sock. Default: the relay at 127.0.0.1:4245 if one
    /// answers, else the local observer at unix:///var/run/lumen/observer.sock.
    #[arg(long, env = "LUMEN_SERVER", default_value = "")]
    pub server: String,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Connects to the server of `args`; none given means the default relay,
/// else the local observer. Returns the channel and the address it reached.
pub(crate) async fn connect(args: &ServerArgs) -> anyhow::Result<(Channel, String)> {
    let (channel, target) = lumen_rpc::connect_default(&args.server, &args.tls).await?;
    Ok((channel, target.to_string()))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}
