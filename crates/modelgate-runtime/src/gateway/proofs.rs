//! `/lineage/{id}`: a call's offline proof chain, for the caller whose call it records or one with `lineage = "all"`.

use super::*;

/// A call's records and, once anchored, its offline proof chain.
///
/// A record names a call's caller, scope, model and time: it is read with a
/// caller's token, of the caller's own calls unless its table says
/// `lineage = "all"`.
pub(super) async fn lineage(
    State(gw): State<Gw>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    Path(id): Path<String>,
) -> Response {
    let reader = match gw.caller(&headers, &ext) {
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
