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
    client: Client<HttpConnector, Body>,
    upstream: String,
    callers: HashMap<[u8; 32], Caller>,
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

    fn caller(&self, headers: &HeaderMap) -> Option<&Caller> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.callers.get(&h)
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
    let mut callers = HashMap::new();
    for (name, c) in &shared.config.callers {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&c.token_sha256, &mut h)
            .map_err(|e| Error::Config(format!("caller {name}: token_sha256: {e}")))?;
        callers.insert(
            h,
            Caller {
                principal: name.clone(),
                groups: c.groups.clone(),
                scopes: c.scopes.clone(),
                lineage: c.lineage,
                monitor: c.monitor,
                attributes: c.attributes.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            },
        );
    }
    if callers.is_empty() {
        tracing::warn!("no [callers] configured: every inference call will be refused");
    }
    // TCP_NODELAY, as nginx sets it: without it a small write that follows another
    // unacknowledged one waits for the peer's delayed ACK (tens of milliseconds).
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
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
    Router::new()
        .route("/v1/chat/completions", post(|s, r| proxy(s, r, "chat")))
        .route("/v1/completions", post(|s, r| proxy(s, r, "text_completion")))
        .route("/v1/embeddings", post(|s, r| proxy(s, r, "embeddings")))
        .route("/v1/models", get(models))
        .route("/lineage/{id}", get(lineage))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/peer/checkpoint", get(peer_checkpoint))
        .route("/peer/consistency", get(peer_consistency))
        .fallback(|| async { Refusal::NoRoute })
        .with_state(gw)
}

/// Request bodies of callers (each known by its token before a byte of its
/// body is read): 256 MiB held at once in total, each within 5 s plus its
/// length at 1 MiB/s, far less than the 10 minutes a call may take.
pub const CALLER_BODIES: modelgate_http::BodyLimits = modelgate_http::BodyLimits {
    budget_bytes: 256 << 20,
    per_client_bytes: 256 << 20,
    wait: Duration::from_secs(2),
    grace: Duration::from_secs(5),
    min_bytes_per_second: 1 << 20,
};

/// Longest model name a lineage record keeps; a longer one is cut (at a
/// character boundary) and the record says how long it was.
pub const RECORDED_MODEL_MAX: usize = 1024;

/// `name` cut to at most [`RECORDED_MODEL_MAX`] bytes at a character
/// boundary, and its length when it was cut.
fn recorded_name(name: &str) -> (&str, Option<usize>) {
    if name.len() <= RECORDED_MODEL_MAX {
        return (name, None);
    }
    let mut end = RECORDED_MODEL_MAX;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    (&name[..end], Some(name.len()))
}

/// A call admitted on its head alone: under the in-flight bound, from a
/// known caller, in one of its scopes.
struct Admitted<'g> {
    permit: tokio::sync::OwnedSemaphorePermit,
    caller: &'g Caller,
    scope: String,
    trace: Trace,
    started: Instant,
}

/// What governance allowed: the model's digest, the view and the decision.
struct Allowed {
    digest: String,
    view: Arc<modelgate_node::View>,
    decision: Arc<modelgate_governance::Decision>,
}

async fn proxy(State(gw): State<Gw>, req: axum::extract::Request, endpoint: &'static str) -> Response {
    let (parts, body) = req.into_parts();
    let call = match admit(&gw, &parts.headers, endpoint).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut facts = Facts {
        endpoint,
        principal: Some(&call.caller.principal),
        scope: Some(&call.scope),
        request_sha256: None,
        model: None,
        model_bytes: None,
        digest: None,
        governance: None,
    };
    // Only now, with the caller known and a permit held, is the body read.
    let client = modelgate_http::client_of(&parts.extensions);
    let body = match gw.bodies.read(client, &parts.headers, body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(e) => return gw.deny(&call.trace, Refusal::Body(e), &facts, None).await,
    };
    let request_sha256 = hex_sha256(&body);
    facts.request_sha256 = Some(&request_sha256);
    let parsed = serde_json::from_slice::<CallBody<'_>>(&body);
    let Ok(CallBody { model }) = &parsed else {
        // Recorded like any refusal of an authenticated caller (its digest
        // is in the record); the body itself is not kept.
        return gw.deny(&call.trace, Refusal::InvalidBody, &facts, None).await;
    };
    (facts.model, facts.model_bytes) = {
        let (m, n) = recorded_name(model);
        (Some(m), n)
    };
    let allowed = match decide(&gw, &call, model, &mut facts).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let receipt = match record(&gw, &call, &allowed, &facts, body.bytes()).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    forward(&gw, call, &parts, &allowed, model, receipt, body.bytes().clone()).await
}

/// Decide on the request's head: the in-flight permit (overload is refused
/// at once, before any work: queueing without bound turns a burst into
/// seconds of latency; not a governance decision, so counted, not recorded),
/// then the caller's token and scope.
async fn admit<'g>(gw: &'g Gw, headers: &HeaderMap, endpoint: &'static str) -> Result<Admitted<'g>, Response> {
    let started = Instant::now();
    let Ok(permit) = Arc::clone(&gw.in_flight).try_acquire_owned() else {
        return Err(gw.refuse(Refusal::Overloaded {
            max_in_flight: gw.shared.config.max_in_flight,
        }));
    };
    bump(&gw.metrics.requests, endpoint);
    gw.shared.count("requests");
    let trace = {
        let (trace, parent, span, header) = traceparent(headers);
        Trace {
            trace,
            parent,
            span,
            header,
            operation: endpoint,
        }
    };
    let mut facts = Facts {
        endpoint,
        principal: None,
        scope: None,
        request_sha256: None,
        model: None,
        model_bytes: None,
        digest: None,
        governance: None,
    };
    let Some(caller) = gw.caller(headers) else {
        // The body of a call without a valid token is never read: its
        // record says who was refused, not what was sent.
        return Err(gw.deny(&trace, Refusal::InvalidApiKey, &facts, None).await);
    };
    facts.principal = Some(&caller.principal);
    let scope = match headers.get("x-modelgate-scope").map(|v| v.to_str()) {
        None if !caller.scopes.is_empty() => caller.scopes[0].clone(),
        Some(Ok(s)) if caller.scopes.iter().any(|c| c == s) => s.to_owned(),
        _ => {
            let refusal = Refusal::ScopeNotPermitted {
                principal: caller.principal.clone(),
                scopes: caller.scopes.clone(),
            };
            return Err(gw.deny(&trace, refusal, &facts, None).await);
        }
    };
    Ok(Admitted {
        permit,
        caller,
        scope,
        trace,
        started,
    })
}

/// The model must be Serving, unchanged since its verification, under a
/// fresh view, and the decision must allow the call in its scope.
async fn decide(gw: &Gw, call: &Admitted<'_>, model: &str, facts: &mut Facts<'_>) -> Result<Allowed, Response> {
    let snap = gw.shared.snapshot();
    let shown = || facts.model.unwrap_or_default().to_owned();
    let digest = match snap.models.get(model) {
        None => Err(Refusal::ModelNotFound { model: shown() }),
        Some(ModelStatus::Starting) => Err(Refusal::Starting { model: shown() }),
        Some(ModelStatus::Contained(why)) => Err(Refusal::Contained {
            model: shown(),
            reason: why.reason,
            check: why.check,
            decision: why.decision,
            detail: why.detail.clone(),
        }),
        Some(ModelStatus::Serving { .. }) if gw.shared.unverified_change(model) => {
            Err(Refusal::UnverifiedChange { model: shown() })
        }
        Some(ModelStatus::Serving { digest, .. }) => Ok(digest.clone()),
    };
    let digest = match digest {
        Ok(d) => d,
        Err(r) => return Err(gw.deny(&call.trace, r, facts, None).await),
    };
    facts.digest = Some(digest.clone());
    let Some(view) = snap.view.clone() else {
        let refusal = Refusal::SyncInterrupted {
            detail: "no verified governance view".into(),
        };
        return Err(gw.deny(&call.trace, refusal, facts, None).await);
    };
    // The loop keeps the view fresh; if it stalled (an authority call hanging,
    // a stuck store) the snapshot ages, and an aged snapshot proves nothing.
    let t = gw.shared.clock.now();
    if let Some(why) = snap.stale(gw.shared.config.max_staleness_seconds, t) {
        let refusal = Refusal::SyncInterrupted { detail: why };
        return Err(gw.deny(&call.trace, refusal, facts, None).await);
    }
    let req = DecisionRequest {
        model: digest.clone(),
        scope: call.scope.clone(),
        node: gw.shared.config.node.clone(),
        principal: call.caller.principal.clone(),
        groups: call.caller.groups.clone(),
        attributes: call.caller.attributes.clone(),
    };
    let decision = match gw.cache_for(&req).lock() {
        Ok(mut c) => c.decide(&view.state, &req, t),
        Err(_) => Arc::new(modelgate_governance::decide(&view.state, &req, t)),
    };
    facts.governance = Some(Governance {
        size: view.checkpoint.size,
        root: hex::encode(view.checkpoint.root),
        state_digest: hex::encode(decision.state_digest),
    });
    if !decision.allow {
        let refusal = Refusal::Decision {
            code: decision
                .reasons
                .first()
                .copied()
                .unwrap_or(modelgate_governance::ReasonCode::PolicyError),
            scope: call.scope.clone(),
            detail: decision.detail.clone(),
        };
        return Err(gw.deny(&call.trace, refusal, facts, Some(&decision.policies)).await);
    }
    Ok(Allowed { digest, view, decision })
}

/// The request record, made durable before the call is forwarded: no
/// durable record, no call.
async fn record(
    gw: &Gw,
    call: &Admitted<'_>,
    allowed: &Allowed,
    facts: &Facts<'_>,
    body: &[u8],
) -> Result<(crate::lineage::Receipt, Arc<dyn LineageLog>), Response> {
    let record = RequestRecord {
        facts,
        kind: "request",
        time: gw.shared.clock.now(),
        node: &gw.shared.config.node,
        approval: &allowed.decision.approval,
        exception: &allowed.decision.exception,
        policies: &allowed.decision.policies,
        trace_id: &call.trace.trace,
        body: gw.shared.config.store_content.then(|| String::from_utf8_lossy(body)),
    };
    let record = match serde_json::to_vec(&record) {
        Ok(r) => r,
        // An empty record in its place would be a lineage entry that proves nothing.
        Err(e) => {
            return Err(gw.refuse(Refusal::LineageNotDurable {
                detail: format!("the lineage record could not be encoded: {e}"),
            }))
        }
    };
    let lineage = gw
        .lineage()
        .map_err(|e| gw.refuse(Refusal::LineageNotDurable { detail: e.to_string() }))?;
    let append_started = Instant::now();
    match append_async(&*lineage, record).await {
        Ok(r) => {
            let forwarded_at = Instant::now();
            gw.metrics.append.observe(forwarded_at - append_started);
            gw.metrics.before_forward.observe(forwarded_at - call.started);
            Ok((r, lineage))
        }
        Err(e) => {
            // Deny, and wake the loop so the node's own checks see the failure too.
            if let Some(m) = facts.model {
                gw.shared.wake(m);
            }
            Err(gw.refuse(Refusal::LineageNotDurable { detail: e.to_string() }))
        }
    }
}

/// Forward the recorded call; its answer streams back frame by frame while
/// the completion record is computed ([`Recorded`]).
async fn forward(
    gw: &Gw,
    call: Admitted<'_>,
    parts: &axum::http::request::Parts,
    allowed: &Allowed,
    model: &str,
    (receipt, lineage): (crate::lineage::Receipt, Arc<dyn LineageLog>),
    body: Bytes,
) -> Response {
    let forwarded_at = Instant::now();
    let target = format!(
        "{}{}",
        gw.upstream,
        parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str())
    );
    let mut up = hyper::Request::post(&target);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_ENCODING] {
        if let Some(v) = parts.headers.get(&name) {
            up = up.header(name, v);
        }
    }
    let trace = &call.trace;
    up = up.header("traceparent", &trace.header);
    if let Some(ts) = parts.headers.get("tracestate") {
        up = up.header("tracestate", ts);
    }
    let span = gw.telemetry.start(
        &trace.trace,
        trace.parent.as_deref(),
        &trace.span,
        trace.operation,
        model,
        || {
            vec![
                KeyValue::new(
                    semconv::SERVER_ADDRESS,
                    gw.upstream.trim_start_matches("http://").to_owned(),
                ),
                KeyValue::new(semconv::MODELGATE_LINEAGE_ID, receipt.index.to_string()),
                KeyValue::new(semconv::MODELGATE_MODEL_DIGEST, allowed.digest.clone()),
                KeyValue::new(semconv::MODELGATE_SCOPE, call.scope.clone()),
                KeyValue::new(semconv::MODELGATE_PRINCIPAL, call.caller.principal.clone()),
                KeyValue::new(
                    semconv::MODELGATE_APPROVAL,
                    allowed.decision.approval.clone().unwrap_or_default(),
                ),
            ]
        },
    );
    let mut completion = Completion {
        _permit: call.permit,
        span: Some(span),
        lineage,
        gw: Arc::clone(gw),
        request: receipt.index,
        status: 0,
        started: call.started,
        hasher: Sha256::new(),
        bytes: 0,
        head: Vec::new(),
        tail: Vec::new(),
        store_content: gw.shared.config.store_content,
    };
    let forwarded = match up.body(Body::from(body)) {
        Ok(r) => gw.client.request(r).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let resp = match forwarded {
        Ok(r) => {
            gw.metrics.upstream.observe(forwarded_at.elapsed());
            r
        }
        Err(e) => {
            completion.status = 502;
            completion.finish("upstream-error", Some(&e));
            let mut r = Refusal::UpstreamUnreachable { detail: e }.into_response();
            // The call was recorded: say where, so the failure can be traced.
            if let Ok(v) = HeaderValue::from_str(&receipt.index.to_string()) {
                r.headers_mut().insert("x-modelgate-lineage-id", v);
            }
            return r;
        }
    };
    let (head, incoming) = resp.into_parts();
    completion.status = head.status.as_u16();
    let mut out = Response::builder().status(head.status);
    for (k, v) in &head.headers {
        if !is_hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    out = out
        .header("x-modelgate-lineage-id", receipt.index.to_string())
        .header("x-modelgate-checkpoint-size", receipt.size.to_string())
        .header("x-modelgate-governance-size", allowed.view.checkpoint.size.to_string())
        .header("x-modelgate-model-digest", &allowed.digest)
        .header("traceparent", &trace.header);
    let body = Body::new(Recorded {
        inner: incoming,
        rec: Some(completion),
    });
    out.body(body).unwrap_or_else(|e| {
        Refusal::Internal {
            detail: format!("building the response: {e}"),
        }
        .into_response()
    })
}

fn is_hop_by_hop(h: &HeaderName) -> bool {
    matches!(
        h.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// What is known about a call's answer while it streams.
struct Completion {
    /// Held until the completion is recorded (the call is in progress until then).
    _permit: tokio::sync::OwnedSemaphorePermit,
    span: Option<CallSpan>,
    lineage: Arc<dyn LineageLog>,
    gw: Gw,
    request: u64,
    status: u16,
    started: Instant,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    store_content: bool,
}

impl Completion {
    fn update(&mut self, d: &[u8]) {
        self.hasher.update(d);
        self.bytes += d.len() as u64;
        if self.head.len() < HEAD_BYTES || self.store_content {
            let room = if self.store_content {
                d.len()
            } else {
                HEAD_BYTES - self.head.len()
            };
            self.head.extend_from_slice(&d[..room.min(d.len())]);
        }
        self.tail.extend_from_slice(d);
        if self.tail.len() > 2 * TAIL_BYTES {
            self.tail.drain(..self.tail.len() - TAIL_BYTES);
        }
    }

    /// The answer's model and token usage: from the JSON answer, or for a
    /// stream from its first event (model) and the last event that has a
    /// usage. One parse of each, skipping everything else.
    fn summary(&self) -> (Option<String>, Value) {
        let parse = |b: &[u8]| serde_json::from_slice::<AnswerSummary>(b).ok();
        let model_of = |a: &AnswerSummary| a.model.as_ref().and_then(Value::as_str).map(str::to_owned);
        if self.bytes as usize == self.head.len() {
            if let Some(a) = parse(&self.head) {
                return (model_of(&a), a.usage.unwrap_or(Value::Null));
            }
        }
        // A stream: the model from its first event, the usage from the last
        // event that has one.
        let head = String::from_utf8_lossy(&self.head);
        let model = head
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .find_map(|l| parse(l.trim().as_bytes()))
            .and_then(|a| model_of(&a));
        let tail = String::from_utf8_lossy(&self.tail);
        let usage = tail
            .lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|l| parse(l.trim().as_bytes()))
            .find_map(|a| a.usage.filter(|u| !u.is_null()))
            .unwrap_or(Value::Null);
        (model, usage)
    }

    fn finish(mut self, outcome: &'static str, error: Option<&str>) {
        bump(&self.gw.metrics.completions, outcome);
        let (response_model, usage) = self.summary();
        if let Some(span) = self.span.take() {
            let mut attrs = vec![
                KeyValue::new(semconv::HTTP_RESPONSE_STATUS_CODE, i64::from(self.status)),
                KeyValue::new(semconv::MODELGATE_OUTCOME, outcome),
            ];
            for (key, field) in [
                (semconv::GEN_AI_USAGE_INPUT_TOKENS, "prompt_tokens"),
                (semconv::GEN_AI_USAGE_OUTPUT_TOKENS, "completion_tokens"),
            ] {
                if let Some(n) = usage[field].as_i64() {
                    attrs.push(KeyValue::new(key, n));
                }
            }
            if let Some(m) = response_model {
                attrs.push(KeyValue::new(semconv::GEN_AI_RESPONSE_MODEL, m));
            }
            let failed = match (outcome, self.status) {
                ("complete", 200..=299) => None,
                ("complete", s) => Some(s.to_string()),
                (o, _) => Some(error.map_or_else(|| o.to_owned(), |e| format!("{o}: {e}"))),
            };
            span.end(attrs, failed);
        }
        let record = CompletionRecord {
            kind: "completion",
            request: self.request,
            time: self.gw.shared.clock.now(),
            status: self.status,
            outcome,
            bytes: self.bytes,
            response_sha256: hex::encode(self.hasher.clone().finalize()),
            latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
            usage: &usage,
            error,
            body: self.store_content.then(|| String::from_utf8_lossy(&self.head)),
        };
        // The answer has gone to the caller: the completion is recorded
        // whatever happens, at worst as a record saying it could not be
        // encoded (never as an empty one).
        let record = serde_json::to_vec(&record).unwrap_or_else(|e| {
            tracing::error!(error = %e, "encoding a completion's lineage record");
            json!({"type": "completion", "request": self.request, "error": "unencodable-record"})
                .to_string()
                .into_bytes()
        });
        let gw = Arc::clone(&self.gw);
        let request = self.request;
        // Not awaited: the answer has already gone to the caller; the record
        // is durable with the next batch (milliseconds).
        let queued = self.lineage.append_then(
            record,
            Box::new(move |done| {
                let (Ok(rc), Ok(mut m)) = (done, gw.completions.lock()) else {
                    return;
                };
                let (map, order) = &mut *m;
                map.insert(request, rc.index);
                order.push_back(request);
                while order.len() > RECENT_COMPLETIONS {
                    if let Some(old) = order.pop_front() {
                        map.remove(&old);
                    }
                }
            }),
        );
        if let Err(e) = queued {
            tracing::warn!("completion record for {request} not queued: {e}");
        }
    }
}

/// The record written once a call's answer has gone to the caller (or
/// failed), in the order the record lists it.
#[derive(serde::Serialize)]
struct CompletionRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    request: u64,
    time: u64,
    status: u16,
    outcome: &'static str,
    bytes: u64,
    response_sha256: String,
    latency_ms: f64,
    usage: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<std::borrow::Cow<'a, str>>,
}

/// The upstream's body, passed through frame by frame while the completion
/// record is computed.
struct Recorded {
    inner: hyper::body::Incoming,
    rec: Option<Completion>,
}

impl http_body::Body for Recorded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(d), Some(r)) = (frame.data_ref(), this.rec.as_mut()) {
                    r.update(d);
                }
                if this.inner.is_end_stream() {
                    if let Some(r) = this.rec.take() {
                        r.finish("complete", None);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(r) = this.rec.take() {
                    r.finish("upstream-error", Some(&e.to_string()));
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(r) = this.rec.take() {
                    r.finish("complete", None);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(r) = self.rec.take() {
            let outcome = if self.inner.is_end_stream() {
                "complete"
            } else {
                "client-disconnected"
            };
            r.finish(outcome, None);
        }
    }
}

async fn models(State(gw): State<Gw>) -> Response {
    let snap = gw.shared.snapshot();
    let data: Vec<Value> = snap
        .models
        .iter()
        .filter_map(|(name, s)| match s {
            ModelStatus::Serving { digest, .. } => {
                Some(json!({"id": name, "object": "model", "created": 0, "owned_by": "modelgate", "digest": digest}))
            }
            _ => None,
        })
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

/// The node's `/status`: its governance view and every model's state and lifecycle step.
pub fn status_json(shared: &Shared) -> Value {
    let snap = shared.snapshot();
    let models: BTreeMap<&str, Value> = snap.models.iter().map(|(n, s)| (n.as_str(), s.json())).collect();
    let now = shared.clock.now();
    json!({
        "node": shared.config.node,
        "time": snap.time,
        "governance": snap.view.as_ref().map(|v| json!({"size": v.checkpoint.size,
            "staleness_seconds": now.saturating_sub(v.authority_time)})),
        "models": models,
    })
}

impl Gateway {
    /// May the caller of `headers` read an operational endpoint?
    fn may_read(&self, headers: &HeaderMap, access: EndpointAccess, what: &'static str) -> Result<(), Refusal> {
        match access {
            EndpointAccess::Open => Ok(()),
            EndpointAccess::Off => Err(Refusal::NoRoute),
            EndpointAccess::Token => match self.caller(headers) {
                None => Err(Refusal::InvalidApiKey),
                Some(c) if c.monitor => Ok(()),
                Some(c) => Err(Refusal::NotReadable {
                    principal: c.principal.clone(),
                    what: format!("{what} (it needs a caller with monitor = true)"),
                }),
            },
        }
    }
}

async fn status(State(gw): State<Gw>, headers: HeaderMap) -> Response {
    if let Err(r) = gw.may_read(&headers, gw.shared.config.status_access, "/status") {
        return r.into_response();
    }
    Json(status_json(&gw.shared)).into_response()
}

/// This node's latest verified governance checkpoint, as the authority
/// served it: public (it is the log's), for peers comparing histories.
async fn peer_checkpoint(State(gw): State<Gw>) -> Response {
    match gw.shared.snapshot().view.as_ref() {
        Some(v) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            v.note.as_ref().clone(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no verified governance checkpoint\n").into_response(),
    }
}

#[derive(serde::Deserialize)]
struct PeerConsistency {
    from: u64,
    to: u64,
}

/// A consistency proof from `from` to this node's verified size `to`, from
/// its authority, passed on only once it verifies against the root this
/// node verified: a node vouches for nothing it has not checked.
async fn peer_consistency(
    State(gw): State<Gw>,
    q: Result<axum::extract::Query<PeerConsistency>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = q else {
        return (StatusCode::BAD_REQUEST, "give ?from=M&to=N\n").into_response();
    };
    let Some(view) = gw.shared.snapshot().view.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no verified governance checkpoint\n").into_response();
    };
    if q.to != view.checkpoint.size || q.from > q.to {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "this node proves from a size up to its verified size {}, not {} → {}\n",
                view.checkpoint.size, q.from, q.to
            ),
        )
            .into_response();
    }
    let Ok(_permit) = Arc::clone(&gw.peer_permits).try_acquire_owned() else {
        return (StatusCode::TOO_MANY_REQUESTS, "busy: try again\n").into_response();
    };
    let authority = Arc::clone(&gw.shared.authority);
    let path = format!("/api/v1/proof/consistency?from={}&to={}", q.from, q.to);
    let answer = tokio::task::spawn_blocking(move || authority.get(&path, 64 * 1024)).await;
    let body = match answer {
        Ok(Ok((200, b))) => b,
        _ => return (StatusCode::BAD_GATEWAY, "the authority gave no proof\n").into_response(),
    };
    let checked = crate::peers::parse_consistency(&body).and_then(|(h, from_root)| {
        modelgate_tlog::verify_consistency(q.from, q.to, &h, &from_root, &view.checkpoint.root)
            .map_err(|e| e.to_string())
    });
    match checked {
        Ok(()) => ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("the authority's proof does not verify against this node's root: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(gw): State<Gw>) -> Response {
    let snap = gw.shared.snapshot();
    if snap.models.values().any(|s| matches!(s, ModelStatus::Serving { .. })) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no model is Serving\n").into_response()
    }
}

async fn metrics(State(gw): State<Gw>, headers: HeaderMap) -> Response {
    use modelgate_http::prometheus::{Kind, Text};
    if let Err(r) = gw.may_read(&headers, gw.shared.config.metrics_access, "/metrics") {
        return r.into_response();
    }
    let mut o = Text::new();
    let m = &gw.metrics;
    let relaxed = std::sync::atomic::Ordering::Relaxed;
    let name = "modelgate_gateway_requests_total";
    o.family(name, Kind::Counter, "Inference calls received, by endpoint.");
    for (k, v) in m.requests.lock().map(|x| x.clone()).unwrap_or_default() {
        o.sample(name, &[("endpoint", k)], v);
    }
    let name = "modelgate_gateway_denials_total";
    o.family(
        name,
        Kind::Counter,
        "Calls denied, by reason code and the EG-MODEL-001 check that failed.",
    );
    for ((code, check), v) in m.denials.lock().map(|x| x.clone()).unwrap_or_default() {
        o.sample(name, &[("reason", code), ("check", check.map_or("", Check::code))], v);
    }
    let name = "modelgate_gateway_completions_total";
    o.family(name, Kind::Counter, "Completion records, by outcome.");
    for (k, v) in m.completions.lock().map(|x| x.clone()).unwrap_or_default() {
        o.sample(name, &[("outcome", k)], v);
    }
    o.single(
        "modelgate_gateway_unrecorded_denials_total",
        Kind::Counter,
        "Refusals without a valid token beyond the recording limit (refused, not recorded).",
        m.unrecorded.load(relaxed),
    );
    o.single(
        "modelgate_http_body_bytes_held",
        Kind::Gauge,
        "Callers' request bodies held in memory now.",
        gw.bodies.held_bytes(),
    );
    o.single(
        "modelgate_split_views_total",
        Kind::Counter,
        "Split views proven by the checkpoint exchange with peers (each contains every model).",
        gw.shared.split_views_found.load(relaxed),
    );
    o.single(
        "modelgate_split_view_evidence_files",
        Kind::Gauge,
        "Split-view evidence files in the data directory.",
        crate::peers::existing_evidence(&gw.shared.config.data_dir).len(),
    );
    let r = &gw.shared.replication;
    o.single(
        "modelgate_lineage_replicated_records",
        Kind::Gauge,
        "Lineage records the authority holds, as it last said.",
        r.shipped.load(relaxed),
    );
    o.single(
        "modelgate_lineage_replication_batches_total",
        Kind::Counter,
        "Lineage batches the authority kept.",
        r.batches.load(relaxed),
    );
    o.single(
        "modelgate_lineage_replication_failures_total",
        Kind::Counter,
        "Lineage batches not kept (tried again).",
        r.refused.load(relaxed),
    );
    m.append.render(
        &mut o,
        "modelgate_lineage_append_seconds",
        "Time to make a request's lineage record durable.",
    );
    m.before_forward.render(
        &mut o,
        "modelgate_gateway_before_forward_seconds",
        "Time from a call's arrival to its forwarding (checks, decision, durable lineage record).",
    );
    m.upstream.render(
        &mut o,
        "modelgate_gateway_upstream_seconds",
        "Time from forwarding a call to the inference server's response head.",
    );
    let snap = gw.shared.snapshot();
    let now = gw.shared.clock.now();
    let staleness = snap
        .view
        .as_ref()
        .map_or(f64::NAN, |v| now.saturating_sub(v.authority_time) as f64);
    o.single(
        "modelgate_sync_staleness_seconds",
        Kind::Gauge,
        "Age of the authority's latest verified timestamp.",
        staleness,
    );
    let name = "modelgate_model_state";
    o.family(name, Kind::Gauge, "1 for the state each model is in.");
    for (n, s) in &snap.models {
        let (reason, check) = match s {
            ModelStatus::Contained(w) => (w.reason.code(), w.check.code()),
            _ => ("", ""),
        };
        o.sample(
            name,
            &[("model", n), ("state", s.name()), ("reason", reason), ("check", check)],
            1,
        );
    }
    let name = "modelgate_model_lifecycle_step";
    o.family(
        name,
        Kind::Gauge,
        "Each model's EG-MODEL-001 lifecycle step (1-10; 10 when Serving, the step it stopped at when Contained).",
    );
    for (n, s) in &snap.models {
        let step = s.step();
        o.sample(name, &[("model", n), ("step", &step.to_string())], step.number());
    }
    o.into_response()
}

/// A call's records and, once anchored, its offline proof chain.
///
/// A record names a call's caller, scope, model and time: it is read with a
/// caller's token, of the caller's own calls unless its table says
/// `lineage = "all"`.
async fn lineage(State(gw): State<Gw>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let reader = match gw.caller(&headers) {
        None => return Refusal::InvalidApiKey.into_response(),
        Some(c) => match c.lineage {
            LineageAccess::None => {
                return Refusal::NotReadable {
                    principal: c.principal.clone(),
                    what: "lineage records".into(),
                }
                .into_response()
            }
            LineageAccess::All => None,
            LineageAccess::Own => Some(c.principal.clone()),
        },
    };
    let Ok(index) = id.parse::<u64>() else {
        return Refusal::InvalidLineageId.into_response();
    };
    let gw2 = Arc::clone(&gw);
    match tokio::task::spawn_blocking(move || proof_for(&gw2, index, reader.as_deref())).await {
        Ok(Ok(Proof::Anchored(p))) => Json(p).into_response(),
        Ok(Ok(Proof::Pending(p))) => Json(p).into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(e) => Refusal::Internal {
            detail: format!("the proof task failed: {e}"),
        }
        .into_response(),
    }
}

/// A lineage id's answer.
enum Proof {
    Anchored(Box<LineageProof>),
    Pending(PendingLineage),
}

fn unavailable(e: impl std::fmt::Display) -> Refusal {
    Refusal::LineageUnavailable { detail: e.to_string() }
}

fn shown(index: u64, bytes: &[u8]) -> ShownRecord {
    ShownRecord {
        index,
        record: serde_json::from_slice(bytes).unwrap_or(Value::Null),
    }
}

/// The completion record of request `index`: from the recent map, else
/// searched for forward (at most a million records).
fn find_completion(gw: &Gateway, lineage: &dyn LineageLog, index: u64, size: u64) -> Result<Option<u64>, Refusal> {
    if let Some(c) = gw.completions.lock().ok().and_then(|m| m.0.get(&index).copied()) {
        return Ok(Some(c));
    }
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        request: Option<u64>,
    }
    let mut start = index + 1;
    let end = size.min(index + 1 + 1_000_000);
    while start < end {
        let stop = (start + 4096).min(end);
        let chunk = lineage.entries(start, stop).map_err(unavailable)?;
        for (k, e) in chunk.iter().enumerate() {
            if let Ok(h) = serde_json::from_slice::<Head>(e) {
                if h.kind == "completion" && h.request == Some(index) {
                    return Ok(Some(start + k as u64));
                }
            }
        }
        start = stop;
    }
    Ok(None)
}

/// The principal a record belongs to: its own `principal`, or for a
/// completion its request's.
fn owner(record: &[u8], read: &dyn Fn(u64) -> Result<Vec<u8>, Refusal>) -> Result<Option<String>, Refusal> {
    #[derive(serde::Deserialize)]
    struct Owner {
        #[serde(default)]
        principal: Option<String>,
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        request: Option<u64>,
    }
    let Ok(o) = serde_json::from_slice::<Owner>(record) else {
        return Ok(None);
    };
    match (o.principal, o.kind.as_str(), o.request) {
        (Some(p), _, _) => Ok(Some(p)),
        (None, "completion", Some(r)) => {
            let req = read(r)?;
            Ok(serde_json::from_slice::<Owner>(&req).ok().and_then(|o| o.principal))
        }
        _ => Ok(None),
    }
}

/// `reader` is the principal whose records alone may be shown (none: all).
fn proof_for(gw: &Gateway, index: u64, reader: Option<&str>) -> Result<Proof, Refusal> {
    let lineage = gw.lineage().map_err(unavailable)?;
    let size = lineage.size().map_err(unavailable)?;
    if index >= size {
        return Err(Refusal::NoRecord { index, size });
    }
    let read = |i: u64| -> Result<Vec<u8>, Refusal> {
        lineage
            .entries(i, i + 1)
            .map_err(unavailable)?
            .pop()
            .ok_or_else(|| unavailable(format!("record {i} missing")))
    };
    let record = read(index)?;
    if let Some(reader) = reader {
        if owner(&record, &read)?.as_deref() != Some(reader) {
            return Err(Refusal::NotReadable {
                principal: reader.to_owned(),
                what: format!("lineage record {index} (not one of its calls)"),
            });
        }
    }
    let is_request = serde_json::from_slice::<Value>(&record).is_ok_and(|v| v["type"] == "request");
    let mut records = vec![(index, record)];
    if is_request {
        if let Some(c) = find_completion(gw, &*lineage, index, size)? {
            records.push((c, read(c)?));
        }
    }
    let last = records.iter().map(|r| r.0).max().unwrap_or(index);
    let anchor = gw.shared.anchors.lock().ok().and_then(|a| a.covering(last));
    let summary: Vec<ShownRecord> = records.iter().map(|(i, e)| shown(*i, e)).collect();
    let Some(anchor) = anchor else {
        return Ok(Proof::Pending(PendingLineage {
            id: index.to_string(),
            records: summary,
            anchored: false,
            detail: "not anchored yet; ask again after the next anchor (a few seconds)".into(),
        }));
    };
    let note = lineage
        .checkpoint(anchor.size)
        .map_err(unavailable)?
        .ok_or_else(|| unavailable(format!("no lineage checkpoint for size {}", anchor.size)))?;
    let mut proofs = Vec::new();
    for (i, e) in &records {
        let p = lineage.inclusion_proof(*i, anchor.size).map_err(unavailable)?;
        proofs.push(RecordProof {
            index: *i,
            entry: B64.encode(e),
            inclusion: p.iter().map(|h| B64.encode(h)).collect(),
        });
    }
    let enrollment = gw
        .shared
        .snapshot()
        .view
        .as_ref()
        .and_then(|v| v.state.nodes.get(&gw.shared.config.node).map(|n| n.index))
        .ok_or_else(|| unavailable("the node's enrollment is not in the verified view"))?;
    let authority = &gw.shared.authority;
    let fetch = |path: String| -> Result<Vec<u8>, Refusal> {
        match authority.get(&path, 4 << 20).map_err(unavailable)? {
            (200, body) => Ok(body),
            (404, _) => Err(Refusal::AnchorPending {
                url: authority.url(&path),
            }),
            (status, _) => Err(unavailable(format!("{}: HTTP {status}", authority.url(&path)))),
        }
    };
    let governed = |i: u64| -> Result<GovernedEntry, Refusal> {
        let entry = fetch(format!("/api/v1/entries/{i}"))?;
        let proof = fetch(format!("/api/v1/tlog-proof/{i}"))?;
        Ok(GovernedEntry {
            index: i,
            entry: B64.encode(&entry),
            tlog_proof: String::from_utf8_lossy(&proof).into_owned(),
        })
    };
    Ok(Proof::Anchored(Box::new(LineageProof {
        format: modelgate_node::proof::PROOF_FORMAT.to_owned(),
        id: index.to_string(),
        node: gw.shared.config.node.clone(),
        anchored: true,
        records: summary,
        proof: ProofChain {
            records: proofs,
            lineage_checkpoint: String::from_utf8_lossy(&note).into_owned(),
            anchor: governed(anchor.index)?,
            enrollment: governed(enrollment)?,
            // The governance behind the call: in the authority's full-chain
            // proof of the replicated record.
            governance: None,
        },
    })))
}

/// Serve `gw` on `listener` until `shutdown` resolves, with the gateway's
/// limits (see [`listen_limits`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Gw,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    modelgate_http::serve(listener, router(gw), listen_limits(), shutdown)
        .await
        .map_err(Error::Serve)
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
