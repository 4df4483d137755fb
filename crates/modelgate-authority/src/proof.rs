//! Full-chain proofs of replicated lineage records
//! (`modelgate-lineage-proof/v2`, checked by `modelgate lineage verify`):
//! the record in the node's anchored checkpoint, the anchor and the node's
//! enrollment, and the governance behind the call — the trust-root version
//! and the policy set in force when the node decided, the model's
//! registration, the approval or exception the record names — every entry
//! proven against the one checkpoint the authority serves now.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::{parse_canonical, Envelope, Payload};
use modelgate_node::proof::{
    GovernanceLinks, GovernedEntry, LineageProof, ProofChain, RecordProof, ShownRecord, PROOF_FORMAT_V2,
};
use modelgate_store::Nodes;
use modelgate_tlog::TlogProof;
use serde_json::Value;

use crate::lineage::ReplicationError;
use crate::Authority;

/// Why there is no proof (yet).
#[derive(Debug, thiserror::Error)]
pub enum ProofUnavailable {
    /// The node or the record is not known here.
    #[error("{0}")]
    NotFound(String),
    /// The record is not anchored yet (or not replicated up to its anchor).
    #[error("{0}")]
    NotYet(String),
    /// Reading failed.
    #[error("{0}")]
    Store(String),
}

impl From<ReplicationError> for ProofUnavailable {
    fn from(e: ReplicationError) -> Self {
        ProofUnavailable::Store(e.to_string())
    }
}

fn store_err(e: impl std::fmt::Display) -> ProofUnavailable {
    ProofUnavailable::Store(e.to_string())
}

/// How far back a search for the version in force reads at a time.
const SCAN: u64 = 1_000;

/// The latest entry of `kind` logged before `size`: its index.
fn latest_before(a: &Authority, kind: &str, size: u64) -> Result<Option<u64>, ProofUnavailable> {
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(SCAN);
        let entries = a.entries(start, end).map_err(store_err)?;
        for (k, e) in entries.iter().enumerate().rev() {
            let t = Envelope::parse(e)
                .ok()
                .and_then(|env| serde_json::from_slice::<Value>(&env.payload).ok())
                .and_then(|p| p["type"].as_str().map(str::to_owned));
            if t.as_deref() == Some(kind) {
                return Ok(Some(start + k as u64));
            }
        }
        end = start;
    }
    Ok(None)
}

/// A record's index and bytes.
type Indexed = (u64, Vec<u8>);

/// The call's record, and its completion when it follows within reach
/// (256 records, inside the anchor): each with its index, and the call.
fn proven_records(
    a: &Authority,
    node: &str,
    key: &str,
    index: u64,
    anchored: u64,
) -> Result<(Vec<Indexed>, Value), ProofUnavailable> {
    let record = a
        .lineage
        .records(node, key, index, index + 1)?
        .pop()
        .ok_or_else(|| ProofUnavailable::NotFound(format!("no record {index} of node {node}")))?;
    let mut proven = vec![(index, record.clone())];
    let call: Value = serde_json::from_slice(&record).unwrap_or(Value::Null);
    if call["type"] == "request" {
        let later = a
            .lineage
            .records(node, key, index + 1, (index + 1 + 256).min(anchored))?;
        if let Some((k, r)) = later.into_iter().enumerate().find(|(_, r)| {
            serde_json::from_slice::<Value>(r)
                .is_ok_and(|v| v["type"] == "completion" && v["request"].as_u64() == Some(index))
        }) {
            proven.push((index + 1 + k as u64, r));
        }
    }
    Ok((proven, call))
}

/// The node's signed lineage checkpoint its anchor entry carries.
fn anchored_checkpoint(a: &Authority, anchor_index: u64) -> Result<String, ProofUnavailable> {
    let anchor_entry = a
        .entries(anchor_index, anchor_index + 1)
        .map_err(store_err)?
        .pop()
        .unwrap_or_default();
    Envelope::parse(&anchor_entry)
        .ok()
        .and_then(|e| parse_canonical(&e.payload).ok())
        .and_then(|p| Payload::decode(p).ok())
        .and_then(|p| match p {
            Payload::NodeAnchor(x) => Some(x.checkpoint),
            _ => None,
        })
        .ok_or_else(|| ProofUnavailable::Store(format!("entry {anchor_index} is not the node's anchor")))
}

/// Governance entry `i` with its tlog-proof against `note` (of `size`).
fn governed_entry(a: &Authority, i: u64, note: &[u8], size: u64) -> Result<GovernedEntry, ProofUnavailable> {
    let entry = a.entries(i, i + 1).map_err(store_err)?.pop().unwrap_or_default();
    let hashes = a
        .with_reader(|s| {
            modelgate_tlog::inclusion_proof(i, size, &Nodes(&*s))
                .map_err(|e| modelgate_store::StoreError::NotFound(e.to_string()))
        })
        .map_err(store_err)?;
    let tlog = TlogProof {
        extra: None,
        index: i,
        hashes,
        checkpoint: note.to_vec(),
    };
    Ok(GovernedEntry {
        index: i,
        entry: B64.encode(&entry),
        tlog_proof: String::from_utf8_lossy(&tlog.to_bytes()).into_owned(),
    })
}

/// The trust root, registration, grant and policy set behind `call`, each
/// the one in force when the node decided (logged before the record's
/// governance size).
fn governance_links(
    a: &Authority,
    state: &modelgate_governance::State,
    call: &Value,
    note: &[u8],
    size: u64,
) -> Result<GovernanceLinks, ProofUnavailable> {
    let governed = |i: u64| governed_entry(a, i, note, size);
    let decided_in = call["governance"]["size"].as_u64().unwrap_or(size).min(size);
    let trust_root = match &state.trust_root {
        Some(r) if r.index < decided_in => r.index,
        _ => latest_before(a, "trust-root", decided_in)?.unwrap_or(0),
    };
    let policy = match &state.policy {
        Some(p) if p.index < decided_in => Some(p.index),
        Some(_) => latest_before(a, "policy-set", decided_in)?,
        None => None,
    };
    let registration = call["digest"]
        .as_str()
        .and_then(|d| state.models.get(d))
        .map(|m| m.index);
    let grant = call["approval"]
        .as_str()
        .and_then(|id| state.approvals.get(id).map(|x| x.index))
        .or_else(|| {
            call["exception"]
                .as_str()
                .and_then(|id| state.exceptions.get(id).map(|x| x.index))
        });
    Ok(GovernanceLinks {
        checkpoint: String::from_utf8_lossy(note).into_owned(),
        trust_root: governed(trust_root)?,
        registration: registration.map(governed).transpose()?,
        grant: grant.map(governed).transpose()?,
        policy: policy.map(governed).transpose()?,
    })
}

/// The full-chain proof of record `index` of `node`.
pub fn full_proof(a: &Authority, node: &str, index: u64) -> Result<LineageProof, ProofUnavailable> {
    // Lineage logs are stored with SQLite's i64 indexes: no record can ever
    // stand at or past 2^63, so waiting for its anchor would be a lie.
    if i64::try_from(index).is_err() {
        return Err(ProofUnavailable::NotFound(format!(
            "no record {index} of node {node}: no lineage log holds that many records"
        )));
    }
    let state = a.state();
    let enrolled = state
        .nodes
        .get(node)
        .ok_or_else(|| ProofUnavailable::NotFound(format!("node {node} is not enrolled")))?
        .clone();
    let anchor = enrolled.anchor.clone().filter(|x| x.size > index).ok_or_else(|| {
        ProofUnavailable::NotYet(format!(
            "record {index} of node {node} is not anchored yet: ask again after the node's next anchor"
        ))
    })?;
    let key = enrolled.key.clone();
    let held = a.lineage.size(node, &key)?;
    if held < anchor.size {
        return Err(ProofUnavailable::NotYet(format!(
            "the authority holds {held} records of node {node}; its anchor covers {}: ask again once they are replicated",
            anchor.size
        )));
    }
    let (proven, call) = proven_records(a, node, &key, index, anchor.size)?;
    let mut records = Vec::new();
    let mut shown = Vec::new();
    for (i, r) in &proven {
        let inclusion = a.lineage.inclusion(node, &key, *i, anchor.size)?;
        records.push(RecordProof {
            index: *i,
            entry: B64.encode(r),
            inclusion: inclusion.iter().map(|h| B64.encode(h)).collect(),
        });
        shown.push(ShownRecord {
            index: *i,
            record: serde_json::from_slice(r).unwrap_or(Value::Null),
        });
    }
    let lineage_checkpoint = anchored_checkpoint(a, anchor.index)?;
    // Every governed entry against the one checkpoint served now.
    let (note, size) = {
        let s = a.served.read().map_err(|_| store_err("lock poisoned"))?;
        (s.note.as_ref().clone(), s.size)
    };
    let governed = |i: u64| governed_entry(a, i, &note, size);
    let governance = governance_links(a, &state, &call, &note, size)?;
    Ok(LineageProof {
        format: PROOF_FORMAT_V2.to_owned(),
        id: index.to_string(),
        node: node.to_owned(),
        anchored: true,
        records: shown,
        proof: ProofChain {
            records,
            lineage_checkpoint,
            anchor: governed(anchor.index)?,
            enrollment: governed(enrolled.index)?,
            governance: Some(governance),
        },
    })
}
