//! The reads: the checkpoint and tiles, proofs, entries and the state's collections, all from the published state and pooled read handles.

use super::*;

pub(super) async fn checkpoint(AxState(a): AxState<Shared>) -> Response {
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

pub(super) fn latest_size(a: &Authority) -> u64 {
    a.served.read().map_or(0, |s| s.size)
}

pub(super) async fn tile(AxState(a): AxState<Shared>, Path(path): Path<String>) -> Response {
    let parsed = match parse_path(&format!("tile/{path}")) {
        Ok(p) => p,
        Err(e) => return ApiError::new(ErrorKind::BadTilePath, e.to_string()).into_response(),
    };
    let size = latest_size(&a);
    let (id, entries) = match parsed {
        TilePath::Hashes(t) => (t, false),
        TilePath::Entries(t) => (t, true),
    };
    let available = TileId::width_at(id.level, id.index, size).unwrap_or(0);
    if id.width > available {
        return ApiError::new(
            ErrorKind::NoSuchTile,
            format!("tile {path} is beyond the log's size {size}"),
        )
        .into_response();
    }
    let a2 = Arc::clone(&a);
    let data = blocking(move || {
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
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct InclusionQuery {
    pub(super) index: u64,
    pub(super) size: Option<u64>,
}

pub(super) async fn inclusion(AxState(a): AxState<Shared>, Query(q): Query<InclusionQuery>) -> Response {
    let size = q.size.unwrap_or_else(|| latest_size(&a));
    if size > latest_size(&a) || q.index >= size {
        return ApiError::new(
            ErrorKind::OutOfRange,
            format!(
                "index {} is not in a tree of size {size} (log size {})",
                q.index,
                latest_size(&a)
            ),
        )
        .into_response();
    }
    let a2 = Arc::clone(&a);
    let r = blocking(move || {
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
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct ConsistencyQuery {
    pub(super) from: u64,
    pub(super) to: Option<u64>,
}

pub(super) async fn consistency(AxState(a): AxState<Shared>, Query(q): Query<ConsistencyQuery>) -> Response {
    let to = q.to.unwrap_or_else(|| latest_size(&a));
    if to > latest_size(&a) || q.from > to {
        return ApiError::new(
            ErrorKind::OutOfRange,
            format!(
                "sizes {} → {to} are not within the log (size {})",
                q.from,
                latest_size(&a)
            ),
        )
        .into_response();
    }
    let a2 = Arc::clone(&a);
    let r = blocking(move || {
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
        Err(e) => e.into_response(),
    }
}

/// A 404 for an index the log does not have yet.
pub(super) fn out_of_range(index: u64, size: u64) -> Option<Response> {
    (index >= size).then(|| {
        ApiError::new(
            ErrorKind::NotInLog,
            format!("index {index} is not in the log (size {size})"),
        )
        .into_response()
    })
}

/// One entry's exact bytes (what its leaf hash covers).
pub(super) async fn entry(AxState(a): AxState<Shared>, Path(index): Path<u64>) -> Response {
    let size = latest_size(&a);
    if let Some(r) = out_of_range(index, size) {
        return r;
    }
    let a2 = Arc::clone(&a);
    let r = blocking(move || a2.with_reader(|s| s.entries(index, index + 1))).await;
    match r {
        Ok(Ok(mut e)) if e.len() == 1 => ([(header::CONTENT_TYPE, "application/json")], e.remove(0)).into_response(),
        Ok(Ok(_)) => ApiError::internal("store", "entry missing").into_response(),
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn tlog_proof(AxState(a): AxState<Shared>, Path(index): Path<u64>) -> Response {
    let size = a.served.read().map_or(0, |s| s.size);
    if let Some(r) = out_of_range(index, size) {
        return r;
    }
    match blocking(move || a.tlog_proof(index)).await {
        Ok(Ok(Some(proof))) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], proof).into_response(),
        Ok(Ok(None)) => ApiError::new(
            ErrorKind::NotInLog,
            format!("index {index} is not in the log (size {size})"),
        )
        .into_response(),
        Ok(Err(e)) => ApiError::internal("store", e.to_string()).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub(super) struct StateQuery {
    pub(super) size: Option<u64>,
}

pub(super) fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// The state's summary at the latest size, at a recent checkpoint size (kept
/// by the writer), or refolded for an older size — one refold at a time.
pub(super) async fn state(AxState(a): AxState<Shared>, Query(q): Query<StateQuery>) -> Response {
    let Some(n) = q.size else {
        return json_bytes(a.latest().1);
    };
    if let Some(s) = a.summary_at(n) {
        return json_bytes(s);
    }
    let current = a.size();
    if n == 0 || n > current {
        return ApiError::new(
            ErrorKind::OutOfRange,
            format!("size {n} is not between 1 and {current}"),
        )
        .into_response();
    }
    let Ok(_permit) = a.refolds.try_acquire() else {
        return ApiError::new(ErrorKind::Busy, "another past state is being refolded; retry").into_response();
    };
    let a2 = Arc::clone(&a);
    let r = blocking(move || {
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
pub(super) async fn with_state(a: &Authority, f: impl FnOnce(&State) -> Value + Send + 'static) -> Response {
    let state = a.state();
    match blocking(move || serde_json::to_vec(&f(&state))).await {
        Ok(Ok(bytes)) => json_bytes(Bytes::from(bytes)),
        _ => ApiError::internal("internal", "encoding the state failed").into_response(),
    }
}

pub(super) async fn trust_root(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.trust_root.as_ref().map(|r| &r.doc))).await
}

pub(super) async fn models(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.models.values().collect::<Vec<_>>())).await
}

pub(super) async fn model(AxState(a): AxState<Shared>, Path(digest): Path<String>) -> Response {
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
        None => ApiError::new(ErrorKind::UnknownModel, format!("model {digest} is not registered")).into_response(),
    }
}

pub(super) async fn approvals(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.approvals.values().collect::<Vec<_>>())).await
}

pub(super) async fn revocations(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.revocations.values().collect::<Vec<_>>())).await
}

pub(super) async fn exceptions(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.exceptions.values().collect::<Vec<_>>())).await
}

pub(super) async fn nodes(AxState(a): AxState<Shared>) -> Response {
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

pub(super) async fn policy(AxState(a): AxState<Shared>) -> Response {
    with_state(&a, |s| json!(s.policy.as_ref())).await
}
