use axum::body::Body;
use axum::http::Request as HttpRequest;
use http_body_util::BodyExt;
use lumen_proto::flow::Verdict;
use tower::ServiceExt;

use super::*;
use crate::fixtures::{self, CART, DB, WEB};
use crate::hub::Hub;
use crate::query::{parse_node_id, Select};

fn state(token: Option<&str>) -> AppState {
    let mut hub = Hub::new(1000);
    for r in fixtures::traffic() {
        hub.respond(r);
    }
    AppState {
        hub: Arc::new(Shared::new(hub)),
        token: token.map(str::to_string),
        history: None,
    }
}

async fn get(state: AppState, uri: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut request = HttpRequest::get(uri);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = router(state)
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, String::from_utf8(body.to_vec()).unwrap())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn the_map_names_the_policy_of_the_denied_edge() {
    let (status, _, body) = get(state(None), "/api/map", None).await;
    assert_eq!(status, StatusCode::OK);
    let map = json(&body);
    let edge = map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == "workload|shop|web→workload|data|db")
        .unwrap();
    assert_eq!(
        (&edge["flows"], &edge["dropped"], &edge["drop_pct"], &edge["health"]),
        // Two SYNs, each forwarded where it left and dropped where it
        // arrived: all of them denied.
        (&4.into(), &2.into(), &100.0.into(), &"all-dropped".into())
    );
    assert_eq!(edge["ports"], json(r#"["80/TCP"]"#));
    assert_eq!(
        edge["policies"],
        json(r#"[{"name":"CiliumNetworkPolicy data/db-in","count":2}]"#)
    );
    assert_eq!(edge["drop_reasons"], json(r#"[{"name":"POLICY_DENIED","count":2}]"#));
    let ids: Vec<&str> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["workload|data|db", "workload|shop|cart", "workload|shop|web"]);
}

#[tokio::test]
async fn bad_inputs_are_400_with_the_reason() {
    let cases = [
        ("/api/map?unit=service", "invalid unit: \"service\" is not one of workload, pod, identity, namespace, node"),
        ("/api/flows?filter=--verdict+NEVER", "invalid filter: invalid value for --verdict: \"NEVER\" is not a verdict: use one of FORWARDED, DROPPED, AUDIT, REDIRECTED, ERROR, TRACED, TRANSLATED"),
        ("/api/flows?filter=--port", "invalid filter: a value is required for '--port <PORT>' but none was supplied"),
        ("/api/stream?ns=a&ns=b", "parameter \"ns\" given twice"),
        ("/api/health?x=1", "unknown parameter \"x\""),
        ("/api/flows/abc", "invalid flow number: \"abc\""),
        ("/api/export/edges.json?limit=-1", "invalid limit: \"-1\" is not a number from 1 to 10000"),
    ];
    for (uri, reason) in cases {
        let (status, content_type, body) = get(state(None), uri, None).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::BAD_REQUEST, "application/json"),
            "{uri}"
        );
        assert_eq!(json(&body), serde_json::json!({ "error": reason }), "{uri}");
    }
    let (status, _, body) = get(state(None), "/api/export/edges.xml", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        json(&body)["error"],
        "no export \"edges.xml\": edges.json, edges.csv, flows.json or flows.csv"
    );
}

#[tokio::test]
async fn with_a_token_the_api_answers_401_without_it() {
    let s = state(Some("s3cret"));
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("wrong"), StatusCode::UNAUTHORIZED),
        (Some("s3cret"), StatusCode::OK),
    ] {
        let (status, _, body) = get(s.clone(), "/api/map", token).await;
        assert_eq!(status, want, "{token:?}");
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(json(&body)["error"], "this API needs its bearer token");
        }
    }
    // The page itself holds no data: it loads, then asks for the token.
    let (status, content_type, body) = get(s, "/", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "text/html; charset=utf-8")
    );
    assert!(body.contains("<script type=\"module\" src=\"/app.js\"></script>"));
}

#[tokio::test]
async fn the_flows_of_an_edge_are_exactly_its_flows() {
    let (status, _, body) = get(
        state(None),
        "/api/flows?from=workload%7Cshop%7Cweb&to=workload%7Cdata%7Cdb",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = json(&body)["rows"].as_array().unwrap().clone();
    let got: Vec<(u64, &str, &str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["source"].as_str().unwrap(),
                r["destination"].as_str().unwrap(),
                r["verdict"].as_str().unwrap(),
                r["node"].as_str().unwrap(),
                r["policy"].as_str().unwrap(),
            )
        })
        .collect();
    let denied = "denied by CiliumNetworkPolicy data/db-in";
    assert_eq!(
        got,
        [
            (1, "shop/web-0", "data/db-0", "FORWARDED", "n1", ""),
            (2, "shop/web-0", "data/db-0", "DROPPED", "n3", denied),
            (5, "shop/web-0", "data/db-0", "FORWARDED", "n1", ""),
            (6, "shop/web-0", "data/db-0", "DROPPED", "n3", denied),
        ]
    );
    assert_eq!(rows[1]["drop_reason"], "POLICY_DENIED");
    assert_eq!(rows[1]["time"], "2023-11-14T22:13:21.000005Z");
    assert_eq!(rows[1]["tcp_flags"], "SYN");
    assert_eq!(rows[1]["direction"], "INGRESS");
    assert_eq!(rows[1]["source_node"], "workload|shop|web");
    assert_eq!(rows[1]["destination_node"], "workload|data|db");
    // A node's flows: both ways; a limit keeps the newest.
    let (_, _, body) = get(state(None), "/api/flows?node=workload%7Cshop%7Ccart&limit=2", None).await;
    let seqs: Vec<u64> = json(&body)["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 7]);
}

#[tokio::test]
async fn one_flow_has_every_field_in_hubbles_json() {
    let (status, content_type, body) = get(state(None), "/api/flows/2", None).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/json"));
    let flow = json(&body);
    assert_eq!(flow["verdict"], "DROPPED");
    assert_eq!(flow["drop_reason_desc"], "POLICY_DENIED");
    assert_eq!(flow["ingress_denied_by"][0]["name"], "db-in");
    assert_eq!(flow["source"]["labels"][1], "k8s:note=<script>x</script>");
    let (status, _, body) = get(state(None), "/api/flows/99", None).await;
    assert_eq!(
        (status, json(&body)["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("flow 99 is no longer kept"))
    );
}

#[tokio::test]
async fn exports_hold_the_view_as_csv_and_json() {
    let (status, content_type, body) = get(state(None), "/api/export/edges.csv?filter=--verdict+DROPPED", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "text/csv; charset=utf-8")
    );
    assert_eq!(
        body,
        "source,destination,ports,flows,forwarded,dropped,audit,flows_per_sec,drops_per_sec,drop_pct,health,drop_reasons,policies\r\n\
         shop/web,data/db,80/TCP,2,0,2,0,0.00,0.00,100.0,all-dropped,POLICY_DENIED (2),CiliumNetworkPolicy data/db-in (2)\r\n"
    );
    let (_, _, body) = get(
        state(None),
        "/api/export/flows.csv?filter=--verdict+DROPPED&limit=1",
        None,
    )
    .await;
    assert_eq!(
        body,
        "time,source,destination,source_ip,destination_ip,source_port,destination_port,protocol,verdict,drop_reason,policy,node,tcp_flags,direction,summary\r\n\
         2023-11-14T22:13:24.000005Z,shop/web-0,data/db-0,10.0.0.1,10.0.0.3,40000,80,TCP,DROPPED,POLICY_DENIED,denied by CiliumNetworkPolicy data/db-in,n3,SYN,INGRESS,TCP Flags: SYN\r\n"
    );
    let (_, content_type, body) = get(state(None), "/api/export/flows.json?node=workload%7Cshop%7Ccart", None).await;
    assert_eq!(content_type, "application/json");
    assert_eq!(json(&body).as_array().unwrap().len(), 4);
}

#[test]
fn a_stream_sends_the_map_whole_then_only_what_changed() {
    let s = state(None);
    let q = ViewQuery {
        select: Select::Edge(
            parse_node_id("from", "workload|shop|web").unwrap(),
            parse_node_id("to", "workload|data|db").unwrap(),
        ),
        ..ViewQuery::parse(None).unwrap()
    };
    let mut cursor = Cursor::new(q);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(fixtures::T0 as u64 + 3600);
    let first = cursor.next(&s.hub, now).unwrap();
    let map = first.map.as_ref().unwrap();
    assert_eq!((map.nodes.len(), map.edges.len(), first.delta.is_none()), (3, 3, true));
    let seqs: Vec<u64> = first.flows.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [1, 2, 5, 6], "the table starts with the edge's flows");

    let quiet = cursor.next(&s.hub, now).unwrap();
    assert_eq!(
        quiet.delta,
        Some(map::Delta::default()),
        "nothing changed, nothing sent"
    );
    assert!(quiet.flows.is_empty() && quiet.map.is_none());

    s.hub
        .lock()
        .respond(fixtures::syn(20, &WEB, &DB, Verdict::Dropped, "n3"));
    s.hub
        .lock()
        .respond(fixtures::syn(20, &CART, &DB, Verdict::Forwarded, "n2"));
    let next = cursor.next(&s.hub, now).unwrap();
    let delta = next.delta.unwrap();
    let changed: Vec<&str> = delta.edges.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(
        changed,
        ["workload|shop|web→workload|data|db"],
        "the selected edge at once; cart→db's counter moved, but none of what the map shows"
    );
    let nodes: Vec<&str> = delta.nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(nodes, ["workload|data|db", "workload|shop|web"], "their drop % moved");
    assert_eq!((delta.nodes_removed.len(), delta.edges_removed.len()), (0, 0));
    let later = now + Duration::from_millis(map::REFRESH_MS * 3 / 2);
    let due = cursor.next(&s.hub, later).unwrap().delta.unwrap();
    let changed: Vec<&str> = due.edges.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(changed, ["workload|shop|cart→workload|data|db"], "the rest when due");
    let cart = &due.edges[0];
    assert_eq!((cart["flows"].as_u64(), cart["forwarded"].as_u64()), (Some(2), Some(2)));
    let seqs: Vec<u64> = next.flows.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [8], "only the selected edge's new flow");
    assert_eq!(next.totals.flows, 10);
    assert_eq!(s.hub.lock().peek(&key(&cursor.query)).unwrap().users, 1);
    cursor.close(&s.hub);
    assert_eq!(s.hub.lock().peek(&key(&cursor.query)).unwrap().users, 0);
}

#[test]
fn a_burst_of_flows_is_cut_to_a_bounded_message() {
    let s = state(None);
    let mut cursor = Cursor::new(ViewQuery::parse(None).unwrap());
    let now = SystemTime::now();
    cursor.next(&s.hub, now).unwrap();
    for i in 0..(FLOWS_PER_TICK as i64 + 40) {
        s.hub
            .lock()
            .respond(fixtures::syn(100 + i, &WEB, &CART, Verdict::Forwarded, "n1"));
    }
    let m = cursor.next(&s.hub, now).unwrap();
    assert_eq!((m.flows.len(), m.flows_skipped), (FLOWS_PER_TICK, 40));
    assert_eq!(
        m.flows.last().unwrap().seq,
        8 + FLOWS_PER_TICK as u64 + 39,
        "the newest are sent"
    );
}

/// A server's history as a test gives it: these responses (those in the
/// time asked for) or errors, and the requests it was asked.
struct FakeHistory {
    answers: Vec<Result<GetFlowsResponse, String>>,
    asked: std::sync::Mutex<Vec<GetFlowsRequest>>,
}

impl History for FakeHistory {
    fn flows(&self, request: GetFlowsRequest) -> BoxStream<'static, Result<GetFlowsResponse, String>> {
        let time = |t: Option<Timestamp>| t.map(|t| (t.seconds, t.nanos));
        let (since, until) = (time(request.since), time(request.until));
        self.asked.lock().unwrap().push(request);
        let answers = self.answers.iter().filter(|a| match a {
            Ok(r) => (since..=until).contains(&time(r.time)),
            Err(_) => true,
        });
        futures_util::stream::iter(answers.cloned().collect::<Vec<_>>()).boxed()
    }
}

fn at(sec: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs((fixtures::T0 + sec) as u64)
}

/// A hub holding the tests' traffic (T0 to T0 + 5 s) and flows at T0 + 100
/// and T0 + 101; and a history of T0 + 40 to T0 + 100.
fn with_history(answers: Vec<Result<GetFlowsResponse, String>>) -> (AppState, Arc<FakeHistory>) {
    let s = state(None);
    s.hub
        .lock()
        .respond(fixtures::syn(100, &CART, &DB, Verdict::Forwarded, "n2"));
    s.hub
        .lock()
        .respond(fixtures::syn(101, &CART, &DB, Verdict::Forwarded, "n2"));
    let history = Arc::new(FakeHistory {
        answers,
        asked: Default::default(),
    });
    let s = AppState {
        history: Some(history.clone()),
        ..s
    };
    (s, history)
}

fn edge_flows(map: &MapState) -> Vec<(String, u64)> {
    map.edges.iter().map(|e| (e.id.clone(), e.flows)).collect()
}

#[tokio::test]
async fn a_view_of_the_last_minute_starts_from_the_servers_history() {
    let (s, history) = with_history(vec![
        Ok(fixtures::syn(50, &WEB, &CART, Verdict::Forwarded, "n1")),
        Ok(fixtures::syn(60, &CART, &DB, Verdict::Forwarded, "n2")),
        Ok(fixtures::syn(95, &WEB, &DB, Verdict::Dropped, "n3")),
        // After the end asked for (T0 + 100 s + 5 µs): the ring has it.
        Ok(fixtures::syn(100, &CART, &DB, Verdict::Forwarded, "n2")),
    ]);
    let q = ViewQuery::parse(Some("last=1m&filter=--namespace+shop")).unwrap();
    prepare(&s, &q, at(100)).await.unwrap();
    let asked = history.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        (asked[0].since, asked[0].until, asked[0].follow),
        (
            Some(Timestamp {
                seconds: fixtures::T0 + 40,
                nanos: 0
            }),
            Some(Timestamp {
                seconds: fixtures::T0 + 100,
                nanos: 0
            }),
            false
        )
    );
    let pods: Vec<(&[String], &[String])> = asked[0]
        .whitelist
        .iter()
        .map(|f| (&f.source_pod[..], &f.destination_pod[..]))
        .collect();
    let shop = ["shop/".to_string()];
    assert_eq!(
        pods,
        [(&shop[..], &[][..]), (&[][..], &shop[..])],
        "the filter goes to the server"
    );

    // The history's flows, and the ring's after it (T0 + 100 and 101); not
    // the ring's older ones.
    let mut cursor = Cursor::new(q.clone());
    let first = cursor.next(&s.hub, at(101)).unwrap();
    let map = first.map.unwrap();
    assert_eq!(
        edge_flows(&map),
        [
            ("workload|shop|cart→workload|data|db".to_string(), 3),
            ("workload|shop|web→workload|data|db".to_string(), 1),
            ("workload|shop|web→workload|shop|cart".to_string(), 1),
        ]
    );
    assert_eq!(first.notice, None);
    let seqs: Vec<u64> = first.flows.iter().map(|f| f.seq).collect();
    let h = crate::hub::HISTORY_SEQ0;
    assert_eq!(seqs, [h, h + 1, h + 2, 8, 9], "the history's flows, then the ring's");
    let (status, _, body) = get(s.clone(), &format!("/api/flows/{}", h + 2), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (json(&body)["verdict"].as_str(), json(&body)["time"].as_str()),
        (Some("DROPPED"), Some("2023-11-14T22:14:55.000005Z"))
    );

    // A minute later web → cart was last seen more than a minute ago.
    let later = {
        let hub = s.hub.lock();
        map::build(hub.peek(&key(&q)).unwrap(), &q, at(111))
    };
    let ids: Vec<&str> = later.edges.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "workload|shop|cart→workload|data|db",
            "workload|shop|web→workload|data|db"
        ]
    );

    // The same view again is not asked for again.
    prepare(&s, &q, at(102)).await.unwrap();
    assert_eq!(history.asked.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_history_that_breaks_leaves_what_came_and_says_so() {
    let (s, _) = with_history(vec![
        Ok(fixtures::syn(50, &WEB, &CART, Verdict::Forwarded, "n1")),
        Err("Unavailable: the relay went away".to_string()),
    ]);
    let q = ViewQuery::parse(Some("last=1m")).unwrap();
    prepare(&s, &q, at(100)).await.unwrap();
    let message = Cursor::new(q).next(&s.hub, at(101)).unwrap();
    assert_eq!(
        message.notice.as_deref(),
        Some(
            "the server's flows of the last 1m could not all be read (Unavailable: the relay went away): \
             this view has the 1 that came, and lumen-ui's own"
        )
    );
    // The ring's flows after the newest that came: T0 + 100 and 101.
    assert_eq!(
        edge_flows(&message.map.unwrap()),
        [
            ("workload|shop|cart→workload|data|db".to_string(), 2),
            ("workload|shop|web→workload|shop|cart".to_string(), 1),
        ]
    );
}
