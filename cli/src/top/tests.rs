//! The dashboard without a terminal: keys on the state, and whole screens
//! drawn to ratatui's `TestBackend` at 80×24 and 160×48.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lumen_proto::flow::{DropReason, Endpoint, Flow, Layer4, Policy, Tcp, TcpFlags, Verdict};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{GetFlowsResponse, Node};
use lumen_proto::prost_types::Timestamp;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

use super::conn::{Kind, Received, ServerInfo, Update};
use super::state::{App, Link};
use super::tabs::{self, Level, Tab};
use crate::filters::FilterFlags;

const T0: u64 = 1_764_000_000;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + secs)
}

fn ip(identity: u32) -> String {
    format!("10.0.1.{}", identity / 100)
}

fn pod(name: &str, app: &str, identity: u32) -> Endpoint {
    Endpoint {
        identity,
        namespace: "shop".into(),
        pod_name: name.into(),
        labels: vec![format!("k8s:app={app}")],
        ..Default::default()
    }
}

/// A TCP flow at second `secs` (and `ms` past it) from `src` to `dst`:`port`.
/// A flow as the dashboard receives it (read from its bytes, as the
/// stream's are).
fn flow(src: &Endpoint, dst: &Endpoint, port: u32, dropped: bool, secs: u64, ms: u32) -> Box<Received> {
    let mut f = Flow {
        time: Some(Timestamp {
            seconds: (T0 + secs) as i64,
            nanos: (ms * 1_000_000) as i32,
        }),
        node_name: "node-a".into(),
        r#type: lumen_proto::flow::FlowType::L3L4 as i32,
        ip: Some(lumen_proto::flow::Ip {
            source: ip(src.identity),
            destination: ip(dst.identity),
            ip_version: lumen_proto::flow::IpVersion::IPv4 as i32,
            ..Default::default()
        }),
        verdict: if dropped { Verdict::Dropped } else { Verdict::Forwarded } as i32,
        // A drop event (133: policy denied) or a trace to the endpoint.
        event_type: Some(lumen_proto::flow::CiliumEventType {
            r#type: if dropped { 1 } else { 4 },
            sub_type: if dropped { 133 } else { 0 },
        }),
        source: Some(src.clone()),
        destination: Some(dst.clone()),
        is_reply: Some(false),
        l4: Some(Layer4 {
            protocol: Some(lumen_proto::flow::layer4::Protocol::Tcp(Tcp {
                source_port: 40000,
                destination_port: port,
                flags: Some(TcpFlags {
                    syn: true,
                    ..Default::default()
                }),
            })),
        }),
        ..Default::default()
    };
    if dropped {
        f.drop_reason_desc = DropReason::PolicyDenied as i32;
        f.ingress_denied_by = vec![Policy {
            name: "deny-web".into(),
            namespace: "shop".into(),
            kind: "CiliumNetworkPolicy".into(),
            ..Default::default()
        }];
    }
    Box::new(Received::of(&GetFlowsResponse {
        node_name: "node-a".into(),
        time: f.time,
        response_types: Some(ResponseTypes::Flow(f)),
    }))
}

/// A relay with two of three nodes up; the shop's web calls its api (all
/// forwarded) and its db (every fourth dropped by deny-web), for 20 s.
fn shop() -> App {
    let mut app = App::new("127.0.0.1:4245", "--namespace shop", FilterFlags::default());
    app.update(Update::Follow(lumen_rpc::FollowEvent::Connected), at(0));
    app.update(
        Update::Status(ServerInfo {
            kind: Kind::Relay,
            connected: 2,
            unavailable: vec!["node-c".into()],
            nodes: vec![
                Node {
                    name: "node-a".into(),
                    version: "0.1.0".into(),
                    address: "10.0.0.1:4244".into(),
                    state: lumen_proto::relay::NodeState::NodeConnected as i32,
                    uptime_ns: 3_600_000_000_000,
                    ..Default::default()
                },
                Node {
                    name: "node-c".into(),
                    address: "10.0.0.3:4244".into(),
                    state: lumen_proto::relay::NodeState::NodeUnavailable as i32,
                    ..Default::default()
                },
            ],
            version: "0.1.0".into(),
        }),
        at(0),
    );
    let (web, api, db) = (
        pod("web-1", "web", 100),
        pod("api-1", "api", 200),
        pod("db-1", "db", 300),
    );
    for s in 0..20 {
        app.response(flow(&web, &api, 8080, false, s, 0), at(s));
        app.response(flow(&web, &db, 5432, s % 4 == 3, s, 250), at(s));
        app.response(flow(&web, &api, 8080, false, s, 500), at(s));
    }
    app
}

fn key(app: &mut App, code: KeyCode, now: SystemTime) {
    let snapshot = app.snapshot(now);
    let flows = app.flows();
    let targets = tabs::view(
        &app.level(),
        &snapshot,
        app.sort[app.sort_slot()],
        &flows,
        &app.node_infos(),
    )
    .targets;
    app.key(KeyEvent::new(code, KeyModifiers::NONE), &targets, now);
}

fn screen(app: &App, width: u16, height: u16, now: SystemTime) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| super::frame(f, app, now, true)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_string())
                .collect::<String>()
                .trim_end()
                .to_string()
        })
        .collect()
}

#[test]
fn tabs_sort_and_drill_down_follow_the_keys() {
    let mut app = shop();
    let now = at(20);
    assert_eq!(app.level(), Level::Top(Tab::Workloads));
    key(&mut app, KeyCode::Char('2'), now);
    assert_eq!(app.tab, Tab::Connections);
    key(&mut app, KeyCode::Tab, now);
    assert_eq!(app.tab, Tab::Drops);
    key(&mut app, KeyCode::Char('1'), now);
    // Workloads sorted by IN/s, most first: api (1/s), db (0.75/s forwarded + drops), web (0 in).
    let sort = app.sort[0];
    assert_eq!((sort.column, sort.ascending), (3, false));
    key(&mut app, KeyCode::Right, now);
    key(&mut app, KeyCode::Char('i'), now);
    assert_eq!((app.sort[0].column, app.sort[0].ascending), (4, true));
    key(&mut app, KeyCode::Left, now);
    key(&mut app, KeyCode::Char('i'), now);
    // Down to web (the last by IN/s), Enter: its connections.
    key(&mut app, KeyCode::Char('G'), now);
    key(&mut app, KeyCode::Enter, now);
    let web = lumen_model::NodeKey::new(lumen_model::NodeKind::Workload, "shop", "web");
    assert_eq!(app.level(), Level::Workload(web.clone()));
    // Its busiest connection is to api; Enter: that connection's flows.
    key(&mut app, KeyCode::Enter, now);
    match app.level() {
        Level::Connection(c) => assert_eq!(
            (c.source.name.as_str(), c.destination.name.as_str(), c.port),
            ("web", "api", 8080)
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(app.flows().len(), 40);
    key(&mut app, KeyCode::Esc, now);
    key(&mut app, KeyCode::Esc, now);
    assert_eq!(app.level(), Level::Top(Tab::Workloads));
}

#[test]
fn pause_keeps_counting_and_the_filter_prompt_names_its_error() {
    let mut app = shop();
    let now = at(20);
    key(&mut app, KeyCode::Char(' '), now);
    let web = pod("web-1", "web", 100);
    let api = pod("api-1", "api", 200);
    app.response(flow(&web, &api, 8080, false, 20, 100), at(20));
    assert_eq!(app.paused.as_ref().map(|(_, n)| *n), Some(1));
    assert_eq!(app.received, 61);
    key(&mut app, KeyCode::Char(' '), now);
    assert!(app.paused.is_none());

    key(&mut app, KeyCode::Char('/'), now);
    for c in " --verdict SOMETIMES".chars() {
        key(&mut app, KeyCode::Char(c), now);
    }
    key(&mut app, KeyCode::Enter, now);
    let prompt = app.prompt.clone().expect("still open");
    assert!(
        prompt.error.as_deref().unwrap_or_default().contains("SOMETIMES"),
        "{prompt:?}"
    );
    for _ in " --verdict SOMETIMES".chars() {
        key(&mut app, KeyCode::Backspace, now);
    }
    for c in " --verdict DROPPED".chars() {
        key(&mut app, KeyCode::Char(c), now);
    }
    key(&mut app, KeyCode::Enter, now);
    assert!(app.prompt.is_none());
    assert!(app.restart);
    assert_eq!(app.filter_text, "--namespace shop --verdict DROPPED");
    // --namespace is either side, as in hubble observe: two filters, each with the verdict.
    assert_eq!(app.filters.whitelist.len(), 2);
    assert!(app
        .filters
        .whitelist
        .iter()
        .all(|f| f.verdict == [Verdict::Dropped as i32]));
    assert_eq!(app.received, 0, "a new filter starts the count again");
}

#[test]
fn y_names_the_selection_as_a_lumen_observe_command() {
    let mut app = shop();
    let now = at(20);
    key(&mut app, KeyCode::Char('2'), now);
    key(&mut app, KeyCode::Char('y'), now);
    assert_eq!(
        app.print_on_exit.as_deref(),
        Some(
            "lumen observe --server 127.0.0.1:4245 --namespace shop --from-label app=web --from-namespace shop \
             --to-label app=api --to-namespace shop --to-port 8080 --protocol tcp -f"
        )
    );
}

#[test]
fn y_on_a_flow_names_its_addresses_port_and_protocol() {
    let mut app = shop();
    let now = at(20);
    key(&mut app, KeyCode::Char('4'), now);
    // Newest first: web → api at 19.500.
    key(&mut app, KeyCode::Char('y'), now);
    assert_eq!(
        app.print_on_exit.as_deref(),
        Some(
            "lumen observe --server 127.0.0.1:4245 --namespace shop --from-ip 10.0.1.1 --to-ip 10.0.1.2 \
             --to-port 8080 --protocol tcp -f"
        )
    );
}

#[test]
fn a_lost_link_is_shown_and_what_was_shown_stays() {
    let mut app = shop();
    app.update(
        Update::Follow(lumen_rpc::FollowEvent::Disconnected {
            reason: "connection refused".into(),
            retry_in: Duration::from_millis(1500),
        }),
        at(20),
    );
    assert!(matches!(app.link, Link::Disconnected { .. }));
    let lines = screen(&app, 160, 48, at(20));
    assert!(
        lines[0].contains("DISCONNECTED (connection refused), retry in 2s"),
        "{}",
        lines[0]
    );
    assert!(lines.iter().any(|l| l.contains("shop") && l.contains("web")));
}

/// `n` copies of `line`.
fn lines(line: &str, n: usize) -> Vec<String> {
    vec![line.to_string(); n]
}

#[test]
fn the_workloads_tab_at_80_by_24_drops_the_columns_that_do_not_fit() {
    let app = shop();
    let mut expected: Vec<String> = [
        "lumen top 127.0.0.1:4245 (relay) nodes 2/3 down: node-c │ 3.0 flows/s ██████████",
        " 1 Workloads  2 Connections  3 Drops  4 Flows  5 Nodes  │ sort IN/s ↓ │ window 1",
        "NAMESPACE      WORKLOAD                  PODS     IN/s    OUT/s  DROPS/s  DROP%",
        "shop           api                          1      2.0        0        0     0%",
        "shop           db                           1      1.0        0      0.3    30%",
        "shop           web                          1        0      3.0      0.3    10%",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(lines("", 17));
    expected.push("3 of 3 rows │ ? help  q quit  / filter  Enter drill  Esc back  Space pause".into());
    assert_eq!(screen(&app, 80, 24, at(20)), expected);
}

#[test]
fn a_connection_and_why_it_was_dropped_at_160_by_48() {
    let mut app = shop();
    key(&mut app, KeyCode::Char('2'), at(20));
    key(&mut app, KeyCode::Char('j'), at(20));
    key(&mut app, KeyCode::Char('d'), at(20));
    let mut expected: Vec<String> = [
        "lumen top 127.0.0.1:4245 (relay) nodes 2/3 down: node-c │ 3.0 flows/s ████████████████████",
        " 1 Workloads  2 Connections  3 Drops  4 Flows  5 Nodes  │ sort FLOWS/s ↓ │ window 10s │ filter --namespace shop",
        "SOURCE                   DESTINATION              PORT       FLOWS/s     1m/s     FWD    DROP LAST          AGE",
        "shop/web                 shop/api                 8080/TCP       2.0      0.7      40       0 FORWARDED     20s",
        "shop/web                 shop/db                  5432/TCP       1.0      0.3      15       5 DROPPED       19s",
    ]
    .map(String::from)
    .to_vec();
    expected.extend(lines("", 15));
    expected.push(format!("┌ detail (d, Esc) {}┐", "─".repeat(141)));
    for text in [
        "shop/web → shop/db",
        "port 5432 TCP",
        "flows 20 (forwarded 15, dropped 5, audit 0)",
        "last verdict DROPPED",
        "drop reasons:",
        "  POLICY_DENIED 5",
        "why dropped (policy):",
        "  CiliumNetworkPolicy shop/deny-web 5",
    ] {
        expected.push(format!("│{text:<158}│"));
    }
    expected.extend(lines(&format!("│{}│", " ".repeat(158)), 17));
    expected.push(format!("└{}┘", "─".repeat(158)));
    expected.push("2 of 2 rows │ ? help  q quit  / filter  Enter drill  Esc back  Space pause".into());
    assert_eq!(screen(&app, 160, 48, at(20)), expected);
}

#[test]
fn without_colour_every_cell_is_plain_and_with_it_drops_are_red() {
    let app = shop();
    let draw = |plain: bool| {
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
        terminal.draw(|f| super::frame(f, &app, at(20), plain)).unwrap();
        terminal.backend().buffer().clone()
    };
    // Row 4 is db: DROPS/s 0.3 at columns 63-70.
    let (plain, coloured) = (draw(true), draw(false));
    assert_eq!(plain[(69, 4)].fg, ratatui::style::Color::Reset);
    assert_eq!(coloured[(69, 4)].fg, ratatui::style::Color::Red);
}
