//! What the filter flags' values mean: identities by name or number,
//! event types and sub-types by Cilium's names, TCP flags, and the rest,
//! each refused with a message that says what to use.

use lumen_flow::format::TRACE_POINTS;
use lumen_flow::monitor_type;
use lumen_flow::tcp::TcpFlag;
use lumen_proto::flow::{EventTypeFilter, IpVersion, TcpFlags, Workload};
use lumen_proto::names::{OVERLAY_TO_ENCRYPT, RESERVED_IDENTITIES};

pub const VERDICTS: &str = "FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED";

pub fn enum_value(value: &str, what: &str, parse: fn(&str) -> Option<i32>, names: &str) -> Result<i32, String> {
    if value.is_empty() {
        return Err(format!("an empty value is not a {what}: use one of {names}"));
    }
    parse(&value.to_ascii_uppercase()).ok_or_else(|| format!("{value:?} is not a {what}: use one of {names}"))
}

/// Cilium's reserved identities by the names `hubble observe` takes.
fn reserved_identities() -> impl Iterator<Item = (u32, &'static str)> {
    RESERVED_IDENTITIES.into_iter().chain([OVERLAY_TO_ENCRYPT])
}

/// A number as Go's `strconv.ParseUint(s, 0, …)` reads it: decimal, or
/// `0x`, `0o` (or a leading `0`), `0b`.
fn go_uint(s: &str) -> Option<u64> {
    let (digits, radix) = match s.get(..2).map(str::to_ascii_lowercase).as_deref() {
        Some("0x") => (&s[2..], 16),
        Some("0o") => (&s[2..], 8),
        Some("0b") => (&s[2..], 2),
        _ if s.len() > 1 && s.starts_with('0') => (&s[1..], 8),
        _ => (s, 10),
    };
    if digits.is_empty() || digits.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

pub fn identity(value: &str) -> Result<u32, String> {
    if let Some((id, _)) = reserved_identities().find(|(_, name)| *name == value) {
        return Ok(id);
    }
    go_uint(value).and_then(|id| u32::try_from(id).ok()).ok_or_else(|| {
        let names: Vec<&str> = reserved_identities().map(|(_, n)| n).collect();
        format!(
            "{value:?} is not a security identity: use a number (e.g. 12345) or one of {}",
            names.join(", ")
        )
    })
}

pub fn port(value: &str) -> Result<String, String> {
    value
        .parse::<u16>()
        .map(|p| p.to_string())
        .map_err(|_| format!("{value:?} is not a port (0-65535)"))
}

/// `Deployment/web`, `web` (any kind), `Deployment/` (any name).
pub fn workload(value: &str) -> Workload {
    let (kind, name) = value.split_once('/').unwrap_or(("", value));
    Workload {
        kind: kind.into(),
        name: name.into(),
    }
}

pub fn ip_version(value: &str) -> Result<IpVersion, String> {
    match value.to_ascii_lowercase().as_str() {
        "4" | "v4" | "ipv4" | "ip4" => Ok(IpVersion::IPv4),
        "6" | "v6" | "ipv6" | "ip6" => Ok(IpVersion::IPv6),
        "none" => Ok(IpVersion::IpNotUsed),
        _ => Err(format!("{value:?} is not an IP version: use v4, v6 or none")),
    }
}

/// Cilium's agent notification sub-types by the names `hubble observe` takes.
const AGENT_EVENTS: &[(&str, i32)] = &[
    ("unspecified", 0),
    ("message", 1),
    ("agent-started", 2),
    ("endpoint-regenerate-success", 3),
    ("endpoint-regenerate-failure", 4),
    ("policy-updated", 5),
    ("policy-deleted", 6),
    ("endpoint-created", 7),
    ("endpoint-deleted", 8),
    ("ipcache-upserted", 9),
    ("ipcache-deleted", 10),
];

/// `TYPE[:SUBTYPE]`: a type by name or number; trace and agent subtypes by
/// name, any subtype by number.
pub fn event_type(value: &str) -> Result<EventTypeFilter, String> {
    let (kind, sub) = value.split_once(':').map_or((value, None), |(k, s)| (k, Some(s)));
    let r#type = match kind {
        "drop" => monitor_type::DROP,
        "debug" => monitor_type::DEBUG,
        "capture" => monitor_type::CAPTURE,
        "trace" => monitor_type::TRACE,
        "policy-verdict" => monitor_type::POLICY_VERDICT,
        "recorder" => monitor_type::RECORDER_CAPTURE,
        "trace-sock" => monitor_type::TRACE_SOCK,
        "l7" => monitor_type::ACCESS_LOG,
        "agent" => monitor_type::AGENT,
        _ => kind
            .parse::<u32>()
            .ok()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| {
                format!(
                    "{kind:?} is not an event type: use one of capture, drop, l7, policy-verdict, trace, trace-sock, \
                 agent, debug, or a number"
                )
            })?,
    };
    let Some(sub) = sub else {
        return Ok(EventTypeFilter {
            r#type,
            ..Default::default()
        });
    };
    let named = match r#type {
        monitor_type::TRACE => TRACE_POINTS.iter().position(|p| *p == sub).map(|p| p as i32),
        monitor_type::AGENT => AGENT_EVENTS.iter().find(|(n, _)| *n == sub).map(|(_, v)| *v),
        _ => None,
    };
    let sub_type = match named {
        Some(n) => n,
        None => sub
            .parse::<u32>()
            .ok()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| match r#type {
                monitor_type::TRACE => format!(
                    "{sub:?} is not a trace observation point: use one of {}, or a number",
                    TRACE_POINTS.join(", ")
                ),
                _ => format!("{sub:?} in {value:?} is not a sub-type: use a number"),
            })?,
    };
    Ok(EventTypeFilter {
        r#type,
        match_sub_type: true,
        sub_type,
    })
}

pub fn tcp_flags(value: &str) -> Result<TcpFlags, String> {
    let mut flags = TcpFlags::default();
    for name in value.split(',') {
        let Some(flag) = TcpFlag::from_name(name.trim()) else {
            let names: Vec<&str> = TcpFlag::CLI_ORDER.iter().map(|f| f.name()).collect();
            return Err(format!(
                "{name:?} is not a TCP flag: use a comma-separated list of {}",
                names.join(", ")
            ));
        };
        *flag.field(&mut flags) = true;
    }
    Ok(flags)
}
