//! The gateway's operational routes: `/v1/models`, `/status`, `/readyz`, `/metrics`, and for other nodes `/peer/checkpoint` and `/peer/consistency`.

use super::*;

pub(super) async fn models(State(gw): State<Gw>) -> Response {
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
        "integrity": integrity_json(shared),
        "listener": {
            "tls": shared.config.tls_cert.is_some(),
            "mutual_tls": shared.config.tls_client_ca.is_some(),
            "plaintext_off_loopback": modelgate_http::tls::plaintext_off_loopback(),
        },
    })
}

/// How the node keeps its models' files verified: the background full
/// re-verification's settings and last runs, and fs-verity where asked for.
fn integrity_json(shared: &Shared) -> Value {
    let c = &shared.config;
    let fs_verity: BTreeMap<&str, Value> = shared
        .fs_verity
        .iter()
        .map(|(m, r)| {
            let v = match r {
                Ok(()) => json!({"available": true}),
                Err(why) => json!({"available": false, "why": why, "instead": "the verified-digest cache"}),
            };
            (m.as_str(), v)
        })
        .collect();
    json!({
        "rehash_interval_seconds": c.rehash_interval_seconds,
        "rehash_max_mib_per_second": c.rehash_max_mib_per_second,
        "full_verification": shared.full_checks(),
        "fs_verity": if c.fs_verity { json!(fs_verity) } else { json!("off") },
    })
}

impl Gateway {
    /// May the caller of `headers` read an operational endpoint?
    pub(super) fn may_read(
        &self,
        headers: &HeaderMap,
        ext: &axum::http::Extensions,
        access: EndpointAccess,
        what: &'static str,
    ) -> Result<(), Refusal> {
        match access {
            EndpointAccess::Open => Ok(()),
            EndpointAccess::Off => Err(Refusal::NoRoute),
            EndpointAccess::Token => match self.caller(headers, ext) {
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

/// `/status` (its access is the route's guard: `status_access`).
pub(super) async fn status(State(gw): State<Gw>) -> Response {
    Json(status_json(&gw.shared)).into_response()
}

/// This node's latest verified governance checkpoint, as the authority
/// served it: public (it is the log's), for peers comparing histories.
pub(super) async fn peer_checkpoint(State(gw): State<Gw>) -> Response {
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
pub(super) struct PeerConsistency {
    from: u64,
    to: u64,
}

/// A consistency proof from `from` to this node's verified size `to`, from
/// its authority, passed on only once it verifies against the root this
/// node verified: a node vouches for nothing it has not checked.
pub(super) async fn peer_consistency(
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

pub(super) async fn readyz(State(gw): State<Gw>) -> Response {
    let snap = gw.shared.snapshot();
    if snap.models.values().any(|s| matches!(s, ModelStatus::Serving { .. })) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no model is Serving\n").into_response()
    }
}

/// `/metrics` (its access is the route's guard: `metrics_access`).
pub(super) async fn metrics(State(gw): State<Gw>) -> Response {
    use modelgate_http::prometheus::{Kind, Text};
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
    modelgate_http::tls::metrics(&mut o);
    o.into_response()
}
