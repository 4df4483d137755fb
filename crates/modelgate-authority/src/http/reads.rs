//! The reads: the checkpoint and tiles, proofs, entries and the state's collections, all from the published state and pooled read handles.

use super::*;

pub(super) async fn checkpoint(AxState(a): AxState<Shared>) -> Answer {
    let note = match a.served.read() {
        Ok(s) => Arc::clone(&s.note),
        Err(_) => return Err(ApiError::internal("internal", "checkpoint lock poisoned")),
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            // A cache may share it for a second: its cosignature is renewed
            // every half second and nodes allow far more staleness.
            (header::CACHE_CONTROL, "public, max-age=1"),
        ],
        note.as_ref().clone(),
    )
        .into_response())
}

pub(super) fn latest_size(a: &Authority) -> u64 {
    a.served.read().map_or(0, |s| s.size)
}

pub(super) async fn tile(AxState(a): AxState<Shared>, Path(path): Path<String>) -> Answer {
    let parsed =
        parse_path(&format!("tile/{path}")).map_err(|e| ApiError::new(ErrorKind::BadTilePath, e.to_string()))?;
    let size = latest_size(&a);
    let (id, entries) = match parsed {
        TilePath::Hashes(t) => (t, false),
        TilePath::Entries(t) => (t, true),
    };
    let available = TileId::width_at(id.level, id.index, size).unwrap_or(0);
    if id.width > available {
        return Err(ApiError::new(
            ErrorKind::NoSuchTile,
            format!("tile {path} is beyond the log's size {size}"),
        ));
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
    .await??;
    let cache = if id.is_full() {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        data,
    )
        .into_response())
}

#[derive(Deserialize)]
pub(super) struct InclusionQuery {
    pub(super) index: u64,
    pub(super) size: Option<u64>,
}

pub(super) async fn inclusion(AxState(a): AxState<Shared>, Query(q): Query<InclusionQuery>) -> Answer {
    let size = q.size.unwrap_or_else(|| latest_size(&a));
    if size > latest_size(&a) || q.index >= size {
        return Err(ApiError::new(
            ErrorKind::OutOfRange,
            format!(
                "index {} is not in a tree of size {size} (log size {})",
                q.index,
                latest_size(&a)
            ),
        ));
    }
    let a2 = Arc::clone(&a);
    let p = blocking(move || {
        a2.with_reader(|s| {
            inclusion_proof(q.index, size, &Nodes(&*s))
                .map_err(|e| modelgate_store::StoreError::NotFound(e.to_string()))
        })
    })
    .await??;
    let hashes = p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>();
    Ok(Json(json!({"index": q.index, "size": size, "hashes": hashes})).into_response())
}

#[derive(Deserialize)]
pub(super) struct ConsistencyQuery {
    pub(super) from: u64,
    pub(super) to: Option<u64>,
}

pub(super) async fn consistency(AxState(a): AxState<Shared>, Query(q): Query<ConsistencyQuery>) -> Answer {
    let to = q.to.unwrap_or_else(|| latest_size(&a));
    if to > latest_size(&a) || q.from > to {
        return Err(ApiError::new(
            ErrorKind::OutOfRange,
            format!(
                "sizes {} → {to} are not within the log (size {})",
                q.from,
                latest_size(&a)
            ),
        ));
    }
    let a2 = Arc::clone(&a);
    let (p, from_root) = blocking(move || {
        a2.with_reader(|s| {
            let nf = |e: String| modelgate_store::StoreError::NotFound(e);
            let proof = consistency_proof(q.from, to, &Nodes(&*s)).map_err(|e| nf(e.to_string()))?;
            // The root at `from` the proof implies: a split-view check
            // compares it with another node's signed checkpoint.
            let from_root = modelgate_tlog::root_at(q.from, &Nodes(&*s))?;
            Ok((proof, from_root))
        })
    })
    .await??;
    Ok(Json(json!({
        "from": q.from,
        "to": to,
        "hashes": p.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        "from_root": B64.encode(from_root),
    }))
    .into_response())
}

/// A 404 for an index the log does not have yet.
pub(super) fn in_log(index: u64, size: u64) -> Result<(), ApiError> {
    if index < size {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorKind::NotInLog,
        format!("index {index} is not in the log (size {size})"),
    ))
}

/// One entry's exact bytes (what its leaf hash covers).
pub(super) async fn entry(AxState(a): AxState<Shared>, Path(index): Path<u64>) -> Answer {
    in_log(index, latest_size(&a))?;
    let a2 = Arc::clone(&a);
    let mut e = blocking(move || a2.with_reader(|s| s.entries(index, index + 1))).await??;
    if e.len() != 1 {
        return Err(ApiError::internal("store", "entry missing"));
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], e.remove(0)).into_response())
}

pub(super) async fn tlog_proof(AxState(a): AxState<Shared>, Path(index): Path<u64>) -> Answer {
    let size = latest_size(&a);
    in_log(index, size)?;
    let proof = blocking(move || a.tlog_proof(index))
        .await?
        .map_err(|e| ApiError::internal("store", e))?;
    let proof = proof.ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotInLog,
            format!("index {index} is not in the log (size {size})"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], proof).into_response())
}

#[derive(Deserialize)]
pub(super) struct StateQuery {
    pub(super) size: Option<u64>,
}

pub(super) fn json_bytes(bytes: Bytes) -> Answer {
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// The state's summary at the latest size, at a recent checkpoint size (kept
/// by the writer), or refolded for an older size — one refold at a time.
pub(super) async fn state(AxState(a): AxState<Shared>, Query(q): Query<StateQuery>) -> Answer {
    let Some(n) = q.size else {
        return json_bytes(a.latest().1);
    };
    if let Some(s) = a.summary_at(n) {
        return json_bytes(s);
    }
    let current = a.size();
    if n == 0 || n > current {
        return Err(ApiError::new(
            ErrorKind::OutOfRange,
            format!("size {n} is not between 1 and {current}"),
        ));
    }
    let Ok(_permit) = a.refolds.try_acquire() else {
        return Err(ApiError::new(
            ErrorKind::Busy,
            "another past state is being refolded; retry",
        ));
    };
    let a2 = Arc::clone(&a);
    let s = blocking(move || {
        let entries = a2.with_reader(|s| s.entries(0, n)).map_err(|e| e.to_string())?;
        modelgate_governance::fold(&a2.trust_root, entries.iter().map(Vec::as_slice)).map_err(|e| e.to_string())
    })
    .await?
    .map_err(|e| ApiError::internal("fold", e))?;
    json_bytes(summary_json(&s))
}

/// A JSON view of the state, encoded off the async workers (a list of
/// every approval can take milliseconds).
pub(super) async fn with_state(a: &Authority, f: impl FnOnce(&State) -> Value + Send + 'static) -> Answer {
    let state = a.state();
    let bytes = blocking(move || serde_json::to_vec(&f(&state)))
        .await?
        .map_err(|e| ApiError::internal("internal", format!("encoding the state failed: {e}")))?;
    json_bytes(Bytes::from(bytes))
}

pub(super) async fn trust_root(AxState(a): AxState<Shared>) -> Answer {
    with_state(&a, |s| json!(s.trust_root.as_ref().map(|r| &r.doc))).await
}

pub(super) async fn models(AxState(a): AxState<Shared>) -> Answer {
    with_state(&a, |s| json!(s.models.values().collect::<Vec<_>>())).await
}

pub(super) async fn model(AxState(a): AxState<Shared>, Path(digest): Path<String>) -> Answer {
    let s = a.state();
    let m = s
        .models
        .get(&digest)
        .ok_or_else(|| ApiError::new(ErrorKind::UnknownModel, format!("model {digest} is not registered")))?;
    let approvals: Vec<_> = s
        .grants_of_model(&digest)
        .filter_map(|id| s.approvals.get(id))
        .collect();
    let exceptions: Vec<_> = s
        .grants_of_model(&digest)
        .filter_map(|id| s.exceptions.get(id))
        .collect();
    Ok(
        Json(json!({"model": m, "approvals": approvals, "exceptions": exceptions,
                   "revocation": s.revocations.get(&digest)}))
        .into_response(),
    )
}

pub(super) async fn approvals(AxState(a): AxState<Shared>) -> Answer {
    with_state(&a, |s| json!(s.approvals.values().collect::<Vec<_>>())).await
}

pub(super) async fn revocations(AxState(a): AxState<Shared>) -> Answer {
    with_state(&a, |s| json!(s.revocations.values().collect::<Vec<_>>())).await
}

pub(super) async fn exceptions(AxState(a): AxState<Shared>) -> Answer {
    with_state(&a, |s| json!(s.exceptions.values().collect::<Vec<_>>())).await
}

pub(super) async fn nodes(AxState(a): AxState<Shared>) -> Answer {
    let beats = match a.heartbeats.lock() {
        Ok(h) => h.clone(),
        Err(_) => return Err(ApiError::internal("internal", "lock poisoned")),
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

pub(super) async fn policy(AxState(a): AxState<Shared>) -> Answer {
    with_state(&a, |s| json!(s.policy.as_ref())).await
}
