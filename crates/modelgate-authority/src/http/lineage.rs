//! The nodes' replicated lineage: a node's batches in, and the searches, records, proofs and evidence out.

use super::*;

/// The enrolled key of node `id`, or the answer for a node not enrolled.
pub(super) fn node_key(a: &Authority, id: &str) -> Result<String, ApiError> {
    a.state()
        .nodes
        .get(id)
        .map(|n| n.key.clone())
        .ok_or_else(|| ApiError::new(ErrorKind::NodeUnknown, format!("node {id} is not enrolled")))
}

/// Run a read of the replicated lineage off the async threads; its result as JSON.
pub(super) async fn lineage_read<T: serde::Serialize + Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::lineage::ReplicationError> + Send + 'static,
) -> Answer {
    Ok(Json(blocking(f).await??).into_response())
}

/// How many records of node `id` the authority holds.
pub(super) async fn lineage_size(AxState(a): AxState<Shared>, Path(id): Path<String>) -> Answer {
    let key = node_key(&a, &id)?;
    lineage_read(move || a.lineage.size(&id, &key).map(|size| json!({ "size": size }))).await
}

/// A node's lineage batch: kept only when its records make the node's
/// signed checkpoint and agree with what is held and anchored.
pub(super) async fn lineage_post(
    AxState(a): AxState<Shared>,
    peer: Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let max = crate::lineage::MAX_BATCH_BYTES;
    let (body, key) = node_write(&a, &peer, &id, &headers, body, max).await?;
    let batch: crate::lineage::LineageBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorKind::LineageInvalid, format!("not a lineage batch: {e}")))?;
    // The body's room in the budget is given back once it is parsed.
    drop(body);
    let state = a.state();
    let Some(node) = state.nodes.get(&id) else {
        return Err(ApiError::new(
            ErrorKind::NodeUnknown,
            format!("node {id} is not enrolled"),
        ));
    };
    if node.key != key {
        return Err(ApiError::new(
            ErrorKind::NodeUnknown,
            format!("node {id} was enrolled again meanwhile; send again"),
        ));
    }
    let anchor_index = node.anchor.as_ref().map(|x| x.index);
    drop(state);
    let t = now();
    let size = blocking(move || {
        // The latest anchor's signed checkpoint, from its entry in the log.
        let anchored = match anchor_index {
            Some(i) => {
                let entry = a
                    .entries(i, i + 1)
                    .map_err(|e| crate::lineage::ReplicationError::Store(e.to_string()))?
                    .pop()
                    .unwrap_or_default();
                match Envelope::parse(&entry)
                    .ok()
                    .and_then(|e| parse_canonical(&e.payload).ok())
                    .and_then(|p| Payload::decode(p).ok())
                {
                    Some(Payload::NodeAnchor(an)) => Some(an.checkpoint.into_bytes()),
                    _ => None,
                }
            }
            None => None,
        };
        a.lineage.ingest(&id, &key, anchored.as_deref(), &batch, t)
    })
    .await??;
    Ok(Json(json!({ "size": size })).into_response())
}

#[derive(Deserialize)]
pub(super) struct Paging {
    #[serde(default)]
    pub(super) offset: u64,
    #[serde(default = "default_limit")]
    pub(super) limit: u64,
}

pub(super) fn default_limit() -> u64 {
    50
}

/// Search the replicated lineage (metadata only).
pub(super) async fn lineage_search(
    AxState(a): AxState<Shared>,
    Query(q): Query<crate::lineage::Search>,
    Query(p): Query<Paging>,
) -> Answer {
    lineage_read(move || {
        a.lineage
            .search(&q, p.offset, p.limit)
            .map(|rows| json!({ "records": rows }))
    })
    .await
}

/// The full-chain proof of a replicated record (`modelgate lineage verify`).
pub(super) async fn lineage_proof(AxState(a): AxState<Shared>, Path((id, index)): Path<(String, u64)>) -> Answer {
    Ok(Json(blocking(move || crate::proof::full_proof(&a, &id, index)).await??).into_response())
}

/// Evidence of nodes that signed two histories.
pub(super) async fn lineage_evidence(AxState(a): AxState<Shared>) -> Answer {
    lineage_read(move || a.lineage.evidence().map(|ev| json!({ "evidence": ev }))).await
}

/// One replicated record, with its inclusion proof in the node's latest
/// signed checkpoint held.
pub(super) async fn lineage_record(AxState(a): AxState<Shared>, Path((id, index)): Path<(String, u64)>) -> Answer {
    let key = node_key(&a, &id)?;
    let p = blocking(move || a.lineage.record(&id, &key, index))
        .await??
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotInLog,
                format!("the authority holds no record {index} of this node"),
            )
        })?;
    Ok(Json(json!({
        "index": index,
        "record": serde_json::from_slice::<Value>(&p.record).unwrap_or(Value::Null),
        "entry": B64.encode(&p.record),
        "checkpoint": String::from_utf8_lossy(&p.checkpoint),
        "inclusion": p.inclusion.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    }))
    .into_response())
}
