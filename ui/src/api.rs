//! The HTTP API, read-only. Every query string is checked ([`crate::query`])
//! and a bad one answered 400 with `{"error": reason}`; with a token, every
//! `/api` request without `Authorization: Bearer <token>` is answered 401.
//!
//! * `GET /api/health`: the link, the server's nodes, lost events.
//! * `GET /api/map?<view>`: the service map of a view.
//! * `GET /api/flows?<view>`: its newest flows (the selected node's or edge's).
//! * `GET /api/flows/<seq>`: one flow, every field (Hubble's JSON).
//! * `GET /api/nodes`: the cluster's nodes as the model counts them.
//! * `GET /api/stream?<view>`: Server-Sent Events, [`TICK`] apart: the map
//!   whole, then what changed, the new flows (at most [`FLOWS_PER_TICK`]),
//!   and the health.
//! * `GET /api/export/{edges,flows}.{json,csv}?<view>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use lumen_model::{Query, Windows};
use lumen_proto::observer::get_flows_response::ResponseTypes;
use lumen_proto::observer::{GetFlowsRequest, GetFlowsResponse};
use lumen_proto::prost_types::Timestamp;
use serde::Serialize;
use serde_json::json;

use crate::hub::{Health, Shared, ViewKey};
use crate::map::{self, MapState, Sent};
use crate::query::{Params, QueryError, ViewQuery};
use crate::rows::{self, FlowRow};

/// Time between two messages of a stream.
pub const TICK: Duration = Duration::from_millis(500);
/// New flows a stream sends per message at most; the rest are counted.
pub const FLOWS_PER_TICK: usize = 250;

/// How long a view of the last N minutes waits for the server's history;
/// it starts with what came by then, and says so.
pub const HISTORY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where views of the last N minutes get their flows: the server's store
/// (a GetFlows request with `since` and `until`).
pub trait History: Send + Sync {
    fn flows(&self, request: GetFlowsRequest) -> BoxStream<'static, Result<GetFlowsResponse, String>>;
}

#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Shared>,
    /// The bearer token the API asks for, if any.
    pub token: Option<String>,
    /// The server's history; without one, views of the last N minutes
    /// start from the ring.
    pub history: Option<Arc<dyn History>>,
}

/// An API error: its status and the reason, as JSON.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/map", get(map_handler))
        .route("/flows", get(flows))
        .route("/flows/{seq}", get(flow))
        .route("/nodes", get(nodes))
        .route("/stream", get(stream))
        .route("/export/{file}", get(export))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such API".into()) })
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .with_state(state);
    Router::new().nest("/api", api).fallback(crate::assets::serve)
}

/// Whether two tokens are equal, in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn auth(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            let mut response =
                ApiError(StatusCode::UNAUTHORIZED, "this API needs its bearer token".into()).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

fn no_params(query: Option<&str>) -> Result<(), ApiError> {
    Params::parse(query, &[])?;
    Ok(())
}

async fn health(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Health>, ApiError> {
    no_params(q.as_deref())?;
    Ok(Json(s.hub.lock().health()))
}

fn key(q: &ViewQuery) -> ViewKey {
    ViewKey {
        filter: q.filter.clone(),
        unit: q.unit,
        last: q.last,
    }
}

/// Makes the view of `q` from the server's history if it is one of the
/// last N minutes not kept yet, as of `now`. A history that fails or takes
/// longer than [`HISTORY_TIMEOUT`] leaves the view with what came (or the
/// ring's flows), and a notice saying so.
pub async fn prepare(s: &AppState, q: &ViewQuery, now: SystemTime) -> Result<(), ApiError> {
    let (Some(last), Some(history)) = (q.last, &s.history) else {
        return Ok(());
    };
    let key = key(q);
    let mut backfill = {
        let hub = s.hub.lock();
        if hub.peek(&key).is_some() {
            return Ok(());
        }
        hub.backfill(&key, now)?
    };
    let flags = crate::filters::FilterFlags::parse_line(&q.filter).map_err(QueryError::Filter)?;
    let request = GetFlowsRequest {
        since: Some(Timestamp::from(now.checked_sub(last).unwrap_or(std::time::UNIX_EPOCH))),
        until: Some(Timestamp::from(now)),
        whitelist: flags.whitelist,
        blacklist: flags.blacklist,
        ..Default::default()
    };
    let mut flows = history.flows(request);
    let deadline = tokio::time::sleep(HISTORY_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = flows.next() => match next {
                Some(Ok(response)) => backfill.take(response),
                Some(Err(e)) => {
                    backfill.cut_short(format!(
                        "the server's flows of the last {} could not all be read ({e}): this view has the {} that came, and lumen-ui's own",
                        humantime::format_duration(last),
                        backfill.responses()
                    ));
                    break;
                }
                None => break,
            },
            () = &mut deadline => {
                backfill.cut_short(format!(
                    "the server's flows of the last {} took longer than {} s: this view has the {} that came by then",
                    humantime::format_duration(last),
                    HISTORY_TIMEOUT.as_secs(),
                    backfill.responses()
                ));
                break;
            }
        }
    }
    s.hub.lock().keep(&key, backfill)?;
    Ok(())
}

/// The map of a view now.
pub fn map_of(hub: &Shared, q: &ViewQuery) -> Result<MapState, ApiError> {
    let mut hub = hub.lock();
    let view = hub.view(&key(q))?;
    Ok(map::build(view, q, SystemTime::now()))
}

async fn map_handler(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<MapState>, ApiError> {
    let q = ViewQuery::parse(q.as_deref())?;
    prepare(&s, &q, SystemTime::now()).await?;
    Ok(Json(map_of(&s.hub, &q)?))
}

/// The newest `q.limit` flows of a view (its selection's), oldest first:
/// the ring's, then its history's.
pub fn flows_of(hub: &Shared, q: &ViewQuery) -> Result<Vec<FlowRow>, ApiError> {
    let mut hub = hub.lock();
    hub.view(&key(q))?;
    let hub = &*hub;
    let view = hub.peek(&key(q)).expect("made above");
    let ring = hub
        .since(0)
        .rev()
        .filter(|stored| match &stored.response.response_types {
            Some(ResponseTypes::Flow(f)) => view.owns(f),
            _ => false,
        });
    let mut rows: Vec<FlowRow> = ring
        .chain(view.history.iter().rev())
        .filter_map(|stored| match &stored.response.response_types {
            Some(ResponseTypes::Flow(f)) if view.filters.matches(f) && view.selects(&q.select, f) => {
                Some(FlowRow::new(stored.seq, f, &view.model))
            }
            _ => None,
        })
        .take(q.limit)
        .collect();
    rows.reverse();
    Ok(rows)
}

#[derive(Serialize)]
struct Flows {
    rows: Vec<FlowRow>,
}

async fn flows(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Json<Flows>, ApiError> {
    let q = ViewQuery::parse(q.as_deref())?;
    prepare(&s, &q, SystemTime::now()).await?;
    Ok(Json(Flows {
        rows: flows_of(&s.hub, &q)?,
    }))
}

async fn flow(State(s): State<AppState>, Path(seq): Path<String>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    no_params(q.as_deref())?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("invalid flow number: {seq:?}")))?;
    let hub = s.hub.lock();
    let stored = hub
        .get(seq)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("flow {seq} is no longer kept")))?;
    let json = lumen_flow::format::json(&stored.response)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("response {seq} is not a flow")))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

async fn nodes(State(s): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    no_params(q.as_deref())?;
    let mut hub = s.hub.lock();
    let health = hub.health();
    let view = hub.view(&ViewKey {
        filter: String::new(),
        unit: lumen_model::Unit::Workload,
        last: None,
    })?;
    let snapshot = view.model.snapshot(SystemTime::now(), Windows::default());
    let table = snapshot.nodes.query(&Query::default());
    Ok(
        Json(json!({ "nodes": table.rows, "server": health.server, "unavailable_nodes": health.unavailable_nodes }))
            .into_response(),
    )
}

async fn export(
    State(s): State<AppState>,
    Path(file): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = ViewQuery::parse(q.as_deref())?;
    prepare(&s, &q, SystemTime::now()).await?;
    let (body, kind) = match file.as_str() {
        "edges.json" => (
            serde_json::to_string_pretty(&map_of(&s.hub, &q)?.edges).expect("serialises"),
            "json",
        ),
        "flows.json" => (
            serde_json::to_string_pretty(&flows_of(&s.hub, &q)?).expect("serialises"),
            "json",
        ),
        "edges.csv" => {
            let map = map_of(&s.hub, &q)?;
            let label = |id: &str| {
                map.nodes
                    .iter()
                    .find(|n| n.id == id)
                    .map_or_else(|| id.to_string(), |n| n.label.clone())
            };
            (rows::edges_csv(&map.edges, label), "csv")
        }
        "flows.csv" => (rows::flows_csv(&flows_of(&s.hub, &q)?), "csv"),
        _ => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("no export {file:?}: edges.json, edges.csv, flows.json or flows.csv"),
            ))
        }
    };
    let content_type = match kind {
        "csv" => "text/csv; charset=utf-8",
        _ => "application/json",
    };
    let disposition = format!("attachment; filename=\"lumen-{file}\"");
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("a plain file name"),
    );
    Ok((headers, body).into_response())
}

/// One message of a stream.
#[derive(Serialize)]
pub struct Message {
    /// The whole map (first message), else what changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub map: Option<MapState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<map::Delta>,
    pub totals: lumen_model::Totals,
    pub namespaces: Vec<String>,
    pub now_ms: u64,
    pub flows: Vec<FlowRow>,
    /// New flows of the view not sent (more than [`FLOWS_PER_TICK`] came).
    pub flows_skipped: usize,
    pub health: Health,
    /// What the page should know of the view (its history cut short).
    pub notice: Option<String>,
}

/// A stream's position: what it sent, up to which response.
pub struct Cursor {
    query: ViewQuery,
    sent: Option<Sent>,
    next: u64,
}

impl Cursor {
    pub fn new(query: ViewQuery) -> Cursor {
        Cursor {
            query,
            sent: None,
            next: 0,
        }
    }

    /// The next message: the map (whole the first time, then what changed)
    /// and the flows since the last one, or the newest `limit` at first.
    pub fn next(&mut self, hub: &Shared, now: SystemTime) -> Result<Message, ApiError> {
        let first = self.sent.is_none();
        let initial = first.then(|| flows_of(hub, &self.query)).transpose()?;
        let mut hub = hub.lock();
        let health = hub.health();
        let key = key(&self.query);
        hub.view(&key)?;
        if first {
            hub.use_view(&key, true);
        }
        let hub = &*hub;
        let view = hub.peek(&key).expect("made above");
        let state = map::build(view, &self.query, now);
        let (flows, skipped) = match initial {
            Some(rows) => (rows, 0),
            None => {
                let mut new: Vec<FlowRow> = Vec::new();
                let mut skipped = 0;
                for stored in hub.since(self.next).rev() {
                    if let Some(ResponseTypes::Flow(f)) = &stored.response.response_types {
                        if view.filters.matches(f) && view.selects(&self.query.select, f) {
                            if new.len() < FLOWS_PER_TICK {
                                new.push(FlowRow::new(stored.seq, f, &view.model));
                            } else {
                                skipped += 1;
                            }
                        }
                    }
                }
                new.reverse();
                (new, skipped)
            }
        };
        self.next = hub.next_seq();
        let sent = self.sent.get_or_insert_with(Sent::default);
        let delta = sent.delta(&state, &self.query.select);
        Ok(Message {
            totals: state.totals.clone(),
            namespaces: state.namespaces.clone(),
            now_ms: state.now_ms,
            map: first.then_some(state),
            delta: (!first).then_some(delta),
            flows,
            flows_skipped: skipped,
            health,
            notice: view.notice.clone(),
        })
    }

    fn close(&self, hub: &Shared) {
        hub.lock().use_view(&key(&self.query), false);
    }
}

/// Tells the hub the stream ended when the browser goes away.
struct Closing {
    cursor: Cursor,
    hub: Arc<Shared>,
}

impl Drop for Closing {
    fn drop(&mut self) {
        self.cursor.close(&self.hub);
    }
}

async fn stream(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let q = ViewQuery::parse(q.as_deref())?;
    prepare(&s, &q, SystemTime::now()).await?;
    let mut cursor = Cursor::new(q);
    // The first message now: a bad view is a 400, not a broken stream.
    let first = cursor.next(&s.hub, SystemTime::now())?;
    let closing = Closing { cursor, hub: s.hub };
    let events = futures_util::stream::unfold((Some(first), closing), |(pending, mut c)| async move {
        let message = match pending {
            Some(m) => m,
            None => {
                tokio::time::sleep(TICK).await;
                match c.cursor.next(&c.hub, SystemTime::now()) {
                    Ok(m) => m,
                    Err(e) => {
                        let event = Event::default().event("error").data(e.1);
                        return Some((Ok(event), (None, c)));
                    }
                }
            }
        };
        let data = serde_json::to_string(&message).expect("messages serialise");
        Some((Ok(Event::default().data(data)), (None, c)))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests;
