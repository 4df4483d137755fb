//! Operations: `/readyz`, `/metrics` and `/openapi.json`.

use super::*;

pub(super) async fn readyz(AxState(a): AxState<Shared>) -> Answer {
    match a.writer_trouble() {
        None => Ok((StatusCode::OK, "ready\n").into_response()),
        Some(WriterTrouble::Stopped) => Err(ApiError::new(ErrorKind::NotReady, "the writer is not running")),
        Some(WriterTrouble::Stalled(d)) => Err(ApiError::new(
            ErrorKind::WriterStalled,
            format!("a durable write has not returned for {} ms", d.as_millis()),
        )),
        Some(WriterTrouble::Failing(e)) => Err(ApiError::new(
            ErrorKind::WriterFailing,
            format!("the last durable write failed: {e}"),
        )),
    }
}

pub(super) async fn metrics(AxState(a): AxState<Shared>) -> Response {
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
    witness_metrics(&a, size, &mut out);
    modelgate_http::tls::metrics(&mut out);
    out.into_response()
}

/// The witnesses' part of `/metrics`, when witnesses are asked.
fn witness_metrics(a: &Authority, size: u64, out: &mut modelgate_http::prometheus::Text) {
    use modelgate_http::prometheus::Kind;
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
}

pub(super) async fn openapi() -> Response {
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
