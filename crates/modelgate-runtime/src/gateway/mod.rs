//! The governed inference gateway (`modelgate node serve`). An
//! OpenAI-compatible reverse proxy that forwards a call only when the
//! requested model is Serving (all ten lifecycle steps) and the governance
//! decision allows the caller in its scope; that makes a durable lineage
//! record before forwarding (no record, no call); records the completion
//! (status, usage, digests, latency; also a client that went away); and
//! serves each call's offline proof chain once its lineage is anchored.
//!
//! Streaming responses pass through frame by frame: the proxy hashes and
//! counts what goes by, it never buffers a response.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use http_body::{Body as _, Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use modelgate_governance::{Check, DecisionCache, DecisionRequest};
use modelgate_node::config::{EndpointAccess, LineageAccess};
use modelgate_node::proof::{GovernedEntry, LineageProof, PendingLineage, ProofChain, RecordProof, ShownRecord};
use opentelemetry::KeyValue;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Refusal};
use crate::lineage::{append_async, LineageLog};
use crate::runtime::{ModelStatus, Shared};
use crate::telemetry::{semconv, CallSpan, Telemetry};

/// Largest request body forwarded.
const MAX_REQUEST_BYTES: usize = 16 << 20;
/// Response bytes kept for reading the token usage of a non-streamed answer.
const HEAD_BYTES: usize = 256 << 10;
/// Response bytes kept from the end, for the usage in a stream's last event.
const TAIL_BYTES: usize = 8 << 10;
/// Bounds of the gateway's latency histograms, in microseconds.
const LATENCY_BUCKETS_US: [u64; 10] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000];

/// A Prometheus histogram of durations, lock-free on the hot path.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Write it under `name`.
    fn render(&self, o: &mut modelgate_http::prometheus::Text, name: &str, help: &str) {
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS_US
            .iter()
            .enumerate()
            .map(|(i, b)| (*b as f64 / 1e6, self.buckets[i].load(Ordering::Relaxed)))
            .collect();
        let over = self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        o.histogram(
            name,
            help,
            &buckets,
            over,
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        );
    }
}

#[derive(Default)]
struct Metrics {
    requests: Mutex<BTreeMap<&'static str, u64>>,
    /// By (code, check).
    denials: Mutex<BTreeMap<(&'static str, Option<Check>), u64>>,
    completions: Mutex<BTreeMap<&'static str, u64>>,
    /// The durable request record alone.
    append: Histogram,
    /// Everything the node does before forwarding a call it allows (checks, decision,
    /// durable record): what governance adds to a call, apart from the proxying.
    before_forward: Histogram,
    /// From forwarding to the upstream's response head: the inference server's part.
    upstream: Histogram,
    /// Refusals of calls without a valid token beyond [`UNAUTHENTICATED_RECORDS`].
    unrecorded: std::sync::atomic::AtomicU64,
}

/// Records of refusals without a valid token, per second and in a burst.
/// Anyone who reaches the listener can send those: a record for each would
/// let them fill the node's disk and slow every caller's durable append.
/// Beyond the bucket they are refused all the same and counted
/// (`modelgate_gateway_unrecorded_denials_total`), not recorded.
pub const UNAUTHENTICATED_RECORDS: (f64, f64) = (10.0, 40.0);

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += 1;
    }
}

struct Caller {
    principal: String,
    /// The name its mutual-TLS certificate must carry, when it has one.
    certificate: Option<String>,
    groups: Vec<String>,
    scopes: Vec<String>,
    lineage: LineageAccess,
    monitor: bool,
    /// Cedar tags of the principal, sorted by key.
    attributes: Vec<(String, String)>,
}

/// Shards of the decision cache.
const DECISION_SHARDS: usize = 16;

/// The gateway: what every call reads, built once from the node's shared state.
pub struct Gateway {
    shared: Arc<Shared>,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    upstream: String,
    callers: Vec<Caller>,
    /// Callers with a token, by its SHA-256.
    by_token: HashMap<[u8; 32], usize>,
    /// Callers known by a certificate name alone.
    by_certificate: Vec<(String, usize)>,
    /// Decision caches, one per shard of (model, scope, caller, …): calls of
    /// different callers or models do not queue behind one lock.
    caches: Vec<Mutex<DecisionCache>>,
    metrics: Metrics,
    telemetry: Telemetry,
    /// Calls in progress (a permit is held until the answer has streamed).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Callers' request bodies in flight ([`CALLER_BODIES`]).
    bodies: Arc<modelgate_http::Budget>,
    /// Request index → completion index, for recent calls (bounded).
    completions: Mutex<(HashMap<u64, u64>, std::collections::VecDeque<u64>)>,
    /// Records left for refusals without a valid token.
    unauthenticated: Mutex<modelgate_http::rate::Bucket>,
    /// Peers' consistency-proof requests in progress (each asks the authority).
    peer_permits: Arc<tokio::sync::Semaphore>,
}

const RECENT_COMPLETIONS: usize = 100_000;

/// The gateway as routes hold it.
pub type Gw = Arc<Gateway>;

fn hex_sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    // A failing random source yields zeros; ids are labels, not secrets.
    let _ = rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// What is known of a call so far, in the order its lineage record lists
/// it. Serialised straight into the record (no intermediate `Value`: the
/// gateway builds one per call).
#[derive(serde::Serialize)]
struct Facts<'a> {
    endpoint: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    /// Absent when the body was never read (a call refused on its head).
    #[serde(skip_serializing_if = "Option::is_none")]
    request_sha256: Option<&'a str>,
    /// At most [`RECORDED_MODEL_MAX`] bytes of the name asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    /// The length of the name asked for, when `model` keeps only its start.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    governance: Option<Governance>,
}

impl<'a> Facts<'a> {
    /// Nothing known yet but the endpoint.
    fn new(endpoint: &'static str) -> Self {
        Self {
            endpoint,
            principal: None,
            scope: None,
            request_sha256: None,
            model: None,
            model_bytes: None,
            digest: None,
            governance: None,
        }
    }
}

/// The record of a refused call (what was known when it was refused).
#[derive(serde::Serialize)]
struct DenialRecord<'a> {
    #[serde(flatten)]
    facts: &'a Facts<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    check: Option<Check>,
    status: u16,
    time: u64,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<&'a [String]>,
}

/// The governance state a decision was made in.
#[derive(serde::Serialize)]
struct Governance {
    size: u64,
    root: String,
    state_digest: String,
}

/// The record written, durably, before a call is forwarded.
#[derive(serde::Serialize)]
struct RequestRecord<'a> {
    #[serde(flatten)]
    facts: &'a Facts<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    time: u64,
    node: &'a str,
    approval: &'a Option<String>,
    exception: &'a Option<String>,
    policies: &'a [String],
    trace_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<std::borrow::Cow<'a, str>>,
}

/// The one field of a call's body the gateway reads; the rest is checked to
/// be JSON and passed on untouched.
#[derive(serde::Deserialize)]
struct CallBody<'a> {
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
}

/// The fields of an answer the completion record and the span use.
#[derive(serde::Deserialize)]
struct AnswerSummary {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
}

/// A call's trace context (see [`traceparent`]).
struct Trace {
    trace: String,
    parent: Option<String>,
    span: String,
    header: String,
    operation: &'static str,
}

/// W3C trace context: keep the caller's trace id (and its span as our
/// parent), start our own span. Returns (trace id, parent span id, our span
/// id, the traceparent to send upstream).
fn traceparent(headers: &HeaderMap) -> (String, Option<String>, String, String) {
    let incoming = headers.get("traceparent").and_then(|v| v.to_str().ok()).and_then(|s| {
        let p: Vec<&str> = s.split('-').collect();
        let ok = p.len() == 4
            && p[0] == "00"
            && p[1].len() == 32
            && p[2].len() == 16
            && p[3].len() == 2
            && p[1..]
                .iter()
                .all(|x| x.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
            && p[1] != "00000000000000000000000000000000"
            && p[2] != "0000000000000000";
        ok.then(|| (p[1].to_owned(), Some(p[2].to_owned()), p[3].to_owned()))
    });
    // One read of the random source for both ids (a system call per call).
    let ids = random_hex(24);
    let (trace, parent, flags) = incoming.unwrap_or_else(|| (ids[..32].to_owned(), None, "01".to_owned()));
    let span = ids[32..].to_owned();
    let header = format!("00-{trace}-{span}-{flags}");
    (trace, parent, span, header)
}

impl Gateway {
    /// The decision cache shard for `req` (by its hash: the same request
    /// always meets the same cache).
    fn cache_for(&self, req: &DecisionRequest) -> &Mutex<DecisionCache> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        req.hash(&mut h);
        &self.caches[(h.finish() % DECISION_SHARDS as u64) as usize]
    }

    /// The caller a request comes from: by its bearer token (and then, if
    /// its table names a certificate, only over a certificate that carries
    /// that name), or, without a token, by its mutual-TLS certificate alone.
    fn caller(&self, headers: &HeaderMap, ext: &axum::http::Extensions) -> Option<&Caller> {
        let cert = ext.get::<modelgate_http::tls::PeerCertificate>();
        let Some(auth) = headers.get(header::AUTHORIZATION) else {
            let cert = cert?;
            let (_, i) = self.by_certificate.iter().find(|(n, _)| cert.names(n))?;
            return self.callers.get(*i);
        };
        let token = auth.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let c = self.callers.get(*self.by_token.get(&h)?)?;
        match &c.certificate {
            None => Some(c),
            Some(n) => cert.filter(|p| p.names(n)).map(|_| c),
        }
    }

    fn lineage(&self) -> Result<Arc<dyn LineageLog>, crate::lineage::LineageError> {
        self.shared.lineage.clone()
    }

    /// Count a refusal (metrics and the heartbeat's counters).
    fn count_refusal(&self, code: &'static str, check: Option<Check>) {
        bump(&self.metrics.denials, (code, check));
        self.shared.count(&format!("denied:{code}"));
    }

    /// Refuse a call: counted, traced, and recorded durably in the lineage
    /// log before the answer goes (best effort: the call is refused either
    /// way); the answer names the record.
    async fn deny(&self, trace: &Trace, refusal: Refusal, facts: &Facts<'_>, policies: Option<&[String]>) -> Response {
        let p = refusal.parts();
        self.count_refusal(p.code, p.check);
        // A denial is a span too: the caller's trace shows where and why it stopped.
        let model = facts.model.unwrap_or("unknown").to_owned();
        let mut attrs = vec![KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(p.status.as_u16()),
        )];
        for (key, v) in [
            (semconv::MODELGATE_SCOPE, facts.scope),
            (semconv::MODELGATE_PRINCIPAL, facts.principal),
            (semconv::MODELGATE_MODEL_DIGEST, facts.digest.as_deref()),
        ] {
            if let Some(v) = v {
                attrs.push(KeyValue::new(key, v.to_owned()));
            }
        }
        if let Some(c) = p.check {
            attrs.push(KeyValue::new(semconv::MODELGATE_CHECK, c.code()));
        }
        self.telemetry
            .start(
                &trace.trace,
                trace.parent.as_deref(),
                &trace.span,
                trace.operation,
                &model,
                || attrs,
            )
            .end(vec![], Some(p.code.to_owned()));
        let mut recorded = None;
        let record = facts.principal.is_some()
            || self
                .unauthenticated
                .lock()
                .is_ok_and(|mut b| b.take(UNAUTHENTICATED_RECORDS));
        if !record {
            self.metrics
                .unrecorded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let (true, Ok(l)) = (record, self.lineage()) {
            let r = DenialRecord {
                facts,
                kind: "denial",
                code: p.code,
                check: p.check,
                status: p.status.as_u16(),
                time: self.shared.clock.now(),
                node: &self.shared.config.node,
                policies,
            };
            match serde_json::to_vec(&r) {
                Ok(bytes) => recorded = append_async(&*l, bytes).await.ok(),
                // Never an empty record in its place; the call is denied anyway.
                Err(e) => tracing::error!(error = %e, "encoding a denial's lineage record"),
            }
        }
        let mut resp = refusal.into_response();
        if let Some(rc) = recorded {
            if let Ok(v) = HeaderValue::from_str(&rc.index.to_string()) {
                resp.headers_mut().insert("x-modelgate-lineage-id", v);
            }
        }
        resp
    }

    /// Refuse without a lineage record (not a governance decision: overload,
    /// a body that is not a call, or the record itself could not be written).
    fn refuse(&self, refusal: Refusal) -> Response {
        let p = refusal.parts();
        self.count_refusal(p.code, p.check);
        refusal.into_response()
    }

    /// Stop exporting traces (flushes what is queued).
    pub fn shutdown(&self) {
        self.telemetry.shutdown();
    }
}

/// Build the gateway from the runtime's shared state.
pub fn gateway(shared: Arc<Shared>) -> Result<Gateway, Error> {
    let upstream = shared
        .config
        .upstream
        .clone()
        .ok_or_else(|| Error::Config("the configuration has no `upstream` (the inference server's URL)".into()))?;
    let mut callers = Vec::new();
    let mut by_token = HashMap::new();
    let mut by_certificate = Vec::new();
    for (name, c) in &shared.config.callers {
        match &c.token_sha256 {
            Some(t) => {
                let mut h = [0u8; 32];
                hex::decode_to_slice(t, &mut h)
                    .map_err(|e| Error::Config(format!("caller {name}: token_sha256: {e}")))?;
                by_token.insert(h, callers.len());
            }
            None => by_certificate.extend(c.certificate.clone().map(|n| (n, callers.len()))),
        }
        callers.push(Caller {
            principal: name.clone(),
            certificate: c.certificate.clone(),
            groups: c.groups.clone(),
            scopes: c.scopes.clone(),
            lineage: c.lineage,
            monitor: c.monitor,
            attributes: c.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        });
    }
    if callers.is_empty() {
        tracing::warn!("no [callers] configured: every inference call will be refused");
    }
    // TCP_NODELAY, as nginx sets it: without it a small write that follows another
    // unacknowledged one waits for the peer's delayed ACK (tens of milliseconds).
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    // https:// upstreams are verified like every other server the node
    // reaches (ca_file, else the system's roots); http:// stays plain.
    connector.enforce_http(false);
    let mut tls = modelgate_http::tls::clients()
        .rustls()
        .map_err(|e| Error::Config(format!("the upstream's TLS: {e}")))?;
    // The connector sets ALPN itself (http/1.1 here), and refuses a config that has some.
    tls.alpn_protocols.clear();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    let client = Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let telemetry = Telemetry::new(
        shared.config.otlp_endpoint.as_deref(),
        "modelgate-node",
        &shared.config.node,
    )
    .map_err(Error::Config)?;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(shared.config.max_in_flight));
    Ok(Gateway {
        telemetry,
        shared,
        client,
        upstream: upstream.trim_end_matches('/').to_owned(),
        callers,
        by_token,
        by_certificate,
        caches: (0..DECISION_SHARDS)
            .map(|_| Mutex::new(DecisionCache::new(16_384 / DECISION_SHARDS)))
            .collect(),
        metrics: Metrics::default(),
        completions: Mutex::new(Default::default()),
        in_flight,
        bodies: modelgate_http::Budget::new(CALLER_BODIES),
        unauthenticated: Mutex::new(modelgate_http::rate::Bucket::full(UNAUTHENTICATED_RECORDS.1)),
        peer_permits: Arc::new(tokio::sync::Semaphore::new(PEER_PROOFS_AT_ONCE)),
    })
}

/// Peers' consistency-proof requests served at once; more get 429.
const PEER_PROOFS_AT_ONCE: usize = 2;

/// The gateway's routes: the OpenAI-compatible calls, `/v1/models`,
/// `/lineage/{id}`, `/status`, `/metrics`, `/healthz`, `/readyz`, and for
/// other nodes `/peer/checkpoint` and `/peer/consistency`.
pub fn router(gw: Gw) -> Router {
    let mut app = Router::new();
    for route in routes::ROUTES {
        let guard = axum::middleware::from_fn_with_state((Arc::clone(&gw), route.access), routes::guard);
        app = app.route(route.path, routes::handler(route.endpoint).route_layer(guard));
    }
    app.fallback(|| async { Refusal::NoRoute }).with_state(gw)
}

mod call;
mod ops;
mod proofs;
pub mod routes;

use call::proxy;
pub use call::{CALLER_BODIES, RECORDED_MODEL_MAX};
pub use ops::status_json;
use ops::{metrics, models, peer_checkpoint, peer_consistency, readyz, status};
use proofs::lineage;

/// Serve `gw` on `listener` until `shutdown` resolves, with the gateway's
/// limits (see [`listen_limits`]).
pub async fn serve(
    listener: impl Into<modelgate_http::Listener>,
    gw: Gw,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    modelgate_http::serve(listener, router(gw), listen_limits(), shutdown)
        .await
        .map_err(Error::Serve)
}

/// `modelgate node serve`: the node's loop and its gateway on the
/// configured address until SIGINT or SIGTERM. `listening` is told the
/// bound address before the first request; `on_event` each lifecycle event.
/// On stop the loop ends first, then in-flight completion records get up
/// to two seconds for their batch.
pub fn serve_until_signal(
    rt: crate::Runtime,
    on_event: impl FnMut(&crate::Event) + Send + 'static,
    listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), Error> {
    let shared = rt.shared();
    let gw = Arc::new(gateway(Arc::clone(&shared))?);
    let tokio_rt =
        modelgate_http::server_runtime(8).map_err(|e| Error::Start(format!("starting the async runtime: {e}")))?;
    let listen = shared.config.listen.clone();
    let transport = crate::tls::transport(&shared.config)?;
    let listener = tokio_rt
        .block_on(modelgate_http::Listener::bind(&listen, &transport))
        .map_err(|e| Error::Start(e.to_string()))?;
    listening(listener.local_addr().map_err(Error::Serve)?);
    let looper = rt.spawn(on_event)?;
    let served = tokio_rt.block_on(serve(listener, Arc::clone(&gw), modelgate_http::shutdown_signal()));
    shared.stop();
    let _ = looper.join();
    tokio_rt.shutdown_timeout(Duration::from_secs(2));
    gw.shutdown();
    served
}

/// The gateway's listener limits: a slow client is cut off after 10 s
/// without a complete request head, as on the authority; the time to the
/// response head may be long (an inference server's time to first token on
/// a long prompt), so it is bounded at 10 minutes, not 30 s. Callers'
/// connections are TCP_NODELAY (as nginx sets them), set by the listener.
pub fn listen_limits() -> modelgate_http::Limits {
    modelgate_http::Limits {
        request: Duration::from_secs(600),
        ..Default::default()
    }
}
