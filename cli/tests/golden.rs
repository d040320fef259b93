//! Golden output of `lumen observe` on fixed responses
//! (tests/fixtures/golden.jsonl: a TCP SYN forwarded to an endpoint, a UDP
//! drop for POLICY_DENIED, an ICMPv4 echo request, a reply, an IPv6 flow,
//! lost events, and a relay's node going away), each next to what `hubble
//! observe` v1.19.4 prints for the same responses. The Hubble texts are
//! worked out by hand from its printer (`hubble/pkg/printer/printer.go`):
//! `fmtTimestamp` in UTC, `Hostname` (`path.Join(ns, pod)`,
//! `net.JoinHostPort`), `GetFlowType` (a drop's type is its reason's text),
//! `getSummary` (the flow's `Summary`), a tabwriter with padding 3, dict
//! keys right-aligned to `DESTINATION`, node events on stderr. Where Lumen
//! differs, the test says how.

mod support;

use support::lumen;

use std::path::Path;

fn fixture() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden.jsonl")
        .display()
        .to_string()
}

/// `lumen observe --input-file golden.jsonl EXTRA…`: (stdout, stderr).
fn observe(extra: &[&str]) -> (String, String) {
    let file = fixture();
    let mut args = vec!["observe", "--input-file", file.as_str()];
    args.extend_from_slice(extra);
    let (code, out, err) = lumen(&args);
    assert_eq!(code, 0, "{err}");
    (out, err)
}

const HUBBLE_COMPACT: &str = "\
Nov 25 01:46:56.162: default/frontend:60060 (ID:2010621) -> default/backend:8080 (ID:10943975) to-endpoint FORWARDED (TCP Flags: SYN)
Nov 25 01:46:57.005: default/frontend:41000 (ID:2010621) <> default/backend:53 (ID:10943975) Policy denied DROPPED (UDP)
Nov 25 01:46:58.250: 1.1.1.1 (world) -> default/backend (ID:10943975) to-endpoint FORWARDED (ICMPv4 EchoRequest)
Nov 25 01:46:59.000: default/frontend:60060 (ID:2010621) <- default/backend:8080 (ID:10943975) from-endpoint FORWARDED (TCP Flags: SYN, ACK)
Nov 25 01:47:00.500: [fd00::1]:44000 (world-ipv6) <> default/backend:443 (ID:10943975) to-endpoint FORWARDED (TCP Flags: ACK, PSH)
Nov 25 01:47:01.000 EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(3) 7
";

/// Hubble's lines, and on a drop whose flow says why, Lumen's
/// ` [denied by …]` (or ` [no policy allowed it; selected by …]`).
const LUMEN_COMPACT: &str = "\
Nov 25 01:46:56.162: default/frontend:60060 (ID:2010621) -> default/backend:8080 (ID:10943975) to-endpoint FORWARDED (TCP Flags: SYN)
Nov 25 01:46:57.005: default/frontend:41000 (ID:2010621) <> default/backend:53 (ID:10943975) Policy denied DROPPED (UDP) [denied by CiliumNetworkPolicy default/deny-dns]
Nov 25 01:46:58.250: 1.1.1.1 (world) -> default/backend (ID:10943975) to-endpoint FORWARDED (ICMPv4 EchoRequest)
Nov 25 01:46:59.000: default/frontend:60060 (ID:2010621) <- default/backend:8080 (ID:10943975) from-endpoint FORWARDED (TCP Flags: SYN, ACK)
Nov 25 01:47:00.500: [fd00::1]:44000 (world-ipv6) <> default/backend:443 (ID:10943975) to-endpoint FORWARDED (TCP Flags: ACK, PSH)
Nov 25 01:47:01.000 EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(3) 7
";

/// What both print on stderr in compact and table output: only nodes that
/// are unavailable or failed.
const NODE_LINE: &str = "Nov 25 01:47:02.000 [relay]: 1 nodes are unavailable: node-3\n";

#[test]
fn compact_is_hubbles_line_and_why_it_was_dropped() {
    let (out, err) = observe(&[]);
    assert_eq!(out, LUMEN_COMPACT);
    assert_eq!(err, NODE_LINE);
    assert_eq!(
        out.replace(" [denied by CiliumNetworkPolicy default/deny-dns]", ""),
        HUBBLE_COMPACT
    );
    assert_eq!(observe(&["--color", "never"]).0, LUMEN_COMPACT);
    let (_, silent) = observe(&["-s"]);
    assert_eq!(silent, "");
}

#[test]
fn compact_with_node_names_times_and_numbers() {
    // hubble observe --print-node-name --time-format RFC3339Micro --numeric
    let hubble = "\
2025-11-25T01:46:56.162Z [node-1]: 10.0.0.1:60060 (ID:2010621) -> 10.0.0.2:8080 (ID:10943975) to-endpoint FORWARDED (TCP Flags: SYN)
2025-11-25T01:46:57.005Z [node-2]: 10.0.0.1:41000 (ID:2010621) <> 10.0.0.2:53 (ID:10943975) Policy denied DROPPED (UDP)
2025-11-25T01:46:58.25Z [node-1]: 1.1.1.1 (world) -> 10.0.0.2 (ID:10943975) to-endpoint FORWARDED (ICMPv4 EchoRequest)
2025-11-25T01:46:59.000001Z [node-1]: 10.0.0.1:60060 (ID:2010621) <- 10.0.0.2:8080 (ID:10943975) from-endpoint FORWARDED (TCP Flags: SYN, ACK)
2025-11-25T01:47:00.5Z [node-2]: [fd00::1]:44000 (world-ipv6) <> [fd00::2]:443 (ID:10943975) to-endpoint FORWARDED (TCP Flags: ACK, PSH)
2025-11-25T01:47:01Z EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(3) 7
";
    let (out, err) = observe(&["--print-node-name", "--time-format", "RFC3339Micro", "--numeric"]);
    assert_eq!(
        out.replace(" [denied by CiliumNetworkPolicy default/deny-dns]", ""),
        hubble
    );
    assert_eq!(err, "2025-11-25T01:47:02Z [relay]: 1 nodes are unavailable: node-3\n");
    assert_eq!(
        observe(&[
            "--print-node-name",
            "--time-format",
            "RFC3339Micro",
            "--ip-translation=false"
        ])
        .0,
        out
    );
    // --last counts every response of the file, as hubble's file reader does.
    let (out, err) = observe(&["--time-format", "RFC1123Z", "--last", "2"]);
    assert_eq!(
        out,
        "Tue, 25 Nov 2025 01:47:01 +0000 EVENTS LOST: PERF_EVENT_RING_BUFFER CPU(3) 7\n"
    );
    assert_eq!(
        err,
        "Tue, 25 Nov 2025 01:47:02 +0000 [relay]: 1 nodes are unavailable: node-3\n"
    );
}

#[test]
fn compact_in_colour() {
    // hubble observe --color always: hosts cyan with the port yellow inside,
    // identities magenta, the verdict green (FORWARDED) or red (DROPPED).
    let hubble =
        "Nov 25 01:46:56.162: \x1b[36mdefault/frontend:\x1b[33m60060\x1b[0m\x1b[0m \x1b[35m(ID:2010621)\x1b[0m -> \
                  \x1b[36mdefault/backend:\x1b[33m8080\x1b[0m\x1b[0m \x1b[35m(ID:10943975)\x1b[0m to-endpoint \
                  \x1b[32mFORWARDED\x1b[0m (TCP Flags: SYN)\n";
    let (out, _) = observe(&["--color", "always", "--first", "1"]);
    assert_eq!(out, hubble);
}

const DICT: &str = "  TIMESTAMP: Nov 25 01:46:56.162
     SOURCE: default/frontend:60060
DESTINATION: default/backend:8080
       TYPE: to-endpoint
    VERDICT: FORWARDED
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Nov 25 01:46:57.005
     SOURCE: default/frontend:41000
DESTINATION: default/backend:53
       TYPE: Policy denied
    VERDICT: DROPPED
    SUMMARY: UDP
------------
  TIMESTAMP: Nov 25 01:46:58.250
     SOURCE: 1.1.1.1
DESTINATION: default/backend
       TYPE: to-endpoint
    VERDICT: FORWARDED
    SUMMARY: ICMPv4 EchoRequest
------------
  TIMESTAMP: Nov 25 01:46:59.000
     SOURCE: default/backend:8080
DESTINATION: default/frontend:60060
       TYPE: from-endpoint
    VERDICT: FORWARDED
    SUMMARY: TCP Flags: SYN, ACK
------------
  TIMESTAMP: Nov 25 01:47:00.500
     SOURCE: [fd00::1]:44000
DESTINATION: default/backend:443
       TYPE: to-endpoint
    VERDICT: FORWARDED
    SUMMARY: TCP Flags: ACK, PSH
------------
  TIMESTAMP: Nov 25 01:47:01.000
     SOURCE: PERF_EVENT_RING_BUFFER
       TYPE: EVENTS LOST
    VERDICT: -
    SUMMARY: CPU(3) - 7
";

#[test]
fn dict_is_hubbles() {
    // Hubble's dict blocks are the same text (a reply is not turned round,
    // there is no line for why a flow was dropped); the node's block goes
    // to stderr, after a separator since blocks came before it.
    let (out, err) = observe(&["-o", "dict"]);
    assert_eq!(out, DICT);
    assert_eq!(
        err,
        "------------\n  TIMESTAMP: Nov 25 01:47:02.000\n      STATE: NODE_UNAVAILABLE\n      NODES: node-3\n    MESSAGE: \"connection refused\"\n"
    );
    let (out, _) = observe(&["-o", "dict", "--print-node-name", "--first", "2"]);
    assert_eq!(
        out,
        "  TIMESTAMP: Nov 25 01:46:56.162
       NODE: node-1
     SOURCE: default/frontend:60060
DESTINATION: default/backend:8080
       TYPE: to-endpoint
    VERDICT: FORWARDED
    SUMMARY: TCP Flags: SYN
------------
  TIMESTAMP: Nov 25 01:46:57.005
       NODE: node-2
     SOURCE: default/frontend:41000
DESTINATION: default/backend:53
       TYPE: Policy denied
    VERDICT: DROPPED
    SUMMARY: UDP
"
    );
}

/// Hubble's tabwriter (minimum width 2, padding 3): every column but the
/// last as wide as its widest cell plus three spaces.
const TABLE: &str = "\
TIMESTAMP             SOURCE                   DESTINATION              TYPE            VERDICT     SUMMARY
Nov 25 01:46:56.162   default/frontend:60060   default/backend:8080     to-endpoint     FORWARDED   TCP Flags: SYN
Nov 25 01:46:57.005   default/frontend:41000   default/backend:53       Policy denied   DROPPED     UDP
Nov 25 01:46:58.250   1.1.1.1                  default/backend          to-endpoint     FORWARDED   ICMPv4 EchoRequest
Nov 25 01:46:59.000   default/backend:8080     default/frontend:60060   from-endpoint   FORWARDED   TCP Flags: SYN, ACK
Nov 25 01:47:00.500   [fd00::1]:44000          default/backend:443      to-endpoint     FORWARDED   TCP Flags: ACK, PSH
Nov 25 01:47:01.000   PERF_EVENT_RING_BUFFER   -                        EVENTS LOST     -           CPU(3) - 7
";

#[test]
fn table_is_hubbles() {
    let (out, err) = observe(&["-o", "table"]);
    assert_eq!(out, TABLE);
    assert_eq!(err, NODE_LINE);
    assert_eq!(
        observe(&["-o", "tab", "--color", "always"]).0,
        TABLE,
        "tables are never coloured"
    );
    let (out, _) = observe(&["-o", "table", "--print-node-name", "--last", "3"]);
    assert_eq!(
        out,
        "\
TIMESTAMP             NODE     SOURCE                   DESTINATION           TYPE          VERDICT     SUMMARY
Nov 25 01:47:00.500   node-2   [fd00::1]:44000          default/backend:443   to-endpoint   FORWARDED   TCP Flags: ACK, PSH
Nov 25 01:47:01.000   node-2   PERF_EVENT_RING_BUFFER   -                     EVENTS LOST   -           CPU(3) - 7
"
    );
    // Without a flow or lost events, Hubble prints no header either.
    let (out, err) = observe(&["-o", "table", "--last", "1"]);
    assert_eq!((out.as_str(), err.as_str()), ("", NODE_LINE));
}

/// Lumen's `-o jsonpb` lines for the drop and the lost events.
const LUMEN_JSONPB: &str = concat!(
    r#"{"flow":{"time":"2025-11-25T01:46:57.005Z","verdict":"DROPPED","IP":{"source":"10.0.0.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":41000,"destination_port":53}},"source":{"identity":2010621,"namespace":"default","pod_name":"frontend"},"destination":{"identity":10943975,"namespace":"default","pod_name":"backend"},"Type":"L3_L4","node_name":"node-2","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","drop_reason_desc":"POLICY_DENIED","ingress_denied_by":[{"name":"deny-dns","namespace":"default","kind":"CiliumNetworkPolicy"}],"Summary":"UDP"},"node_name":"node-2","time":"2025-11-25T01:46:57.005Z"}"#,
    "\n",
    r#"{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7","cpu":3},"node_name":"node-2","time":"2025-11-25T01:47:01Z"}"#,
    "\n",
);

/// Hubble's (protojson with proto names, compacted by Go's JSON encoder):
/// the same keys and values, its keys in the order flow.proto declares
/// them, so `Summary` before `ingress_denied_by`; Lumen's are in field
/// number order.
const HUBBLE_JSONPB: &str = concat!(
    r#"{"flow":{"time":"2025-11-25T01:46:57.005Z","verdict":"DROPPED","IP":{"source":"10.0.0.1","destination":"10.0.0.2","ipVersion":"IPv4"},"l4":{"UDP":{"source_port":41000,"destination_port":53}},"source":{"identity":2010621,"namespace":"default","pod_name":"frontend"},"destination":{"identity":10943975,"namespace":"default","pod_name":"backend"},"Type":"L3_L4","node_name":"node-2","event_type":{"type":1,"sub_type":133},"traffic_direction":"INGRESS","trace_observation_point":"TO_ENDPOINT","drop_reason_desc":"POLICY_DENIED","Summary":"UDP","ingress_denied_by":[{"name":"deny-dns","namespace":"default","kind":"CiliumNetworkPolicy"}]},"node_name":"node-2","time":"2025-11-25T01:46:57.005Z"}"#,
    "\n",
    r#"{"lost_events":{"source":"PERF_EVENT_RING_BUFFER","num_events_lost":"7","cpu":3},"node_name":"node-2","time":"2025-11-25T01:47:01Z"}"#,
    "\n",
);

fn values(lines: &str) -> Vec<serde_json::Value> {
    lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn jsonpb_is_hubbles_get_flows_response() {
    let (out, err) = observe(&["-o", "jsonpb", "--verdict", "DROPPED", "--to-port", "53"]);
    // The node's event stays in the stream (Lumen's choice; Hubble writes
    // it to stderr), so that a saved file replays what the relay said.
    let (flows, node) = out.split_at(out.find(r#"{"node_status""#).unwrap());
    assert_eq!(flows, LUMEN_JSONPB);
    assert_eq!(
        node,
        "{\"node_status\":{\"state_change\":\"NODE_UNAVAILABLE\",\"node_names\":[\"node-3\"],\"message\":\"connection refused\"},\"node_name\":\"relay\",\"time\":\"2025-11-25T01:47:02Z\"}\n"
    );
    assert_eq!(err, "");
    assert_eq!(values(flows), values(HUBBLE_JSONPB));
}

#[test]
fn json_is_the_flow_alone() {
    // hubble's -o json is -o jsonpb unless HUBBLE_COMPAT=legacy-json-output;
    // then it prints the flow alone, as Lumen's -o json does (and Lumen
    // prints nothing for lost events, which hubble's legacy output prints
    // as a LostEvent object).
    let (out, err) = observe(&["-o", "json", "--verdict", "DROPPED"]);
    let flow = &values(LUMEN_JSONPB)[0]["flow"];
    assert_eq!(values(&out), vec![flow.clone()]);
    assert_eq!(err, "");
}
