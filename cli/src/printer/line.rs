//! Flows laid out as Hubble's printer lays them out: a compact line, a dict
//! block, a table row, and what it tells stderr about a relay's nodes. The
//! words for a flow's parts come from `lumen_flow::format`; this adds the
//! times, names, colours and layout `hubble observe`'s formatting flags
//! choose. Text a flow brings (names, summaries) is shown with ESC and CR
//! made visible (`^[`, `\r`): a workload's name must not drive the terminal.

use std::borrow::Cow;
use std::fmt::Write;

use lumen_flow::format::{flow_type, identity_name, summary, why};
use lumen_proto::flow::{
    layer4::Protocol, AuthType, Endpoint, Flow, LostEvent, LostEventSource, Policy, Service, TrafficDirection, Verdict,
};
use lumen_proto::observer::{get_flows_response::ResponseTypes, GetFlowsResponse};
use lumen_proto::relay::NodeState;

use super::TimeFormat;

/// How flows are shown: `hubble observe`'s formatting flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// `--time-format`.
    pub time: TimeFormat,
    /// `--print-node-name`: the node that saw each flow.
    pub node_name: bool,
    /// `--print-policy-names`: the policies behind a policy-verdict event's
    /// ALLOWED or DENIED.
    pub policy_names: bool,
    /// `--ip-translation` (off with `--numeric`): pod, service or DNS names
    /// instead of addresses.
    pub ip_translation: bool,
    /// ANSI colours, as `--color` decides them for compact and dict output
    /// (a table is never coloured).
    pub color: bool,
}

impl Default for Style {
    /// `hubble observe`'s defaults, without colour.
    fn default() -> Self {
        Style {
            time: TimeFormat::StampMilli,
            node_name: false,
            policy_names: false,
            ip_translation: true,
            color: false,
        }
    }
}

/// The colours Hubble's printer uses (ANSI foreground codes).
#[derive(Debug, Clone, Copy)]
enum Color {
    Red = 31,
    Green = 32,
    Yellow = 33,
    Magenta = 35,
    Cyan = 36,
}

impl Style {
    fn paint(&self, color: Color, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", color as u8)
        } else {
            text.to_string()
        }
    }
}

/// `text` with ESC shown as `^[` and CR as `\r`, as Hubble's printer shows
/// them.
fn visible(text: &str) -> Cow<'_, str> {
    if text.contains(['\x1b', '\r']) {
        Cow::Owned(text.replace('\x1b', "^[").replace('\r', "\\r"))
    } else {
        Cow::Borrowed(text)
    }
}

/// A protobuf enum value's name, or its number when this build does not
/// know it (as Go prints an unknown enum value).
fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> Cow<'static, str> {
    E::try_from(value).map_or_else(|_| Cow::Owned(value.to_string()), |e| Cow::Borrowed(name(e)))
}

fn ports(flow: &Flow) -> (u32, u32) {
    match flow.l4.as_ref().and_then(|l| l.protocol.as_ref()) {
        Some(Protocol::Tcp(t)) => (t.source_port, t.destination_port),
        Some(Protocol::Udp(u)) => (u.source_port, u.destination_port),
        Some(Protocol::Sctp(s)) => (s.source_port, s.destination_port),
        _ => (0, 0),
    }
}

/// One end of a flow as Hubble names it: with IP translation its pod
/// (`namespace/pod`), else its service, else its DNS names, else its
/// address; then `:port` (`[v6]:port`) when there is a port.
fn host(
    style: &Style,
    ip: &str,
    port: u32,
    endpoint: Option<&Endpoint>,
    service: Option<&Service>,
    names: &[String],
) -> String {
    let pod = endpoint.map_or("", |e| e.pod_name.as_str());
    // A service's namespace is the one shown, even before a pod's name (as in Hubble).
    let namespace = service.map_or_else(|| endpoint.map_or("", |e| e.namespace.as_str()), |s| &s.namespace);
    let service = service.map_or("", |s| s.name.as_str());
    let in_namespace = |name: &str| match namespace {
        "" => name.to_string(),
        ns => format!("{ns}/{name}"),
    };
    let name = match () {
        _ if !style.ip_translation => ip.to_string(),
        _ if !pod.is_empty() => in_namespace(pod),
        _ if !service.is_empty() => in_namespace(service),
        _ if !names.is_empty() => names.join(","),
        _ => ip.to_string(),
    };
    let name = visible(&name);
    let text = match port {
        0 => name.into_owned(),
        _ if name.contains(':') => format!("[{name}]:{}", style.paint(Color::Yellow, &port.to_string())),
        _ => format!("{name}:{}", style.paint(Color::Yellow, &port.to_string())),
    };
    style.paint(Color::Cyan, &text)
}

/// The SOURCE and DESTINATION columns; the MAC addresses for a flow
/// without an IP layer.
fn hosts(flow: &Flow, style: &Style) -> (String, String) {
    let Some(ip) = &flow.ip else {
        return flow.ethernet.as_ref().map_or_else(Default::default, |e| {
            (
                style.paint(Color::Cyan, &visible(&e.source)),
                style.paint(Color::Cyan, &visible(&e.destination)),
            )
        });
    };
    let (sport, dport) = ports(flow);
    let source = (flow.source.as_ref(), flow.source_service.as_ref(), &flow.source_names);
    let destination = (
        flow.destination.as_ref(),
        flow.destination_service.as_ref(),
        &flow.destination_names,
    );
    (
        host(style, &ip.source, sport, source.0, source.1, source.2),
        host(
            style,
            &ip.destination,
            dport,
            destination.0,
            destination.1,
            destination.2,
        ),
    )
}

fn identity(style: &Style, endpoint: Option<&Endpoint>) -> String {
    let id = endpoint.map_or(0, |e| e.identity);
    style.paint(Color::Magenta, &format!("({})", identity_name(id)))
}

/// ` BY name (kind), name (kind)` for the policies that have both.
fn policy_names(policies: &[Policy]) -> String {
    let named: Vec<String> = policies
        .iter()
        .filter(|p| !p.kind.is_empty() && !p.name.is_empty())
        .map(|p| format!("{} ({})", visible(&p.name), visible(&p.kind)))
        .collect();
    match named.is_empty() {
        true => String::new(),
        false => format!(" BY {}", named.join(", ")),
    }
}

/// The VERDICT column: the verdict's name, or for a policy-verdict event
/// ALLOWED, DENIED or AUDITED (with [`Style::policy_names`], the policies
/// of its direction after `BY`).
fn verdict(flow: &Flow, style: &Style) -> String {
    let policy_verdict = flow
        .event_type
        .as_ref()
        .is_some_and(|e| e.r#type == lumen_flow::monitor_type::POLICY_VERDICT);
    let by = |egress: &[Policy], ingress: &[Policy]| match TrafficDirection::try_from(flow.traffic_direction) {
        _ if !style.policy_names => String::new(),
        Ok(TrafficDirection::Egress) => policy_names(egress),
        Ok(TrafficDirection::Ingress) => policy_names(ingress),
        _ => String::new(),
    };
    let Ok(v) = Verdict::try_from(flow.verdict) else {
        return flow.verdict.to_string();
    };
    match v {
        Verdict::Forwarded | Verdict::Redirected if policy_verdict => style.paint(
            Color::Green,
            &format!("ALLOWED{}", by(&flow.egress_allowed_by, &flow.ingress_allowed_by)),
        ),
        Verdict::Dropped | Verdict::Error if policy_verdict => style.paint(
            Color::Red,
            &format!("DENIED{}", by(&flow.egress_denied_by, &flow.ingress_denied_by)),
        ),
        Verdict::Audit if policy_verdict => style.paint(Color::Yellow, "AUDITED"),
        Verdict::Forwarded | Verdict::Redirected => style.paint(Color::Green, v.as_str_name()),
        Verdict::Dropped | Verdict::Error => style.paint(Color::Red, v.as_str_name()),
        Verdict::Audit | Verdict::Traced | Verdict::Translated => style.paint(Color::Yellow, v.as_str_name()),
        Verdict::Unknown => v.as_str_name().into(),
    }
}

/// The SUMMARY column: the flow's summary, after the trace id of the
/// packet's IP option when it had one, and before the authentication the
/// matching policy asked for, when it asked.
fn summary_column(flow: &Flow, style: &Style) -> String {
    let mut out = String::new();
    if let Some(trace) = flow.ip_trace_id.as_ref().filter(|t| t.trace_id > 0) {
        let _ = write!(out, "IP Trace ID: {}; ", trace.trace_id);
    }
    out.push_str(&visible(&summary(flow)));
    let color = match AuthType::try_from(flow.auth_type) {
        Ok(AuthType::Disabled) => return out,
        Ok(AuthType::TestAlwaysFail) => Color::Red,
        _ => Color::Green,
    };
    let auth = enum_name(flow.auth_type, |a: AuthType| a.as_str_name());
    let _ = write!(out, "; Auth: {}", style.paint(color, &auth));
    out
}

/// A lost-events response's source and summary (`CPU(0) 12`, with `dash`
/// `CPU(0) - 12`; then, when the server says, `(first: …, last: …)`).
fn lost_words(lost: &LostEvent, style: &Style, dash: bool) -> (Cow<'static, str>, String) {
    let source = enum_name(lost.source, |s: LostEventSource| s.as_str_name());
    let dash = if dash { " -" } else { "" };
    let mut summary = format!("CPU({}){dash} {}", lost.cpu.unwrap_or(0), lost.num_events_lost);
    if let (Some(first), Some(last)) = (&lost.first, &lost.last) {
        let (first, last) = (style.time.format(Some(first)), style.time.format(Some(last)));
        let _ = write!(summary, " (first: {first}, last: {last})");
    }
    (source, summary)
}

/// One line per flow:
/// `Nov 25 01:46:56.162: default/frontend:60060 (ID:2010621) -> default/backend:8080 (ID:10943975) to-endpoint FORWARDED (TCP Flags: SYN)`,
/// then Lumen's ` [why it was dropped]` when the flow says. Replies are
/// printed destination first with `<-`, flows that do not know whether they
/// are replies with `<>`, as Hubble does. Lost events print
/// `Nov 25 01:46:58.000 EVENTS LOST: HUBBLE_RING_BUFFER CPU(0) 12`; node
/// status events nothing here (see [`node_status`]).
pub fn compact(response: &GetFlowsResponse, style: &Style) -> Option<String> {
    let flow = match &response.response_types {
        Some(ResponseTypes::Flow(flow)) => flow,
        Some(ResponseTypes::LostEvents(lost)) => {
            let (source, summary) = lost_words(lost, style, false);
            let time = style.time.format(response.time.as_ref());
            return Some(format!("{time} EVENTS LOST: {source} {summary}"));
        }
        _ => return None,
    };
    let (mut src, mut dst) = hosts(flow, style);
    let mut src_id = identity(style, flow.source.as_ref());
    let mut dst_id = identity(style, flow.destination.as_ref());
    let arrow = match flow.is_reply {
        None => "<>",
        Some(true) => {
            std::mem::swap(&mut src, &mut dst);
            std::mem::swap(&mut src_id, &mut dst_id);
            "<-"
        }
        Some(false) => "->",
    };
    let node = match style.node_name {
        true => format!(" [{}]", visible(&flow.node_name)),
        false => String::new(),
    };
    Some(format!(
        "{}{node}: {src} {src_id} {arrow} {dst} {dst_id} {} {} ({}){}",
        style.time.format(flow.time.as_ref()),
        visible(&flow_type(flow)),
        verdict(flow, style),
        summary_column(flow, style),
        why(flow).map(|w| format!(" [{}]", visible(&w))).unwrap_or_default()
    ))
}

/// A `KEY: value` block per flow or lost-events response, keys
/// right-aligned as Hubble's; the printer puts [`DICT_SEPARATOR`] between
/// blocks.
pub fn dict(response: &GetFlowsResponse, style: &Style) -> Option<String> {
    let mut out = String::new();
    let node = |out: &mut String, name: &str| {
        if style.node_name {
            let _ = writeln!(out, "       NODE: {}", visible(name));
        }
    };
    match &response.response_types {
        Some(ResponseTypes::Flow(flow)) => {
            let (src, dst) = hosts(flow, style);
            let _ = writeln!(out, "  TIMESTAMP: {}", style.time.format(flow.time.as_ref()));
            node(&mut out, &flow.node_name);
            let _ = write!(
                out,
                "     SOURCE: {src}\nDESTINATION: {dst}\n       TYPE: {}\n    VERDICT: {}\n    SUMMARY: {}\n",
                visible(&flow_type(flow)),
                verdict(flow, style),
                summary_column(flow, style)
            );
        }
        Some(ResponseTypes::LostEvents(lost)) => {
            let (source, summary) = lost_words(lost, style, true);
            let _ = writeln!(out, "  TIMESTAMP: {}", style.time.format(response.time.as_ref()));
            node(&mut out, or_dash(&response.node_name));
            let _ = write!(
                out,
                "     SOURCE: {source}\n       TYPE: EVENTS LOST\n    VERDICT: -\n    SUMMARY: {summary}\n"
            );
        }
        _ => return None,
    }
    Some(out)
}

fn or_dash(name: &str) -> &str {
    if name.is_empty() {
        "-"
    } else {
        name
    }
}

/// Separator Hubble prints between dict blocks.
pub const DICT_SEPARATOR: &str = "------------";

/// Columns TIMESTAMP [NODE] SOURCE DESTINATION TYPE VERDICT SUMMARY, aligned
/// as Hubble's tabwriter aligns them (every column but the last as wide as
/// its widest cell plus three spaces), never coloured. A lost-events row
/// reads `HUBBLE_RING_BUFFER  -  EVENTS LOST  -  CPU(0) - 12`. Nothing at all,
/// not even the header, without a flow or lost-events response.
pub fn table(responses: &[GetFlowsResponse], style: &Style) -> String {
    let style = Style { color: false, ..*style };
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in responses {
        let (time, node, rest) = match &r.response_types {
            Some(ResponseTypes::Flow(flow)) => {
                let (src, dst) = hosts(flow, &style);
                let kind = visible(&flow_type(flow)).into_owned();
                let rest = [src, dst, kind, verdict(flow, &style), summary_column(flow, &style)];
                (flow.time.as_ref(), visible(&flow.node_name), rest)
            }
            Some(ResponseTypes::LostEvents(lost)) => {
                let (source, summary) = lost_words(lost, &style, true);
                let rest = [
                    source.into_owned(),
                    "-".into(),
                    "EVENTS LOST".into(),
                    "-".into(),
                    summary,
                ];
                (r.time.as_ref(), visible(or_dash(&r.node_name)), rest)
            }
            _ => continue,
        };
        let mut row = vec![style.time.format(time)];
        if style.node_name {
            row.push(node.into_owned());
        }
        row.extend(rest);
        rows.push(row);
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut header = vec!["TIMESTAMP"];
    if style.node_name {
        header.push("NODE");
    }
    header.extend(["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]);
    rows.insert(0, header.into_iter().map(String::from).collect());
    // Hubble's tabwriter: padding 3 (its minimum width 2 never applies then).
    crate::format::columns(&rows, 3)
}

/// What Hubble's printer tells stderr about a relay's node status event:
/// only nodes that became unavailable or failed the request, as a line
/// (`Nov 25 01:46:58.000 [relay]: 1 nodes are unavailable: node-2`) or with
/// `dict` as a dict block; `None` for any other response.
pub fn node_status(response: &GetFlowsResponse, style: &Style, dict: bool) -> Option<String> {
    let Some(ResponseTypes::NodeStatus(status)) = &response.response_types else {
        return None;
    };
    let state = NodeState::try_from(status.state_change).ok()?;
    if !matches!(state, NodeState::NodeUnavailable | NodeState::NodeError) {
        return None;
    }
    let names = cut_off_join(&status.node_names, 50);
    let time = style.time.format(response.time.as_ref());
    let message = visible(&status.message);
    if dict {
        let message = match message.is_empty() {
            true => "N/A".into(),
            false => format!("{message:?}"),
        };
        return Some(format!(
            "  TIMESTAMP: {time}\n      STATE: {}\n      NODES: {names}\n    MESSAGE: {message}\n",
            state.as_str_name()
        ));
    }
    let prefix = format!("{time} [{}]", visible(&response.node_name));
    let count = status.node_names.len();
    Some(match state {
        NodeState::NodeUnavailable => format!("{prefix}: {count} nodes are unavailable: {names}\n"),
        _ => format!("{prefix}: Error {message:?} on {count} nodes: {names}\n"),
    })
}

/// Node names joined with `, `; those past about `limit` characters are
/// only counted (`a, b (and 3 more)`), though the first is always shown.
fn cut_off_join(names: &[String], limit: usize) -> String {
    let mut length = 0;
    let mut shown = names.len();
    for (i, name) in names.iter().enumerate() {
        length += name.len() + 2;
        if length > limit && i > 0 {
            shown = i;
            break;
        }
    }
    let joined = names[..shown].iter().map(|n| visible(n)).collect::<Vec<_>>().join(", ");
    match names.len() - shown {
        0 => joined,
        more => format!("{joined} (and {more} more)"),
    }
}
