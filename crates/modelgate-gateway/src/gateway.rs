//! `modelgate node serve`: the governed inference gateway. An
//! OpenAI-compatible reverse proxy that forwards a call only when the
//! requested model is Serving (all ten lifecycle steps) and the governance
//! decision allows the caller in its scope; that makes a durable lineage
//! record before forwarding (no record, no call); records the completion
//! (status, usage, digests, latency; also a client that went away); and
//! serves each call's offline proof chain once its lineage is anchored.
//!
//! Streaming responses pass through frame by frame: the proxy hashes and
//! counts what goes by, it never buffers a response.
//!
//! Also here: the deterministic mock upstream used by tests and benchmarks.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use clap::Args;
use http_body::{Body as _, Frame, SizeHint};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use modelgate_governance::{DecisionCache, DecisionRequest};
use modelgate_store::LogStore;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::runtime::{now, Event, Lineage, ModelStatus, Runtime, Shared, Wake};
use crate::telemetry::{semconv, CallSpan, Telemetry};
use crate::Failure;
use opentelemetry::KeyValue;

#[derive(Args)]
pub struct ServeArgs {
    /// The node's configuration file (`listen`, `upstream`, `[callers.*]`).
    #[arg(long, value_name = "FILE", env = "MODELGATE_NODE_CONFIG")]
    config: PathBuf,
    /// How often to sync and re-check, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 250)]
    interval_ms: u64,
}

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

    /// Write it in the Prometheus text format under `name`.
    fn render(&self, o: &mut String, name: &str, help: &str) {
        use std::fmt::Write as _;
        let _ = writeln!(o, "# HELP {name} {help}");
        let _ = writeln!(o, "# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(o, "{name}_bucket{{le=\"{}\"}} {cum}", *b as f64 / 1e6);
        }
        cum += self.buckets[LATENCY_BUCKETS_US.len()].load(Ordering::Relaxed);
        let _ = writeln!(o, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(o, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

#[derive(Default)]
struct Metrics {
    requests: Mutex<BTreeMap<&'static str, u64>>,
    denials: Mutex<BTreeMap<String, u64>>,
    completions: Mutex<BTreeMap<&'static str, u64>>,
    /// The durable request record alone.
    append: Histogram,
    /// Everything the node does before forwarding a call it allows (checks, decision,
    /// durable record): what governance adds to a call, apart from the proxying.
    before_forward: Histogram,
    /// From forwarding to the upstream's response head: the inference server's part.
    upstream: Histogram,
}

fn bump<K: Ord>(m: &Mutex<BTreeMap<K, u64>>, k: K) {
    if let Ok(mut m) = m.lock() {
        *m.entry(k).or_default() += 1;
    }
}

struct Caller {
    principal: String,
    groups: Vec<String>,
    scopes: Vec<String>,
}

/// Shards of the decision cache.
const DECISION_SHARDS: usize = 16;

struct Gateway {
    shared: Arc<Shared>,
    client: Client<HttpConnector, Body>,
    upstream: String,
    callers: HashMap<[u8; 32], Caller>,
    /// Decision caches, one per shard of (model, scope, caller, …): calls of
    /// different callers or models do not queue behind one lock.
    caches: Vec<Mutex<DecisionCache>>,
    metrics: Metrics,
    telemetry: Telemetry,
    /// The authority, for the governance half of proof chains.
    authority: crate::runtime::Http,
    /// Calls in progress (a permit is held until the answer has streamed).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Request index → completion index, for recent calls (bounded).
    completions: Mutex<(HashMap<u64, u64>, std::collections::VecDeque<u64>)>,
}

const RECENT_COMPLETIONS: usize = 100_000;

type Gw = Arc<Gateway>;

/// An OpenAI-style error.
fn openai_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let kind = match status.as_u16() {
        401 => "authentication_error",
        429 => "rate_limit_error",
        403 => "permission_error",
        404 => "not_found_error",
        400 | 413 | 422 => "invalid_request_error",
        _ => "service_unavailable",
    };
    (
        status,
        Json(json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}})),
    )
        .into_response()
}

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
    request_sha256: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    governance: Option<Governance>,
}

impl Facts<'_> {
    /// The facts as a JSON object, for a denial's record.
    fn value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
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

    fn lineage(&self) -> Result<Arc<Lineage>, String> {
        self.shared.lineage.clone()
    }

    /// Record a denial durably (best effort: the call is denied either way).
    async fn deny(&self, trace: &Trace, status: StatusCode, code: &str, message: String, record: Value) -> Response {
        bump(&self.metrics.denials, code.to_owned());
        self.shared.count(&format!("denied:{code}"));
        // A denial is a span too: the caller's trace shows where and why it stopped.
        let model = record["model"].as_str().unwrap_or("unknown").to_owned();
        let mut attrs = vec![KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        )];
        for (key, field) in [
            (semconv::MODELGATE_SCOPE, "scope"),
            (semconv::MODELGATE_PRINCIPAL, "principal"),
            (semconv::MODELGATE_MODEL_DIGEST, "digest"),
        ] {
            if let Some(v) = record[field].as_str() {
                attrs.push(KeyValue::new(key, v.to_owned()));
            }
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
            .end(vec![], Some(code.to_owned()));
        if let Ok(l) = self.lineage() {
            let mut r = record;
            r["type"] = json!("denial");
            r["code"] = json!(code);
            r["status"] = json!(status.as_u16());
            r["time"] = json!(now());
            r["node"] = json!(self.shared.config.node);
            match serde_json::to_vec(&r) {
                Ok(bytes) => {
                    let _ = l.append_async(bytes).await;
                }
                // Never an empty record in its place; the call is denied anyway.
                Err(e) => tracing::error!(error = %e, "encoding a denial's lineage record"),
            }
        }
        openai_error(status, code, message)
    }
}

/// Build the gateway from the runtime's shared state.
fn gateway(shared: Arc<Shared>) -> Result<Gateway, Failure> {
    let upstream = shared
        .config
        .upstream
        .clone()
        .ok_or_else(|| Failure::Usage("the configuration has no `upstream` (the inference server's URL)".into()))?;
    let mut callers = HashMap::new();
    for (name, c) in &shared.config.callers {
        let mut h = [0u8; 32];
        hex::decode_to_slice(&c.token_sha256, &mut h)
            .map_err(|e| Failure::Usage(format!("caller {name}: token_sha256: {e}")))?;
        callers.insert(
            h,
            Caller {
                principal: name.clone(),
                groups: c.groups.clone(),
                scopes: c.scopes.clone(),
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
    .map_err(Failure::Usage)?;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(shared.config.max_in_flight));
    Ok(Gateway {
        authority: crate::runtime::Http::new(&shared.config.authority),
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
    })
}

fn router(gw: Gw) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(|s, u, h, b| proxy(s, u, h, b, "chat")))
        .route(
            "/v1/completions",
            post(|s, u, h, b| proxy(s, u, h, b, "text_completion")),
        )
        .route("/v1/embeddings", post(|s, u, h, b| proxy(s, u, h, b, "embeddings")))
        .route("/v1/models", get(models))
        .route("/lineage/{id}", get(lineage))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { openai_error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(gw)
}

async fn proxy(State(gw): State<Gw>, uri: Uri, headers: HeaderMap, body: Bytes, endpoint: &'static str) -> Response {
    let started = Instant::now();
    // Overload is refused at once, before any work: queueing without bound
    // turns a burst into seconds of latency and unbounded memory. This is
    // not a governance decision, so it is counted, not written to lineage
    // (a write per refusal would add load exactly when there is too much).
    let Ok(permit) = Arc::clone(&gw.in_flight).try_acquire_owned() else {
        bump(&gw.metrics.denials, "overloaded".to_owned());
        return openai_error(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            format!(
                "{} calls are already in progress on this node; retry shortly",
                gw.shared.config.max_in_flight
            ),
        );
    };
    bump(&gw.metrics.requests, endpoint);
    gw.shared.count("requests");
    let trace = {
        let (trace, parent, span, header) = traceparent(&headers);
        Trace {
            trace,
            parent,
            span,
            header,
            operation: endpoint,
        }
    };
    let request_sha256 = hex_sha256(&body);
    let mut facts = Facts {
        endpoint,
        principal: None,
        scope: None,
        request_sha256: &request_sha256,
        model: None,
        digest: None,
        governance: None,
    };
    let Some(caller) = gw.caller(&headers) else {
        return gw
            .deny(
                &trace,
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "a caller's bearer token is required (Authorization: Bearer …)".into(),
                facts.value(),
            )
            .await;
    };
    facts.principal = Some(&caller.principal);
    let scope: &str = match headers.get("x-modelgate-scope").map(|v| v.to_str()) {
        None => &caller.scopes[0],
        Some(Ok(s)) if caller.scopes.iter().any(|c| c == s) => s,
        Some(_) => {
            return gw
                .deny(
                    &trace,
                    StatusCode::FORBIDDEN,
                    "ScopeNotPermitted",
                    format!("caller {} may call in {:?} only", caller.principal, caller.scopes),
                    facts.value(),
                )
                .await
        }
    };
    facts.scope = Some(scope);
    let call = serde_json::from_slice::<CallBody<'_>>(&body);
    let Ok(CallBody { model }) = &call else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be a JSON object with a string \"model\"",
        );
    };
    let model: &str = model;
    facts.model = Some(model);
    let snap = gw.shared.snapshot();
    let digest = match snap.models.get(model) {
        None => {
            return gw
                .deny(
                    &trace,
                    StatusCode::NOT_FOUND,
                    "model_not_found",
                    format!("this node serves no model named {model:?}"),
                    facts.value(),
                )
                .await
        }
        Some(ModelStatus::Starting) => {
            return gw
                .deny(
                    &trace,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Starting",
                    format!("model {model} has not finished its lifecycle yet"),
                    facts.value(),
                )
                .await
        }
        Some(ModelStatus::Contained { reason, detail }) => {
            let code = format!("{reason:?}");
            return gw
                .deny(
                    &trace,
                    StatusCode::SERVICE_UNAVAILABLE,
                    &code,
                    format!("model {model} is contained: {detail}"),
                    facts.value(),
                )
                .await;
        }
        Some(ModelStatus::Serving { digest, .. }) => digest.as_str(),
    };
    if gw.shared.unverified_change(model) {
        return gw
            .deny(
                &trace,
                StatusCode::SERVICE_UNAVAILABLE,
                "UnauthorizedModification",
                format!("model {model}'s files changed since they were verified; re-verifying"),
                facts.value(),
            )
            .await;
    }
    facts.digest = Some(digest);
    let Some(view) = snap.view.clone() else {
        return gw
            .deny(
                &trace,
                StatusCode::SERVICE_UNAVAILABLE,
                "SyncInterrupted",
                "no verified governance view".into(),
                facts.value(),
            )
            .await;
    };
    // The loop keeps the view fresh; if it stalled (an authority call hanging,
    // a stuck store) the snapshot ages, and an aged snapshot proves nothing.
    let t = now();
    if let Some(why) = snap.stale(gw.shared.config.max_staleness_seconds, t) {
        return gw
            .deny(
                &trace,
                StatusCode::SERVICE_UNAVAILABLE,
                "SyncInterrupted",
                why,
                facts.value(),
            )
            .await;
    }
    let req = DecisionRequest {
        model: digest.to_owned(),
        scope: scope.to_owned(),
        node: gw.shared.config.node.clone(),
        principal: caller.principal.clone(),
        groups: caller.groups.clone(),
        attributes: vec![],
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
        let code = decision.reasons.first().map_or("PolicyError", |r| r.as_str());
        let mut base = facts.value();
        base["policies"] = json!(decision.policies);
        return gw
            .deny(
                &trace,
                StatusCode::FORBIDDEN,
                code,
                format!("denied in scope {scope}: {}", decision.detail),
                base,
            )
            .await;
    }
    let (trace_id, parent_span, span_id, tp) = (&trace.trace, trace.parent.clone(), &trace.span, &trace.header);
    let record = RequestRecord {
        facts: &facts,
        kind: "request",
        time: t,
        node: &gw.shared.config.node,
        approval: &decision.approval,
        exception: &decision.exception,
        policies: &decision.policies,
        trace_id,
        body: gw.shared.config.store_content.then(|| String::from_utf8_lossy(&body)),
    };
    let record = match serde_json::to_vec(&record) {
        Ok(r) => r,
        // No durable record, no call: an empty record in its place would
        // be a lineage entry that proves nothing.
        Err(e) => {
            return gw
                .deny(
                    &trace,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "AuditDiscontinuity",
                    format!("the lineage record could not be encoded: {e}"),
                    Value::Null,
                )
                .await
        }
    };
    let lineage = match gw.lineage() {
        Ok(l) => l,
        Err(e) => {
            return gw
                .deny(
                    &trace,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "AuditDiscontinuity",
                    format!("the lineage log is not available: {e}"),
                    serde_json::from_slice(&record).unwrap_or_default(),
                )
                .await
        }
    };
    let append_started = Instant::now();
    let receipt = match lineage.append_async(record).await {
        Ok(r) => r,
        Err(e) => {
            bump(&gw.metrics.denials, "AuditDiscontinuity".to_owned());
            gw.shared.count("denied:AuditDiscontinuity");
            // The record could not be made durable: deny, and wake the loop
            // so the node's own checks see the failure too.
            if let Ok(w) = gw.shared.wake.lock() {
                let _ = w.send(Wake::Files(model.to_owned()));
            }
            return openai_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "AuditDiscontinuity",
                format!("the lineage record could not be made durable: {e}"),
            );
        }
    };
    let forwarded_at = Instant::now();
    gw.metrics.append.observe(forwarded_at - append_started);
    gw.metrics.before_forward.observe(forwarded_at - started);

    let target = format!(
        "{}{}",
        gw.upstream,
        uri.path_and_query().map_or(uri.path(), |p| p.as_str())
    );
    let mut up = hyper::Request::post(&target);
    for name in [header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_ENCODING] {
        if let Some(v) = headers.get(&name) {
            up = up.header(name, v);
        }
    }
    up = up.header("traceparent", tp);
    if let Some(ts) = headers.get("tracestate") {
        up = up.header("tracestate", ts);
    }
    let span = gw
        .telemetry
        .start(trace_id, parent_span.as_deref(), span_id, endpoint, model, || {
            vec![
                KeyValue::new(
                    semconv::SERVER_ADDRESS,
                    gw.upstream.trim_start_matches("http://").to_owned(),
                ),
                KeyValue::new(semconv::MODELGATE_LINEAGE_ID, receipt.index.to_string()),
                KeyValue::new(semconv::MODELGATE_MODEL_DIGEST, digest.to_owned()),
                KeyValue::new(semconv::MODELGATE_SCOPE, scope.to_owned()),
                KeyValue::new(semconv::MODELGATE_PRINCIPAL, caller.principal.clone()),
                KeyValue::new(
                    semconv::MODELGATE_APPROVAL,
                    decision.approval.clone().unwrap_or_default(),
                ),
            ]
        });
    let completion = Completion {
        _permit: permit,
        span: Some(span),
        lineage: Arc::clone(&lineage),
        gw: Arc::clone(&gw),
        request: receipt.index,
        status: 0,
        started,
        hasher: Sha256::new(),
        bytes: 0,
        head: Vec::new(),
        tail: Vec::new(),
        store_content: gw.shared.config.store_content,
    };
    // `Bytes` clones share the buffer; `facts` still borrows the model name from it.
    let forwarded = match up.body(Body::from(body.clone())) {
        Ok(r) => gw.client.request(r).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let resp = match forwarded {
        Ok(r) => {
            gw.metrics.upstream.observe(forwarded_at.elapsed());
            r
        }
        Err(e) => {
            let mut c = completion;
            c.status = 502;
            c.finish("upstream-error", Some(&e));
            let mut r = openai_error(
                StatusCode::BAD_GATEWAY,
                "upstream_unreachable",
                format!("the inference server did not answer: {e}"),
            );
            // The call was recorded: say where, so the failure can be traced.
            if let Ok(v) = HeaderValue::from_str(&receipt.index.to_string()) {
                r.headers_mut().insert("x-modelgate-lineage-id", v);
            }
            return r;
        }
    };
    let (parts, incoming) = resp.into_parts();
    let mut completion = completion;
    completion.status = parts.status.as_u16();
    let mut out = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if !is_hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    out = out
        .header("x-modelgate-lineage-id", receipt.index.to_string())
        .header("x-modelgate-checkpoint-size", receipt.size.to_string())
        .header("x-modelgate-governance-size", view.checkpoint.size.to_string())
        .header("x-modelgate-model-digest", digest)
        .header("traceparent", tp);
    let body = Body::new(Recorded {
        inner: incoming,
        rec: Some(completion),
    });
    out.body(body).unwrap_or_else(|e| {
        openai_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("building the response: {e}"),
        )
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
    lineage: Arc<Lineage>,
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
            time: now(),
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
        let queued = self.lineage.append_then(record, move |done| {
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
        });
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

fn status_json(shared: &Shared) -> Value {
    let snap = shared.snapshot();
    let models: BTreeMap<&str, Value> = snap.models.iter().map(|(n, s)| (n.as_str(), s.json())).collect();
    json!({
        "node": shared.config.node,
        "time": snap.time,
        "governance": snap.view.as_ref().map(|v| json!({"size": v.checkpoint.size,
            "staleness_seconds": now().saturating_sub(v.authority_time)})),
        "models": models,
    })
}

async fn status(State(gw): State<Gw>) -> Response {
    Json(status_json(&gw.shared)).into_response()
}

async fn readyz(State(gw): State<Gw>) -> Response {
    let snap = gw.shared.snapshot();
    if snap.models.values().any(|s| matches!(s, ModelStatus::Serving { .. })) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no model is Serving\n").into_response()
    }
}

async fn metrics(State(gw): State<Gw>) -> Response {
    use std::fmt::Write as _;
    let mut o = String::new();
    let m = &gw.metrics;
    let _ = writeln!(
        o,
        "# HELP modelgate_gateway_requests_total Inference calls received, by endpoint."
    );
    let _ = writeln!(o, "# TYPE modelgate_gateway_requests_total counter");
    for (k, v) in m.requests.lock().map(|x| x.clone()).unwrap_or_default() {
        let _ = writeln!(o, "modelgate_gateway_requests_total{{endpoint=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP modelgate_gateway_denials_total Calls denied, by reason code."
    );
    let _ = writeln!(o, "# TYPE modelgate_gateway_denials_total counter");
    for (k, v) in m.denials.lock().map(|x| x.clone()).unwrap_or_default() {
        let _ = writeln!(o, "modelgate_gateway_denials_total{{reason=\"{k}\"}} {v}");
    }
    let _ = writeln!(
        o,
        "# HELP modelgate_gateway_completions_total Completion records, by outcome."
    );
    let _ = writeln!(o, "# TYPE modelgate_gateway_completions_total counter");
    for (k, v) in m.completions.lock().map(|x| x.clone()).unwrap_or_default() {
        let _ = writeln!(o, "modelgate_gateway_completions_total{{outcome=\"{k}\"}} {v}");
    }
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
    let _ = writeln!(
        o,
        "# HELP modelgate_sync_staleness_seconds Age of the authority's latest verified timestamp."
    );
    let _ = writeln!(o, "# TYPE modelgate_sync_staleness_seconds gauge");
    let staleness = snap
        .view
        .as_ref()
        .map_or(f64::NAN, |v| now().saturating_sub(v.authority_time) as f64);
    let _ = writeln!(o, "modelgate_sync_staleness_seconds {staleness}");
    let _ = writeln!(o, "# HELP modelgate_model_state 1 for the state each model is in.");
    let _ = writeln!(o, "# TYPE modelgate_model_state gauge");
    for (n, s) in &snap.models {
        let (state, reason) = match s {
            ModelStatus::Contained { reason, .. } => (s.name(), format!("{reason:?}")),
            _ => (s.name(), String::new()),
        };
        let _ = writeln!(
            o,
            "modelgate_model_state{{model=\"{n}\",state=\"{state}\",reason=\"{reason}\"}} 1"
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        o,
    )
        .into_response()
}

/// A call's records and, once anchored, its offline proof chain.
async fn lineage(State(gw): State<Gw>, Path(id): Path<String>) -> Response {
    let Ok(index) = id.parse::<u64>() else {
        return openai_error(StatusCode::BAD_REQUEST, "invalid_id", "a lineage id is a decimal index");
    };
    let gw2 = Arc::clone(&gw);
    let r = tokio::task::spawn_blocking(move || proof_for(&gw2, index)).await;
    match r {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err((status, code, msg))) => openai_error(status, code, msg),
        Err(e) => openai_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

type ProofError = (StatusCode, &'static str, String);

fn proof_for(gw: &Gateway, index: u64) -> Result<Value, ProofError> {
    let unavailable = |e: String| (StatusCode::SERVICE_UNAVAILABLE, "lineage_unavailable", e);
    let lineage = gw.lineage().map_err(unavailable)?;
    let size = lineage
        .read(|r| r.size().map_err(|e| e.to_string()))
        .map_err(unavailable)?;
    if index >= size {
        return Err((
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no lineage record {index} (the log has {size})"),
        ));
    }
    let read = |i: u64| -> Result<Vec<u8>, ProofError> {
        lineage
            .read(|r| r.entries(i, i + 1).map_err(|e| e.to_string()))
            .map_err(unavailable)?
            .pop()
            .ok_or_else(|| unavailable(format!("record {i} missing")))
    };
    let record = read(index)?;
    let rv: Value = serde_json::from_slice(&record).unwrap_or(Value::Null);
    // The completion: from the recent map, else search forward.
    let mut completion = gw.completions.lock().ok().and_then(|m| m.0.get(&index).copied());
    if completion.is_none() && rv["type"] == "request" {
        let mut start = index + 1;
        let end = size.min(index + 1 + 1_000_000);
        'scan: while start < end {
            let stop = (start + 4096).min(end);
            let chunk = lineage
                .read(|r| r.entries(start, stop).map_err(|e| e.to_string()))
                .map_err(unavailable)?;
            for (k, e) in chunk.iter().enumerate() {
                if let Ok(v) = serde_json::from_slice::<Value>(e) {
                    if v["type"] == "completion" && v["request"] == index {
                        completion = Some(start + k as u64);
                        break 'scan;
                    }
                }
            }
            start = stop;
        }
    }
    let mut records = vec![(index, record)];
    if let Some(c) = completion {
        records.push((c, read(c)?));
    }
    let last = records.iter().map(|r| r.0).max().unwrap_or(index);
    let anchor = gw
        .shared
        .anchors
        .lock()
        .ok()
        .and_then(|a| a.iter().find(|a| a.size > last).copied());
    let summary: Vec<Value> = records
        .iter()
        .map(|(i, e)| json!({"index": i, "record": serde_json::from_slice::<Value>(e).unwrap_or(Value::Null)}))
        .collect();
    let Some(anchor) = anchor else {
        return Ok(json!({"id": index.to_string(), "records": summary, "anchored": false,
                         "detail": "not anchored yet; ask again after the next anchor (a few seconds)"}));
    };
    let note = lineage
        .read(|r| r.checkpoint(anchor.size).map_err(|e| e.to_string()))
        .map_err(unavailable)?
        .ok_or_else(|| unavailable(format!("no lineage checkpoint for size {}", anchor.size)))?;
    let mut proofs = Vec::new();
    for (i, e) in &records {
        let p = lineage
            .read(|r| {
                modelgate_tlog::inclusion_proof(*i, anchor.size, &modelgate_store::Nodes(r)).map_err(|e| e.to_string())
            })
            .map_err(unavailable)?;
        proofs.push(json!({"index": i, "entry": B64.encode(e), "inclusion": p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>()}));
    }
    let enrollment = gw
        .shared
        .snapshot()
        .view
        .as_ref()
        .and_then(|v| v.state.nodes.get(&gw.shared.config.node).map(|n| n.index))
        .ok_or_else(|| unavailable("the node's enrollment is not in the verified view".into()))?;
    let fetch = |path: String| -> Result<Vec<u8>, ProofError> {
        match gw.authority.get_any(&path, 4 << 20).map_err(unavailable)? {
            (200, body) => Ok(body),
            (404, _) => Err((
                StatusCode::ACCEPTED,
                "anchor_pending",
                format!(
                    "{}: not yet covered by the authority's checkpoint; retry in a second",
                    gw.authority.url(&path)
                ),
            )),
            (status, _) => Err(unavailable(format!("{}: HTTP {status}", gw.authority.url(&path)))),
        }
    };
    let anchor_entry = fetch(format!("/api/v1/entries/{}", anchor.index))?;
    let anchor_proof = fetch(format!("/api/v1/tlog-proof/{}", anchor.index))?;
    let enrollment_entry = fetch(format!("/api/v1/entries/{enrollment}"))?;
    let enrollment_proof = fetch(format!("/api/v1/tlog-proof/{enrollment}"))?;
    Ok(json!({
        "format": crate::lineage_cmd::PROOF_FORMAT,
        "id": index.to_string(),
        "node": gw.shared.config.node,
        "anchored": true,
        "records": summary,
        "proof": {
            "records": proofs,
            "lineage_checkpoint": String::from_utf8_lossy(&note),
            "anchor": {"index": anchor.index, "entry": B64.encode(&anchor_entry),
                       "tlog_proof": String::from_utf8_lossy(&anchor_proof)},
            "enrollment": {"index": enrollment, "entry": B64.encode(&enrollment_entry),
                           "tlog_proof": String::from_utf8_lossy(&enrollment_proof)},
        }
    }))
}

/// `modelgate node serve`.
pub fn serve(a: ServeArgs) -> Result<(), Failure> {
    use std::io::Write as _;
    crate::return_freed_memory_promptly();
    crate::runtime::init_logging();
    let rt = Runtime::open(&a.config, Duration::from_millis(a.interval_ms.max(10)))?;
    let shared = rt.shared();
    let gw = Arc::new(gateway(Arc::clone(&shared))?);
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Proof requests read the lineage store on blocking threads; a bounded pool bounds memory.
        .max_blocking_threads(8)
        .build()
        .map_err(|e| Failure::Usage(format!("starting the async runtime: {e}")))?;
    let listener = tokio_rt
        .block_on(tokio::net::TcpListener::bind(&shared.config.listen))
        .map_err(|e| Failure::Usage(format!("couldn't listen on {}: {e}", shared.config.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::Usage(format!("listening address: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", json!({"listening": format!("http://{addr}")})).and_then(|()| out.flush());
    }
    let looper = rt.spawn(Event::print)?;
    let app = router(Arc::clone(&gw));
    let served = tokio_rt.block_on(async move {
        modelgate_authority::listen::serve(listener, app, listen_limits(), async {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(mut t), Ok(mut i)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
                tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
            } else {
                std::future::pending::<()>().await;
            }
        })
        .await
    });
    if let Ok(w) = shared.wake.lock() {
        let _ = w.send(Wake::Stop);
    }
    let _ = looper.join();
    // Give in-flight completion records their batch.
    tokio_rt.shutdown_timeout(Duration::from_secs(2));
    gw.telemetry.shutdown();
    served.map_err(|e| Failure::Usage(format!("serving: {e}")))
}

/// A gateway and its node loop inside this process, on `rt` (the demo).
/// The loop runs until `Wake::Stop` is sent through the returned state.
pub(crate) fn spawn_in_process(
    config: &std::path::Path,
    rt: &tokio::runtime::Runtime,
) -> Result<(String, Arc<Shared>), Failure> {
    let runtime = Runtime::open(config, Duration::from_millis(100))?;
    let shared = runtime.shared();
    let gw = Arc::new(gateway(Arc::clone(&shared))?);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&shared.config.listen))
        .map_err(|e| Failure::Usage(format!("couldn't listen on {}: {e}", shared.config.listen)))?;
    let addr = listener.local_addr().map_err(|e| Failure::Usage(e.to_string()))?;
    runtime.spawn(|_| {})?;
    rt.spawn(async move {
        modelgate_authority::listen::serve(listener, router(gw), listen_limits(), std::future::pending()).await
    });
    Ok((format!("http://{addr}"), shared))
}

/// The gateway's listener limits: a slow client is cut off after 10 s
/// without a complete request head, as on the authority; the time to the
/// response head may be long (an inference server's time to first token on
/// a long prompt), so it is bounded at 10 minutes, not 30 s. Callers'
/// connections are TCP_NODELAY (as nginx sets them), set by the listener.
fn listen_limits() -> modelgate_authority::listen::Limits {
    modelgate_authority::listen::Limits {
        request: Duration::from_secs(600),
        ..Default::default()
    }
}

/// The mock upstream inside this process, on `rt` (the demo); its URL.
pub(crate) fn spawn_mock(rt: &tokio::runtime::Runtime) -> Result<String, Failure> {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| Failure::Usage(format!("couldn't listen: {e}")))?;
    let addr = listener.local_addr().map_err(|e| Failure::Usage(e.to_string()))?;
    let app = mock_router(Mock {
        chunks: 8,
        delay: Duration::from_millis(10),
    });
    rt.spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

fn mock_router(m: Mock) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(mock_complete))
        .route("/v1/completions", post(mock_complete))
        .route("/v1/embeddings", post(mock_embeddings))
        .route(
            "/v1/models",
            get(|| async { Json(json!({"object": "list", "data": [{"id": "mock", "object": "model"}]})) }),
        )
        .with_state(m)
}

#[derive(Args)]
pub struct MockArgs {
    /// Address to listen on (port 0 picks one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Events in a streamed answer.
    #[arg(long, default_value_t = 8)]
    chunks: u32,
    /// Pause between streamed events, in milliseconds.
    #[arg(long, default_value_t = 50)]
    chunk_delay_ms: u64,
}

#[derive(Clone)]
struct Mock {
    chunks: u32,
    delay: Duration,
}

fn last_text(v: &Value) -> String {
    if let Some(msgs) = v["messages"].as_array() {
        return msgs
            .last()
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_owned();
    }
    match &v["prompt"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn mock_complete(State(m): State<Mock>, headers: HeaderMap, uri: Uri, Json(v): Json<Value>) -> Response {
    let model = v["model"].as_str().unwrap_or("mock").to_owned();
    let text = last_text(&v);
    let prompt_tokens = text.split_whitespace().count() as u64;
    let chat = uri.path().ends_with("/chat/completions");
    let seen = headers
        .get("traceparent")
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let auth_seen = if headers.contains_key(header::AUTHORIZATION) {
        "yes"
    } else {
        "no"
    };
    if v["stream"] == json!(true) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let (chunks, delay) = (m.chunks, m.delay);
        tokio::spawn(async move {
            for i in 0..chunks {
                let piece = format!("tok{i} ");
                let ev = if chat {
                    json!({"id": "mock", "object": "chat.completion.chunk", "model": model,
                           "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]})
                } else {
                    json!({"id": "mock", "object": "text_completion", "model": model,
                           "choices": [{"index": 0, "text": piece, "finish_reason": null}]})
                };
                if tx.send(Bytes::from(format!("data: {ev}\n\n"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(delay).await;
            }
            let last = json!({"id": "mock", "object": "chat.completion.chunk", "model": model, "choices": [],
                              "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": chunks,
                                        "total_tokens": prompt_tokens + u64::from(chunks)}});
            let _ = tx.send(Bytes::from(format!("data: {last}\n\ndata: [DONE]\n\n"))).await;
        });
        return (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
                (HeaderName::from_static("x-seen-traceparent"), seen),
                (
                    HeaderName::from_static("x-seen-authorization"),
                    HeaderValue::from_static(auth_seen),
                ),
            ],
            Body::new(ChannelBody(rx)),
        )
            .into_response();
    }
    let answer = format!("echo: {text}");
    let body = if chat {
        json!({"id": "mock", "object": "chat.completion", "created": 0, "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}})
    } else {
        json!({"id": "mock", "object": "text_completion", "created": 0, "model": model,
               "choices": [{"index": 0, "text": answer, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2}})
    };
    (
        [
            (HeaderName::from_static("x-seen-traceparent"), seen),
            (
                HeaderName::from_static("x-seen-authorization"),
                HeaderValue::from_static(auth_seen),
            ),
        ],
        Json(body),
    )
        .into_response()
}

/// A channel of chunks as a response body (frames as they are sent).
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

async fn mock_embeddings(Json(v): Json<Value>) -> Response {
    let inputs: Vec<String> = match &v["input"] {
        Value::Array(a) => a.iter().map(|x| x.as_str().unwrap_or_default().to_owned()).collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let h = Sha256::digest(s.as_bytes());
            let emb: Vec<f64> = h.iter().take(8).map(|b| f64::from(*b) / 255.0).collect();
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
    Json(json!({"object": "list", "data": data, "model": v["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

/// `modelgate mock-upstream`.
pub fn mock_upstream(a: MockArgs) -> Result<(), Failure> {
    use std::io::Write as _;
    let m = Mock {
        chunks: a.chunks,
        delay: Duration::from_millis(a.chunk_delay_ms),
    };
    let app = mock_router(m);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(format!("starting the async runtime: {e}")))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .map_err(|e| Failure::Usage(format!("couldn't listen on {}: {e}", a.listen)))?;
        let addr = listener.local_addr().map_err(|e| Failure::Usage(e.to_string()))?;
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", json!({"listening": format!("http://{addr}")})).and_then(|()| out.flush());
        }
        axum::serve(listener, app)
            .await
            .map_err(|e| Failure::Usage(format!("serving: {e}")))
    })
}
