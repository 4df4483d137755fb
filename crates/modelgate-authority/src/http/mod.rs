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

use crate::api_error::{ApiError, ErrorKind};
use crate::service::{now, summary_json, Authority, NotQueued, Outcome, WriterTrouble};

mod lineage;
mod ops;
mod reads;
pub mod routes;
mod writes;

use lineage::*;
use ops::*;
use reads::*;
use writes::*;

type Shared = Arc<Authority>;

/// What a handler answers: its response, or the error that says why not
/// (status, code and Retry-After from [`ErrorKind::parts`]).
type Answer = Result<Response, ApiError>;

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
) -> Result<modelgate_http::Held, ApiError> {
    budget
        .read(client(peer), headers, body, max)
        .await
        .map_err(ApiError::body)
}

fn cross_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::new(
            ErrorKind::ContentType,
            "submissions must be sent with Content-Type: application/json",
        ));
    }
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site") || v.eq_ignore_ascii_case("same-site"))
    {
        return Err(ApiError::new(
            ErrorKind::CrossOrigin,
            "submissions from another site's page are refused",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let origin = origin.to_str().unwrap_or("");
        let same = !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"));
        if !same {
            return Err(ApiError::new(
                ErrorKind::CrossOrigin,
                format!("submissions from origin {origin:?} are refused (this authority is {host:?})"),
            ));
        }
    }
    Ok(())
}

/// Run `f` on a blocking thread (store reads, fsyncs, refolds); a task that
/// did not finish fails closed as an internal error (`From<JoinError>`).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// The per-client bound on writes that need no token.
fn rate_limited(a: &Authority, peer: &Peer) -> Result<(), ApiError> {
    let ip = client(peer);
    match a.unauthenticated.take(ip) {
        Ok(()) => Ok(()),
        Err(wait) => {
            a.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            Err(ApiError::new(
                ErrorKind::RateLimited {
                    seconds: wait.as_secs_f64().ceil() as u64,
                },
                format!(
                    "more than {} unauthenticated writes per second from {ip}",
                    a.unauthenticated.rate()
                ),
            ))
        }
    }
}

/// The router: every route of [`routes::ROUTES`], each behind the guard of
/// its access, and request counting.
pub fn router(a: Shared) -> Router {
    let mut app = Router::new();
    for route in routes::ROUTES {
        let guard = middleware::from_fn_with_state((Arc::clone(&a), route.access), routes::guard);
        app = app.route(route.path, routes::handler(route.endpoint).route_layer(guard));
    }
    app.fallback(|| async { ApiError::new(ErrorKind::NoRoute, "no such route (see /openapi.json)").into_response() })
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
