//! Checkpoint exchange between nodes: split views caught without trusting
//! witnesses alone.
//!
//! Every `peer_interval_seconds` the `modelgate-peers` thread asks each
//! configured peer for its latest verified governance checkpoint
//! (`GET /peer/checkpoint`), checks the log's signature on it with the trust
//! root in force, and compares it with this node's own (see
//! `modelgate_node::split_view`): at equal sizes the roots must be equal; at
//! different sizes whoever holds the larger tree supplies a consistency
//! proof from its authority (this node's authority when it is this node,
//! the peer's `/peer/consistency` otherwise). A proven split view is written
//! to `DATA_DIR/split-view/` (fsync, then rename) and every model is
//! contained with CoordinationInconsistent until an operator removes the
//! file: the authority signed two histories, and nothing it serves can be
//! trusted again without a person looking.
//!
//! A peer that is down, slow or lying costs nothing: its checkpoint must be
//! signed by the log to be compared, and a proof that does not verify is no
//! evidence.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_node::split_view::{compare, signed_by_log, Signed, SplitView};
use modelgate_tlog::Hash;

use crate::runtime::Shared;

/// Largest checkpoint or proof answer read from a peer.
const PEER_BODY_MAX: u64 = 64 * 1024;

/// Where a node keeps split-view evidence.
pub fn evidence_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("split-view")
}

/// The evidence files already found (they keep the node contained).
pub fn existing_evidence(data_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(evidence_dir(data_dir))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The containment that split-view evidence on disk imposes, the same for
/// a running node and for `node status`: every model contained
/// (`CoordinationInconsistent`) while any evidence file is there.
pub fn evidence_containment(data_dir: &Path) -> Option<String> {
    existing_evidence(data_dir).first().map(|f| {
        format!(
            "split view: evidence found earlier is on disk ({}); remove it once investigated",
            f.display()
        )
    })
}

/// A consistency proof answer (`/api/v1/proof/consistency`): the hashes and
/// the root at `from` they imply (which a split-view check needs).
pub fn parse_consistency(body: &[u8]) -> Result<(Vec<Hash>, Hash), String> {
    match modelgate_node::sync::parse_consistency(body)? {
        (hashes, Some(from_root)) => Ok((hashes, from_root)),
        (_, None) => Err("consistency proof: no from_root".into()),
    }
}

/// Run the exchange until the node stops.
pub fn run(shared: Arc<Shared>, peers: Vec<String>, interval: Duration) {
    let agent = modelgate_http::agent(modelgate_http::Timeouts::PEER);
    let get = |url: &str| -> Result<Vec<u8>, String> {
        let mut r = agent.get(url).call().map_err(|e| format!("{url}: {e}"))?;
        if r.status() != 200 {
            return Err(format!("{url}: {}", r.status()));
        }
        r.body_mut()
            .with_config()
            .limit(PEER_BODY_MAX)
            .read_to_vec()
            .map_err(|e| format!("{url}: {e}"))
    };
    while !shared.stopping() {
        shared.sleep(interval);
        if shared.stopping() {
            break;
        }
        // Contained by a split view already proven: the evidence held is
        // enough, and comparing on would only find the same fork again
        // (one more file and one more ERROR line per peer per interval).
        if shared.split_view().is_some() {
            continue;
        }
        let snap = shared.snapshot();
        let Some(view) = snap.view.clone() else { continue };
        let Some(root) = view.state.trust_root() else { continue };
        let log = root.log_key.clone();
        let Ok(own) = signed_by_log(&view.note, &log) else {
            continue;
        };
        for peer in &peers {
            if shared.split_view().is_some() {
                break;
            }
            let base = peer.trim_end_matches('/');
            let theirs = match get(&format!("{base}/peer/checkpoint")).and_then(|b| signed_by_log(&b, &log)) {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!(peer = %base, error = %e, "no checkpoint from the peer");
                    continue;
                }
            };
            let proof = match theirs.checkpoint.size.cmp(&own.checkpoint.size) {
                std::cmp::Ordering::Equal => None,
                // Ours is larger: our authority proves our tree's prefix.
                std::cmp::Ordering::Less => {
                    let path = format!(
                        "/api/v1/proof/consistency?from={}&to={}",
                        theirs.checkpoint.size, own.checkpoint.size
                    );
                    match shared.authority.get(&path, PEER_BODY_MAX) {
                        Ok((200, b)) => parse_consistency(&b).ok(),
                        _ => None,
                    }
                }
                // Theirs is larger: the peer's authority proves its prefix.
                std::cmp::Ordering::Greater => get(&format!(
                    "{base}/peer/consistency?from={}&to={}",
                    own.checkpoint.size, theirs.checkpoint.size
                ))
                .ok()
                .and_then(|b| parse_consistency(&b).ok()),
            };
            let found = compare(
                &own,
                &theirs,
                proof.as_ref().map(|(h, r)| (h.as_slice(), *r)),
                &shared.config.node,
                shared.clock.now(),
            );
            match found {
                Ok(None) => {}
                Ok(Some(evidence)) => record(&shared, base, &evidence, &own, &theirs),
                Err(e) => tracing::debug!(peer = %base, error = %e, "checkpoints not compared"),
            }
        }
    }
}

/// The evidence file for a split view, named by what it proves: the two
/// checkpoints (origin, sizes, roots), so the same fork found again, or
/// found with fresh cosignatures, is the same file.
pub fn evidence_name(own: &Signed, theirs: &Signed) -> String {
    use sha2::Digest as _;
    let mut pair = [&own.checkpoint, &theirs.checkpoint];
    pair.sort_by_key(|c| (c.size, c.root));
    let mut h = sha2::Sha256::new();
    for c in pair {
        h.update(format!("{}\n{}\n{}\n", c.origin, c.size, B64.encode(c.root)));
    }
    format!("{}.json", hex::encode(&h.finalize()[..16]))
}

fn record(shared: &Shared, peer: &str, evidence: &SplitView, own: &Signed, theirs: &Signed) {
    let detail = format!(
        "split view: the authority signed size {} root {} for this node and size {} root {} for peer {peer}",
        own.checkpoint.size,
        B64.encode(own.checkpoint.root),
        theirs.checkpoint.size,
        B64.encode(theirs.checkpoint.root)
    );
    let dir = evidence_dir(&shared.config.data_dir);
    let path = dir.join(evidence_name(own, theirs));
    shared
        .split_views_found
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let written = if path.exists() {
        Ok(())
    } else {
        std::fs::create_dir_all(&dir)
            .map_err(|e| e.to_string())
            .and_then(|()| serde_json::to_vec_pretty(evidence).map_err(|e| e.to_string()))
            .and_then(|b| modelgate_node::files::write_atomic(&path, &b).map_err(|e| e.to_string()))
    };
    match written {
        Ok(()) => tracing::error!(%detail, evidence = %path.display(), "split view: every model contained"),
        // Contained all the same: the evidence is in memory and in the log line.
        Err(e) => tracing::error!(%detail, error = %e, "split view (the evidence file could not be written)"),
    }
    shared.set_split_view(format!("{detail} (evidence: {})", path.display()));
}
