//! The HTTP API. Reads need no authentication and are cache-friendly; writes
//! need a bearer token whose role may submit the entry's type. Every error
//! is JSON: `{"error": {"code": "...", "message": "..."}}`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::{parse_canonical, Envelope, Payload, State, MAX_ENVELOPE_BYTES};
use modelgate_store::{read_tile, Nodes};
use modelgate_tlog::{consistency_proof, encode_entry_bundle, inclusion_proof, parse_path, TileId, TilePath};
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

use crate::api_error::ApiError;
use crate::service::{now, summary_json, Authority, NotQueued, Outcome, WriterTrouble};

type Shared = Arc<Authority>;

/// Writes come from the CLI and nodes, never from a web page: a browser's
/// "simple" cross-site request (form or text/plain, no preflight) must not
/// be able to submit one, nor a page on another origin.
/// The client a request came from (for rate limits and body shares).
type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

fn client(peer: &Peer) -> IpAddr {
    peer.as_ref().map_or(IpAddr::from([0, 0, 0, 0]), |p| p.0 .0.ip())
}

/// Read a request's body, once everything its head decides has been
/// decided: within `budget`, at most `max` bytes (see [`modelgate_http::body`]).
/// Every route that takes a body reads it here.
async fn read_body(
    budget: &Arc<modelgate_http::Budget>,
    peer: &Peer,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<modelgate_http::Held, Box<Response>> {
    budget
        .read(client(peer), headers, body, max)
        .await
        .map_err(|e| Box::new(ApiError::Body(e).into_response()))
}

fn cross_site(headers: &HeaderMap) -> Option<Response> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Some(
            ApiError::ContentType("submissions must be sent with Content-Type: application/json".into())
                .into_response(),
        );
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site") || v.eq_ignore_ascii_case("same-site"))
    {
        return Some(ApiError::CrossOrigin("submissions from another site's page are refused".into()).into_response());
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let same = !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if !same {
            return Some(
                ApiError::CrossOrigin(format!(
                    "submissions from origin {origin:?} are refused (this authority is {host:?})"
                ))
                .into_response(),
            );
        }
    }
    None
}

/// The per-client bound on writes that need no token.
fn rate_limited(a: &Authority, peer: &Peer) -> Option<Response> {
    let ip = client(peer);
    match a.unauthenticated.take(ip) {
        Ok(()) => None,
        Err(wait) => {
            a.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            Some(
                ApiError::RateLimited {
                    message: format!(
                        "more than {} unauthenticated writes per second from {ip}",
                        a.unauthenticated.rate()
                    ),
                    seconds: wait.as_secs_f64().ceil() as u64,
                }
                .into_response(),
            )
        }
    }
}

/// The router: every route, the body limit, request counting.
pub fn router(a: Shared) -> Router {
    Router::new()
        .route("/log/checkpoint", get(checkpoint))
        .route("/log/tile/{*path}", get(tile))
        .route("/api/v1/entries", post(submit))
        .route("/api/v1/proof/inclusion", get(inclusion))
        .route("/api/v1/proof/consistency", get(consistency))
        .route("/api/v1/tlog-proof/{index}", get(tlog_proof))
        .route("/api/v1/entries/{index}", get(entry))
        .route("/api/v1/state", get(state))
        .route("/api/v1/trust-root", get(trust_root))
        .route("/api/v1/models", get(models))
        .route("/api/v1/models/{digest}", get(model))
        .route("/api/v1/approvals", get(approvals))
        .route("/api/v1/revocations", get(revocations))
        .route("/api/v1/exceptions", get(exceptions))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/nodes/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/nodes/{id}/lineage", get(lineage_size).post(lineage_post))
        .route("/api/v1/nodes/{id}/lineage/{index}", get(lineage_record))
        .route("/api/v1/nodes/{id}/lineage/{index}/proof", get(lineage_proof))
        .route("/api/v1/lineage", get(lineage_search))
        .route("/api/v1/lineage/evidence", get(lineage_evidence))
        .route("/api/v1/policy", get(policy))
        .route("/api/v1/pending", get(pending_list).post(pending_post))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::NoRoute("no such route (see /openapi.json)".into()).into_response() })
        .layer(middleware::from_fn_with_state(Arc::clone(&a), count))
        .with_state(a)
}

async fn count(AxState(a): AxState<Shared>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    a.counters.http_requests.fetch_add(1, Ordering::Relaxed);
    if resp.status().as_u16() >= 400 {
        a.counters.http_errors.fetch_add(1, Ordering::Relaxed);
    }
    resp
}

/// Approvals waiting for cosigners: who signed, how many more are needed.
async fn pending_list(AxState(a): AxState<Shared>) -> Response {
    Json(json!({"pending": a.pending.list(&a.state(), crate::service::now())})).into_response()
}

/// Post an approval short of its threshold (an approver's or admin's
/// token): kept, its signatures pooled with earlier copies; once they meet
/// the threshold it is submitted to the log (201 with its index).
async fn pending_post(AxState(a): AxState<Shared>, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = cross_site(&headers) {
        return r;
    }
    let Some(token) = bearer(&headers) else {
        return ApiError::MissingToken("an Authorization: Bearer token is required".into()).into_response();
    };
    if let Some(r) = wrong_token(&a, token, "approval") {
        return r;
    }
    let body = match read_body(&a.caller_bodies, &peer, &headers, body, MAX_ENVELOPE_BYTES).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let a2 = Arc::clone(&a);
    let posted = tokio::task::spawn_blocking(move || a2.pending.post(&a2.state(), &body, crate::service::now())).await;
    use crate::pending::{PendingError as P, Posted};
    let complete = match posted {
        Ok(Ok(Posted::Pending(p))) => return (StatusCode::ACCEPTED, Json(json!({"pending": p}))).into_response(),
        Ok(Ok(Posted::Complete(bytes))) => bytes,
        Ok(Err(P::Malformed(m))) => return ApiError::MalformedEntry(m).into_response(),
        Ok(Err(P::Refused(e))) => return ApiError::Refused(e).into_response(),
        Ok(Err(e @ P::NoApprover)) => return ApiError::NoApprover(e.to_string()).into_response(),
        Ok(Err(P::Signature(m))) => return ApiError::PendingSignature(m).into_response(),
        Ok(Err(e @ P::AlreadyApproved { .. })) => return ApiError::AlreadyApproved(e.to_string()).into_response(),
        Ok(Err(e @ P::Full)) => return ApiError::PendingFull(e.to_string()).into_response(),
        Ok(Err(P::Internal(m))) => return ApiError::internal("pending", m).into_response(),
        Err(e) => return ApiError::internal("internal", e.to_string()).into_response(),
    };
    write(&a, &headers, Bytes::from(complete)).await
}

async fn checkpoint(AxState(a): AxState<Shared>) -> Response {
    let note = match a.served.read() {
        Ok(s) => Arc::clone(&s.note),
        Err(_) => return ApiError::internal("internal", "checkpoint lock poisoned").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // A cache may share it for a second: its cosignature is renewed
            // every half second and nodes allow far more staleness.
            (header::CACHE_CONTROL, "public, max-age=1"),
        ],
        note.as_ref().clone(),
    )
        .into_response()
}

fn latest_size(a: &Authority) -> u64 {
    a.served.read().map_or(0, |s| s.size)
}

async fn tile(AxState(a): AxState<Shared>, Path(path): Path<String>) -> Response {
    let parsed = match parse_path(&format!("tile/{path}")) {
        Ok(p) => p,
        Err(e) => return ApiError::BadTilePath(e.to_string()).into_response(),
    };
    let size = latest_size(&a);
    let (id, entries) = match parsed {
        TilePath::Hashes(t) => (t, false),
        TilePath::Entries(t) => (t, true),
    };
    let available = TileId::width_at(id.level, id.index, size).unwrap_or(0);
    if id.width > available {
        return ApiError::NoSuchTile(format!("tile {path} is beyond the log's size {size}")).into_response();
    }
    let a2 = Arc::clone(&a);
    let data = tokio::task::spawn_blocking(move || {
        a2.with_reader(|s| {
            if entries {
                let start = id.index * 256;
                if s.size()? < start + u64::from(id.width) {
                    s.refresh()?;
                }
                let es = s.entries(start, start + u64::from(id.width))?;
                encode_entry_bundle(&es).map_err(|e| modelgate_store::StoreError::Corrupt(e.to_string()))
            } else {
                read_tile(s, id)
            }
        })
    })
    .await;
    match data {
        Ok(Ok(bytes)) => {
            let cache = if id.is_full() {
                "public, max-age=31536000, immutable"
            } else {
                "public, max-age=60"
            };
            (
                [
                    (header::CONTENT_TYPE, "application/octet-stream"),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response()
        }
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => ApiError::internal("internal", e.to_string()).into_response(),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn submit(AxState(a): AxState<Shared>, peer: Peer, headers: HeaderMap, body: Body) -> Response {
    if let Some(r) = cross_site(&headers) {
        return r;
    }
    // Decided on the head: a token must be known before its body is read;
    // without one only node-signed entries are taken, rate-limited per
    // client and read within the strangers' budget.
    let token = bearer(&headers);
    let budget = match token {
        Some(t) => match a.tokens.check(t) {
            Ok(Some(_)) => &a.caller_bodies,
            Ok(None) => return ApiError::UnknownToken("the bearer token is not known".into()).into_response(),
            Err(e) => return ApiError::internal("tokens", e.to_string()).into_response(),
        },
        None => {
            if let Some(r) = rate_limited(&a, &peer) {
                return r;
            }
            &a.stranger_bodies
        }
    };
    let body = match read_body(budget, &peer, &headers, body, MAX_ENVELOPE_BYTES).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let kind = match Envelope::parse(&body).and_then(|env| {
        let v =
            parse_canonical(&env.payload).map_err(|e| modelgate_governance::EntryError::Malformed(e.to_string()))?;
        Payload::decode(v)
    }) {
        Ok(p) => p.kind(),
        Err(e) => return ApiError::MalformedEntry(e.to_string()).into_response(),
    };
    // A node authenticates by its enrolled key: its anchors and reports are
    // accepted without a token because the fold accepts them only when
    // signed by that node's key. A token, if given, must still be valid.
    let node_signed = matches!(kind, "node-anchor" | "containment-report");
    match token {
        None if node_signed => {}
        None => {
            return ApiError::MissingToken("an Authorization: Bearer token is required to submit".into())
                .into_response()
        }
        Some(token) => {
            if let Some(r) = wrong_token(&a, token, kind) {
                return r;
            }
        }
    }
    write(&a, &headers, body.bytes().clone()).await
}

/// Append a checked submission here, or on a replica pass it to the sequencer.
async fn write(a: &Shared, headers: &HeaderMap, body: Bytes) -> Response {
    match a.sequencing.role() {
        crate::store::Role::Replica(_) => forward(a, headers, body).await,
        _ => append(a, body.to_vec()).await,
    }
}

/// Largest answer a replica passes back from the sequencer.
const FORWARDED_ANSWER_MAX: u64 = 1 << 20;
/// How long a replica waits for a sequencer it can reach (a takeover under
/// way) before it answers 503.
const FORWARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a write was not passed on.
enum NotPassed {
    /// It never reached the sequencer (refused, unreachable): safe to send again.
    Undelivered(String),
    /// It may have reached it: not sent again, the client decides.
    Unanswered(String),
}

/// Send `body` to the sequencer at `url`: its status, Retry-After and body.
async fn pass_on(
    a: &Shared,
    url: &str,
    auth: Option<String>,
    body: Bytes,
) -> Result<(u16, Option<String>, Vec<u8>), NotPassed> {
    let agent = a.forwarder.clone();
    let to = format!("{url}/api/v1/entries");
    tokio::task::spawn_blocking(move || {
        let mut req = agent
            .post(&to)
            .header("Content-Type", "application/json")
            .header(crate::api_error::FORWARDED_HEADER, "1");
        if let Some(t) = auth {
            req = req.header("Authorization", &t);
        }
        let mut r = req.send(&body[..]).map_err(|e| match &e {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => NotPassed::Undelivered(e.to_string()),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                NotPassed::Undelivered(e.to_string())
            }
            _ => NotPassed::Unanswered(e.to_string()),
        })?;
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = r
            .body_mut()
            .with_config()
            .limit(FORWARDED_ANSWER_MAX)
            .read_to_vec()
            .map_err(|e| NotPassed::Unanswered(e.to_string()))?;
        Ok((r.status().as_u16(), retry, bytes))
    })
    .await
    .map_err(|e| NotPassed::Unanswered(e.to_string()))?
}

/// On a replica: pass a checked submission to the sequencer and its answer
/// back (201 with the index, or the sequencer's refusal), with the
/// sequencer named in `Modelgate-Sequencer`. While a takeover is under way
/// (no sequencer, or one that cannot be reached) it waits up to
/// [`FORWARD_PATIENCE`] — and appends itself if it wins the lease; then 503
/// with Retry-After. A request already passed on once is never passed on
/// again.
async fn forward(a: &Shared, headers: &HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
    let mut why = "no authority holds the sequencer lease now (a takeover is under way)".to_owned();
    let mut named = None;
    while tokio::time::Instant::now() < deadline {
        let holder = match a.sequencing.role() {
            crate::store::Role::Replica(h) => h,
            _ => return append(a, body.to_vec()).await,
        };
        match holder {
            Some(h) if !h.url.is_empty() => {
                let url = h.url;
                if !a.sequencing.may_pass_to(&url) {
                    return ApiError::NotSequencer {
                        message: format!(
                            "this authority is a replica and the sequencer advertises {url}, which is not one of \
                             its --peer-url authorities: nothing was passed on"
                        ),
                        sequencer: None,
                    }
                    .into_response();
                }
                if headers.contains_key(crate::api_error::FORWARDED_HEADER) {
                    return ApiError::NotSequencer {
                        message: format!("this authority is a replica too; submit to the sequencer at {url}"),
                        sequencer: Some(url),
                    }
                    .into_response();
                }
                match pass_on(a, &url, auth.clone(), body.clone()).await {
                    Ok((status, retry, bytes)) => {
                        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                        let mut r = (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
                        if let Some(v) = retry.and_then(|v| HeaderValue::from_str(&v).ok()) {
                            r.headers_mut().insert(header::RETRY_AFTER, v);
                        }
                        if let Ok(v) = HeaderValue::from_str(&url) {
                            r.headers_mut().insert(crate::api_error::SEQUENCER_HEADER, v);
                        }
                        return r;
                    }
                    Err(NotPassed::Undelivered(e)) => {
                        why = format!("the sequencer at {url} cannot be reached ({e})");
                        named = Some(url);
                    }
                    Err(NotPassed::Unanswered(e)) => {
                        return ApiError::NotSequencer {
                            message: format!(
                                "this authority is a replica and the sequencer at {url} did not answer ({e}); \
                                 the entry may or may not be in the log"
                            ),
                            sequencer: Some(url),
                        }
                        .into_response()
                    }
                }
            }
            Some(h) => why = format!("the sequencer ({}) has not advertised its URL yet", h.lease.holder),
            None => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ApiError::NotSequencer {
        message: format!("this authority is a replica and {why}; retry"),
        sequencer: named,
    }
    .into_response()
}

/// The refusal, unless `token` names a role that may submit entries of `kind`.
fn wrong_token(a: &Authority, token: &str, kind: &str) -> Option<Response> {
    let refusal = match a.tokens.check(token) {
        Ok(Some((role, _))) if role.may_submit(kind) => return None,
        Ok(Some((role, _))) => ApiError::WrongRole(format!("a {role:?} token may not submit {kind} entries")),
        Ok(None) => ApiError::UnknownToken("the bearer token is not known".into()),
        Err(e) => ApiError::internal("tokens", e.to_string()),
    };
    Some(refusal.into_response())
}

/// Queue `entry` for the writer and answer once it is durable (201 with its
/// index) or refused.
async fn append(a: &Authority, entry: Vec<u8>) -> Response {
    let rx = match a.submit(entry) {
        Ok(rx) => rx,
        Err(e @ NotQueued::Busy) => return ApiError::Busy(e.message().to_string()).into_response(),
        Err(e @ (NotQueued::ShuttingDown | NotQueued::WriterStopped)) => {
            return ApiError::Unavailable(e.message().to_string()).into_response()
        }
    };
    match rx.await {
        Ok(Outcome::Accepted { index, checkpoint }) => (
            StatusCode::CREATED,
            Json(json!({"index": index, "checkpoint": String::from_utf8_lossy(&checkpoint)})),
        )
            .into_response(),
        Ok(Outcome::Refused(e)) => ApiError::Refused(e).into_response(),
        Ok(Outcome::Failed(m)) => {
            ApiError::StoreUnavailable(format!("the store could not write; nothing was appended, retry: {m}"))
                .into_response()
        }
        Ok(Outcome::NotSequencer) => ApiError::NotSequencer {
            message: "this authority is no longer the sequencer; nothing was appended, retry".into(),
            sequencer: None,
        }
        .into_response(),
        Err(_) => ApiError::Unavailable("the writer stopped before answering".into()).into_response(),
    }
}

#[derive(Deserialize)]
struct InclusionQuery {
    index: u64,
    size: Option<u64>,
}

async fn inclusion(AxState(a): AxState<Shared>, Query(q): Query<InclusionQuery>) -> Response {
    let size = q.size.unwrap_or_else(|| latest_size(&a));
    if size > latest_size(&a) || q.index >= size {
        return ApiError::OutOfRange(format!(
            "index {} is not in a tree of size {size} (log size {})",
            q.index,
            latest_size(&a)
        ))
        .into_response();
    }
    let a2 = Arc::clone(&a);
    let r = tokio::task::spawn_blocking(move || {
        a2.with_reader(|s| {
            inclusion_proof(q.index, size, &Nodes(&*s))
                .map_err(|e| modelgate_store::StoreError::NotFound(e.to_string()))
        })
    })
    .await;
    match r {
        Ok(Ok(p)) => {
            Json(json!({"index": q.index, "size": size, "hashes": p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>()}))
                .into_response()
        }
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => ApiError::internal("internal", e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct ConsistencyQuery {
    from: u64,
    to: Option<u64>,
}

async fn consistency(AxState(a): AxState<Shared>, Query(q): Query<ConsistencyQuery>) -> Response {
    let to = q.to.unwrap_or_else(|| latest_size(&a));
    if to > latest_size(&a) || q.from > to {
        return ApiError::OutOfRange(format!(
            "sizes {} → {to} are not within the log (size {})",
            q.from,
            latest_size(&a)
        ))
        .into_response();
    }
    let a2 = Arc::clone(&a);
    let r = tokio::task::spawn_blocking(move || {
        a2.with_reader(|s| {
            let nf = |e: String| modelgate_store::StoreError::NotFound(e);
            let proof = consistency_proof(q.from, to, &Nodes(&*s)).map_err(|e| nf(e.to_string()))?;
            // The root at `from` the proof implies: a split-view check
            // compares it with another node's signed checkpoint.
            let from_root = modelgate_tlog::root_at(q.from, &Nodes(&*s))?;
            Ok((proof, from_root))
        })
    })
    .await;
    match r {
        Ok(Ok((p, from_root))) => Json(json!({
            "from": q.from,
            "to": to,
            "hashes": p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
            "from_root": B64.encode(from_root),
        }))
        .into_response(),
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => ApiError::internal("internal", e.to_string()).into_response(),
    }
}

/// A 404 for an index the log does not have yet.
fn out_of_range(index: u64, size: u64) -> Option<Response> {
    (index >= size)
        .then(|| ApiError::NotInLog(format!("index {index} is not in the log (size {size})")).into_response())
}

/// One entry's exact bytes (what its leaf hash covers).
async fn entry(AxState(a): AxState<Shared>, Path(index): Path<u64>) -> Response {
    let size = latest_size(&a);
    if let Some(r) = out_of_range(index, size) {
        return r;
    }
    let a2 = Arc::clone(&a);
    let r = tokio::task::spawn_blocking(move || a2.with_reader(|s| s.entries(index, index + 1))).await;
    match r {
        Ok(Ok(mut e)) if e.len() == 1 => ([(header::CONTENT_TYPE, "application/json")], e.remove(0)).into_response(),
        Ok(Ok(_)) => ApiError::internal("store", "entry missing").into_response(),
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => ApiError::internal("internal", e.to_string()).into_response(),
    }
}

async fn tlog_proof(AxState(a): AxState<Shared>, Path(index): Path<u64>) -> Response {
    let size = a.served.read().map_or(0, |s| s.size);
    if let Some(r) = out_of_range(index, size) {
        return r;
    }
    match tokio::task::spawn_blocking(move || a.tlog_proof(index)).await {
        Ok(Ok(Some(proof))) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], proof).into_response(),
        Ok(Ok(None)) => ApiError::NotInLog(format!("index {index} is not in the log (size {size})")).into_response(),
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => ApiError::internal("internal", e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
struct StateQuery {
    size: Option<u64>,
}

fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The state's summary at the latest size, at a recent checkpoint size (kept
/// by the writer), or refolded for an older size — one refold at a time.
async fn state(AxState(a): AxState<Shared>, Query(q): Query<StateQuery>) -> Response {
    let Some(n) = q.size else {
        return json_bytes(a.latest().1);
    };
    if let Some(s) = a.summary_at(n) {
        return json_bytes(s);
    }
    let current = a.size();
    if n == 0 || n > current {
        return ApiError::OutOfRange(format!("size {n} is not between 1 and {current}")).into_response();
    }
    let Ok(_permit) = a.refolds.try_acquire() else {
        return ApiError::Busy("another past state is being refolded; retry".into()).into_response();
    };
    let a2 = Arc::clone(&a);
    let r = tokio::task::spawn_blocking(move || {
        let entries = a2.with_reader(|s| s.entries(0, n)).map_err(|e| e.to_string())?;
        modelgate_governance::fold(&a2.trust_root, entries.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
    })
    .await;
    match r {
        Ok(Ok(s)) => json_bytes(summary_json(&s)),
        Ok(Err(e)) => ApiError::internal("fold", e).into_response(),
        Err(_) => ApiError::internal("internal", "the refold stopped").into_response(),
    }
}

/// A JSON view of the state, encoded off the async workers (a list of
/// every approval can take milliseconds).
async fn with_state(a: &Authority, f: impl FnOnce(&State) -> Value + Send + 'static) -> Response {
    let state = a.state();
    match tokio::task::spawn_blocking(move || serde_json::to_vec(&f(&state))).await {
        Ok(Ok(bytes)) => json_bytes(Bytes::from(bytes)),
        _ => ApiError::internal("internal", "encoding the state failed").into_response(),
    }
}

async fn trust_root(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.trust_root.as_ref().map(|r| &r.doc))).await
}

async fn models(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.models.values().collect::<Vec<_>>())).await
}

async fn model(AxState(a): AxState<Shared>, Path(digest): Path<String>) -> Response {
    let s = a.state();
    match s.models.get(&digest) {
        Some(m) => {
            let approvals: Vec<_> = s
                .grants_of_model(&digest)
                .filter_map(|id| s.approvals.get(id))
                .collect();
            let exceptions: Vec<_> = s
                .grants_of_model(&digest)
                .filter_map(|id| s.exceptions.get(id))
                .collect();
            Json(json!({"model": m, "approvals": approvals, "exceptions": exceptions,
                        "revocation": s.revocations.get(&digest)}))
            .into_response()
        }
        None => ApiError::UnknownModel(format!("model {digest} is not registered")).into_response(),
    }
}

async fn approvals(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.approvals.values().collect::<Vec<_>>())).await
}

async fn revocations(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.revocations.values().collect::<Vec<_>>())).await
}

async fn exceptions(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.exceptions.values().collect::<Vec<_>>())).await
}

async fn nodes(AxState(a): AxState<Shared>) -> Response {
    let beats = match a.heartbeats.lock() {
        Ok(h) => h.clone(),
        Err(_) => return ApiError::internal("internal", "lock poisoned").into_response(),
    };
    with_state(&a, move |s| {
        json!(s
            .nodes
            .values()
            .map(|n| {
                let mut v = json!(n);
                v["last_heartbeat"] = beats
                    .get(&n.id)
                    .map_or(Value::Null, |h| json!({"time": h.time, "summary": h.summary}));
                v
            })
            .collect::<Vec<_>>())
    })
    .await
}

/// A node's write (a heartbeat, a lineage batch): it needs no token, so it
/// is rate-limited per client and its node must be enrolled, both decided on
/// the head; then its body is read within the strangers' budget. Returns
/// the body and the node's enrolled key.
async fn node_write(
    a: &Authority,
    peer: &Peer,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<(modelgate_http::Held, String), Box<Response>> {
    if let Some(r) = rate_limited(a, peer) {
        return Err(Box::new(r));
    }
    let key = node_key(a, id)?;
    Ok((read_body(&a.stranger_bodies, peer, headers, body, max).await?, key))
}

/// Heartbeat clock window: how far a node's clock may be behind or ahead.
const HEARTBEAT_WINDOW_SECONDS: u64 = 300;

/// A node's heartbeat: a note signed by its enrolled key (see
/// `modelgate_governance::heartbeat`). Kept in memory, latest per node.
async fn heartbeat(
    AxState(a): AxState<Shared>,
    peer: Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use modelgate_governance::heartbeat::verify_heartbeat;
    let (body, key) = match node_write(&a, &peer, &id, &headers, body, MAX_ENVELOPE_BYTES).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let key = match modelgate_tlog::VerifierKey::parse(&key) {
        Ok(k) => k,
        Err(e) => return ApiError::internal("internal", format!("enrolled key: {e}")).into_response(),
    };
    if std::str::from_utf8(&body).is_err() {
        return ApiError::BadText("a heartbeat is a signed note: UTF-8 text".into()).into_response();
    }
    let hb = match verify_heartbeat(&body, &id, &key) {
        Ok(h) => h,
        Err(e) => return ApiError::HeartbeatInvalid(e.to_string()).into_response(),
    };
    let t = now();
    if hb.time + HEARTBEAT_WINDOW_SECONDS < t || hb.time > t + HEARTBEAT_WINDOW_SECONDS {
        return ApiError::HeartbeatTime(format!(
            "heartbeat time {} is not within {HEARTBEAT_WINDOW_SECONDS} s of {t}",
            hb.time
        ))
        .into_response();
    }
    let Ok(mut beats) = a.heartbeats.lock() else {
        return ApiError::internal("internal", "lock poisoned").into_response();
    };
    if let Some(prev) = beats.get(&id) {
        if hb.time <= prev.time {
            return ApiError::HeartbeatReplayed(format!(
                "heartbeat time {} is not after the previous one ({})",
                hb.time, prev.time
            ))
            .into_response();
        }
    }
    beats.insert(id, hb);
    StatusCode::NO_CONTENT.into_response()
}

/// The enrolled key of node `id`, or the answer for a node not enrolled.
fn node_key(a: &Authority, id: &str) -> Result<String, Box<Response>> {
    a.state()
        .nodes
        .get(id)
        .map(|n| n.key.clone())
        .ok_or_else(|| Box::new(ApiError::NodeUnknown(format!("node {id} is not enrolled")).into_response()))
}

fn lineage_error(e: crate::lineage::LineageError) -> Response {
    use crate::lineage::LineageError as L;
    match e {
        L::Gap { size } => {
            let mut r = ApiError::LineageGap(format!(
                "the authority holds {size} records of this node; send from there"
            ))
            .into_response();
            if let Ok(v) = axum::http::HeaderValue::from_str(&size.to_string()) {
                r.headers_mut().insert("x-modelgate-lineage-size", v);
            }
            r
        }
        L::Invalid(m) => ApiError::LineageInvalid(m).into_response(),
        L::Content(m) => ApiError::LineageContent(m).into_response(),
        L::Inconsistent(m) => ApiError::LineageInconsistent(m).into_response(),
        L::Store(m) => ApiError::internal("lineage", m).into_response(),
    }
}

/// Run a read of the replicated lineage off the async threads; its result as JSON.
async fn lineage_read<T: serde::Serialize + Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::lineage::LineageError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => lineage_error(e),
        Err(e) => ApiError::internal("internal", e).into_response(),
    }
}

/// How many records of node `id` the authority holds.
async fn lineage_size(AxState(a): AxState<Shared>, Path(id): Path<String>) -> Response {
    let key = match node_key(&a, &id) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    lineage_read(move || a.lineage.size(&id, &key).map(|size| json!({ "size": size }))).await
}

/// A node's lineage batch: kept only when its records make the node's
/// signed checkpoint and agree with what is held and anchored.
async fn lineage_post(
    AxState(a): AxState<Shared>,
    peer: Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let max = crate::lineage::MAX_BATCH_BYTES;
    let (body, key) = match node_write(&a, &peer, &id, &headers, body, max).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let batch: crate::lineage::LineageBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return ApiError::LineageInvalid(format!("not a lineage batch: {e}")).into_response(),
    };
    // The body's room in the budget is given back once it is parsed.
    drop(body);
    let state = a.state();
    let Some(node) = state.nodes.get(&id) else {
        return ApiError::NodeUnknown(format!("node {id} is not enrolled")).into_response();
    };
    if node.key != key {
        return ApiError::NodeUnknown(format!("node {id} was enrolled again meanwhile; send again")).into_response();
    }
    let anchor_index = node.anchor.as_ref().map(|x| x.index);
    drop(state);
    let t = now();
    let r = tokio::task::spawn_blocking(move || {
        // The latest anchor's signed checkpoint, from its entry in the log.
        let anchored = match anchor_index {
            Some(i) => {
                let entry = a
                    .entries(i, i + 1)
                    .map_err(|e| crate::lineage::LineageError::Store(e.to_string()))?
                    .pop()
                    .unwrap_or_default();
                match Envelope::parse(&entry)
                    .ok()
                    .and_then(|e| parse_canonical(&e.payload).ok())
                    .and_then(|p| Payload::decode(p).ok())
                {
                    Some(Payload::NodeAnchor(an)) => Some(an.checkpoint.into_bytes()),
                    _ => None,
                }
            }
            None => None,
        };
        a.lineage.ingest(&id, &key, anchored.as_deref(), &batch, t)
    })
    .await;
    match r {
        Ok(Ok(size)) => Json(json!({ "size": size })).into_response(),
        Ok(Err(e)) => lineage_error(e),
        Err(e) => ApiError::internal("internal", e).into_response(),
    }
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    offset: u64,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    50
}

/// Search the replicated lineage (metadata only).
async fn lineage_search(
    AxState(a): AxState<Shared>,
    Query(q): Query<crate::lineage::Search>,
    Query(p): Query<Paging>,
) -> Response {
    lineage_read(move || {
        a.lineage
            .search(&q, p.offset, p.limit)
            .map(|rows| json!({ "records": rows }))
    })
    .await
}

/// The full-chain proof of a replicated record (`modelgate lineage verify`).
async fn lineage_proof(AxState(a): AxState<Shared>, Path((id, index)): Path<(String, u64)>) -> Response {
    use crate::proof::ProofUnavailable as P;
    match tokio::task::spawn_blocking(move || crate::proof::full_proof(&a, &id, index)).await {
        Ok(Ok(p)) => Json(p).into_response(),
        Ok(Err(P::NotFound(m))) => ApiError::NotInLog(m).into_response(),
        Ok(Err(P::NotYet(m))) => ApiError::NotYetAnchored(m).into_response(),
        Ok(Err(P::Store(m))) => ApiError::internal("lineage", m).into_response(),
        Err(e) => ApiError::internal("internal", e).into_response(),
    }
}

/// Evidence of nodes that signed two histories.
async fn lineage_evidence(AxState(a): AxState<Shared>) -> Response {
    lineage_read(move || a.lineage.evidence().map(|ev| json!({ "evidence": ev }))).await
}

/// One replicated record, with its inclusion proof in the node's latest
/// signed checkpoint held.
async fn lineage_record(AxState(a): AxState<Shared>, Path((id, index)): Path<(String, u64)>) -> Response {
    let key = match node_key(&a, &id) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    match tokio::task::spawn_blocking(move || a.lineage.record(&id, &key, index)).await {
        Ok(Ok(Some(p))) => Json(json!({
            "index": index,
            "record": serde_json::from_slice::<Value>(&p.record).unwrap_or(Value::Null),
            "entry": B64.encode(&p.record),
            "checkpoint": String::from_utf8_lossy(&p.checkpoint),
            "inclusion": p.inclusion.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        }))
        .into_response(),
        Ok(Ok(None)) => {
            ApiError::NotInLog(format!("the authority holds no record {index} of this node")).into_response()
        }
        Ok(Err(e)) => lineage_error(e),
        Err(e) => ApiError::internal("internal", e).into_response(),
    }
}

async fn policy(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.policy.as_ref())).await
}

async fn readyz(AxState(a): AxState<Shared>) -> Response {
    match a.writer_trouble() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(WriterTrouble::Stopped) => ApiError::NotReady("the writer is not running".into()).into_response(),
        Some(WriterTrouble::Stalled(d)) => {
            ApiError::WriterStalled(format!("a durable write has not returned for {} ms", d.as_millis()))
                .into_response()
        }
        Some(WriterTrouble::Failing(e)) => {
            ApiError::WriterFailing(format!("the last durable write failed: {e}")).into_response()
        }
    }
}

async fn metrics(AxState(a): AxState<Shared>) -> Response {
    let c = &a.counters;
    let (size, time) = a.served.read().map_or((0, 0), |s| (s.size, s.time));
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let sequencing = !matches!(a.sequencing.role(), crate::store::Role::Replica(_));
    let rows: [(&str, &str, &str, u64); 13] = [
        ("modelgate_log_size", "gauge", "Entries in the governance log.", size),
        (
            "modelgate_sequencer",
            "gauge",
            "1 while this authority sequences the log, 0 while it is a replica of a shared database.",
            u64::from(sequencing),
        ),
        (
            "modelgate_checkpoint_cosignature_age_seconds",
            "gauge",
            "Age of the served checkpoint's cosignature.",
            now().saturating_sub(time),
        ),
        (
            "modelgate_entries_appended_total",
            "counter",
            "Entries appended.",
            load(&c.appended),
        ),
        (
            "modelgate_batches_total",
            "counter",
            "Batches committed (one fsync each).",
            load(&c.batches),
        ),
        (
            "modelgate_submissions_refused_total",
            "counter",
            "Submissions the fold's rules refused.",
            load(&c.refused),
        ),
        (
            "modelgate_submissions_busy_total",
            "counter",
            "Submissions refused because the queue was full.",
            load(&c.busy),
        ),
        (
            "modelgate_store_failures_total",
            "counter",
            "Batches the store failed to write.",
            load(&c.store_failures),
        ),
        (
            "modelgate_http_requests_total",
            "counter",
            "HTTP requests served.",
            load(&c.http_requests),
        ),
        (
            "modelgate_http_errors_total",
            "counter",
            "HTTP responses with status 400 or above.",
            load(&c.http_errors),
        ),
        (
            "modelgate_ready",
            "gauge",
            "1 while the writer runs.",
            u64::from(a.ready.load(Ordering::SeqCst)),
        ),
        (
            "modelgate_writer_healthy",
            "gauge",
            "1 while the writer is neither stalled (a write over 2 s) nor failing.",
            u64::from(a.writer_trouble().is_none()),
        ),
        (
            "modelgate_rate_limited_total",
            "counter",
            "Unauthenticated writes refused by the per-client rate limit.",
            load(&c.rate_limited),
        ),
    ];
    use modelgate_http::prometheus::{Kind, Text};
    let mut out = Text::new();
    for (name, kind, help, value) in rows {
        let kind = if kind == "counter" { Kind::Counter } else { Kind::Gauge };
        out.single(name, kind, help, value);
    }
    out.family(
        "modelgate_http_body_bytes_held",
        Kind::Gauge,
        "Request bodies held in memory now, by class (stranger: writes with no token).",
    );
    for (class, b) in [("stranger", &a.stranger_bodies), ("caller", &a.caller_bodies)] {
        out.sample("modelgate_http_body_bytes_held", &[("class", class)], b.held_bytes());
    }
    if let Some(w) = a.witnesses.lock().ok().and_then(|w| w.clone()) {
        let latest = a.latest().0;
        let (ms, failing) = (
            w.latencies.lock().ok().and_then(|l| l.back().map(|x| x.1)).unwrap_or(0),
            w.trouble.lock().map_or(0, |t| t.len()),
        );
        for (name, help, value) in [
            (
                "modelgate_witnesses",
                "Witnesses asked to cosign each checkpoint.",
                w.len() as u64,
            ),
            (
                "modelgate_witnesses_failing",
                "Witnesses whose last request gave no cosignature.",
                failing as u64,
            ),
            (
                "modelgate_unwitnessed_entries",
                "Entries appended but not yet in a checkpoint that met the witness quorum.",
                latest.saturating_sub(size),
            ),
            (
                "modelgate_witness_publication_milliseconds",
                "From the append to the quorum, for the last checkpoint published.",
                ms,
            ),
        ] {
            out.single(name, Kind::Gauge, help, value);
        }
    }
    out.into_response()
}

async fn openapi() -> Response {
    let mut paths = BTreeMap::new();
    for (path, method, summary) in [
        (
            "/log/checkpoint",
            "get",
            "The latest checkpoint (C2SP signed note) with the authority's timestamped cosignature.",
        ),
        (
            "/log/tile/{L}/{N}",
            "get",
            "A C2SP tlog-tiles hash tile (N in x001/x234/067 form, optional .p/W).",
        ),
        ("/log/tile/entries/{N}", "get", "A C2SP entry bundle."),
        (
            "/api/v1/entries",
            "post",
            "Submit a governance entry (DSSE envelope); bearer token with a role for its type.",
        ),
        (
            "/api/v1/proof/inclusion",
            "get",
            "Inclusion proof: ?index=I&size=S (size defaults to the served checkpoint).",
        ),
        ("/api/v1/proof/consistency", "get", "Consistency proof: ?from=M&to=N; with from_root, the root at M the proof implies."),
        (
            "/api/v1/tlog-proof/{index}",
            "get",
            "A C2SP tlog-proof for an entry against the served checkpoint.",
        ),
        (
            "/api/v1/state",
            "get",
            "Governance state summary and digest (?size=N for a past size).",
        ),
        ("/api/v1/trust-root", "get", "The trust root in force."),
        ("/api/v1/models", "get", "Registered models."),
        (
            "/api/v1/models/{digest}",
            "get",
            "One model, its approvals and revocation.",
        ),
        ("/api/v1/approvals", "get", "Approvals."),
        ("/api/v1/revocations", "get", "Revocations."),
        ("/api/v1/exceptions", "get", "Exceptions."),
        ("/api/v1/entries/{index}", "get", "One entry's exact signed bytes."),
        (
            "/api/v1/nodes",
            "get",
            "Enrolled nodes, their anchors, reports and latest heartbeat.",
        ),
        (
            "/api/v1/nodes/{id}/heartbeat",
            "post",
            "A node's heartbeat: a note signed by its enrolled key (modelgate-heartbeat/v1).",
        ),
        (
            "/api/v1/nodes/{id}/lineage",
            "get",
            "How many of the node's lineage records the authority holds: {\"size\": N}.",
        ),
        (
            "/api/v1/nodes/{id}/lineage",
            "post",
            "A node's lineage batch: {from, records (base64), checkpoint (signed by the node), consistency}; kept only when it proves itself (409 lineage-gap with x-modelgate-lineage-size, 422 lineage-invalid or lineage-content, 409 lineage-inconsistent: kept as evidence).",
        ),
        (
            "/api/v1/nodes/{id}/lineage/{index}",
            "get",
            "One replicated record with its inclusion proof in the node's latest checkpoint held.",
        ),
        (
            "/api/v1/nodes/{id}/lineage/{index}/proof",
            "get",
            "The record's full-chain proof (modelgate-lineage-proof/v2; 409 not-yet-anchored before the node's anchor covers it).",
        ),
        (
            "/api/v1/lineage",
            "get",
            "Search replicated records: ?id, model (name or digest prefix), node, caller, scope, decision (allow|deny), code, since, until (POSIX seconds), oldest_first, all_kinds, offset, limit (≤ 1,000).",
        ),
        ("/api/v1/lineage/evidence", "get", "Evidence of nodes that signed two histories."),
        ("/api/v1/policy", "get", "The Cedar policy set in force."),
        (
            "/api/v1/pending",
            "get",
            "Approvals short of their threshold, waiting for cosigners: who signed, how many more are needed.",
        ),
        (
            "/api/v1/pending",
            "post",
            "Leave an approval short of its threshold for cosigners (approver or admin token); signatures of copies of the same payload are pooled, and it enters the log once they meet the threshold (201).",
        ),
        ("/healthz", "get", "Liveness."),
        (
            "/readyz",
            "get",
            "Readiness: 200 while the writer runs and is neither stalled nor failing.",
        ),
        ("/metrics", "get", "Prometheus text exposition."),
    ] {
        // A path may have several methods (GET and POST /api/v1/pending).
        paths.entry(path).or_insert_with(|| json!({}))[method] =
            json!({"summary": summary, "responses": {"200": {"description": "OK"}}});
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "modelgate authority", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
    }))
    .into_response()
}
