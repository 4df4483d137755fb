//! One governed call: admitted on its head, its body read within the callers' budget, decided, recorded durably, forwarded, and its completion recorded as the answer streams back.

use super::*;

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

pub(super) async fn proxy(State(gw): State<Gw>, req: axum::extract::Request, endpoint: &'static str) -> Response {
    let (parts, body) = req.into_parts();
    let call = match admit(&gw, &parts.headers, &parts.extensions, endpoint).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut facts = Facts {
        principal: Some(&call.caller.principal),
        scope: Some(&call.scope),
        ..Facts::new(endpoint)
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
async fn admit<'g>(
    gw: &'g Gw,
    headers: &HeaderMap,
    ext: &axum::http::Extensions,
    endpoint: &'static str,
) -> Result<Admitted<'g>, Response> {
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
    let mut facts = Facts::new(endpoint);
    let Some(caller) = gw.caller(headers, ext) else {
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
