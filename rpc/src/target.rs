//! Where a server listens: `host:port` (a relay or an observer's TCP API) or
//! `unix:///path/to.sock` (an observer on this machine).

use std::fmt;
use std::path::PathBuf;

/// A server address that is neither form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid server {given:?}: use unix:///path/to.sock or host:port ({reason})")]
pub struct TargetError {
    pub given: String,
    pub reason: &'static str,
}

/// A parsed server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    /// `address` is `host:port` (IPv6 hosts in brackets); `host` is the
    /// host alone, the name a TLS certificate is checked against.
    Tcp {
        address: String,
        host: String,
    },
}

impl Target {
    /// Parses `unix:///path`, `host:port`, `[v6]:port`; an `http://` or
    /// `https://` prefix is accepted and dropped (TLS is chosen by flags).
    pub fn parse(given: &str) -> Result<Target, TargetError> {
        let err = |reason| TargetError {
            given: given.to_string(),
            reason,
        };
        if let Some(path) = given.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(err("a unix socket path must be absolute"));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        let address = given
            .strip_prefix("http://")
            .or_else(|| given.strip_prefix("https://"))
            .unwrap_or(given);
        let Some((host, port)) = address.rsplit_once(':') else {
            return Err(err("no port"));
        };
        if port.parse::<u16>().is_err() {
            return Err(err("the port is not a number from 0 to 65535"));
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || address.contains('/') {
            return Err(err("no host"));
        }
        Ok(Target::Tcp {
            address: address.to_string(),
            host: host.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix://{}", path.display()),
            Target::Tcp { address, .. } => f.write_str(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(address: &str, host: &str) -> Target {
        Target::Tcp {
            address: address.into(),
            host: host.into(),
        }
    }

    #[test]
    fn both_forms_and_their_mistakes() {
        assert_eq!(
            Target::parse("unix:///var/run/lumen/observer.sock"),
            Ok(Target::Unix("/var/run/lumen/observer.sock".into()))
        );
        assert_eq!(Target::parse("127.0.0.1:4245"), Ok(tcp("127.0.0.1:4245", "127.0.0.1")));
        assert_eq!(Target::parse("[fd00::1]:4244"), Ok(tcp("[fd00::1]:4244", "fd00::1")));
        assert_eq!(Target::parse("http://relay:4245"), Ok(tcp("relay:4245", "relay")));
        assert_eq!(
            Target::parse("relay.example:443").unwrap().to_string(),
            "relay.example:443"
        );
        let err = |s: &str| Target::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("localhost"),
            "invalid server \"localhost\": use unix:///path/to.sock or host:port (no port)"
        );
        assert_eq!(
            err("unix://relative.sock"),
            "invalid server \"unix://relative.sock\": use unix:///path/to.sock or host:port \
             (a unix socket path must be absolute)"
        );
        assert_eq!(
            err("relay:99999"),
            "invalid server \"relay:99999\": use unix:///path/to.sock or host:port \
             (the port is not a number from 0 to 65535)"
        );
        assert_eq!(
            err(":4245"),
            "invalid server \":4245\": use unix:///path/to.sock or host:port (no host)"
        );
    }
}
