//! What a node tells the governance log about itself: containment and
//! recovery reports and lineage anchors, signed with the node's own key
//! (which is how the authority and every other node know it was this node).

use modelgate_governance::{to_canonical, ContainmentReason, Envelope};
use modelgate_tlog::SignerKey;
use serde_json::json;

/// A signed `containment-report` entry (`recovered` false when containing).
pub fn containment_report(
    key: &SignerKey,
    node: &str,
    models: &[String],
    reason: ContainmentReason,
    detail: &str,
    recovered: bool,
    time: u64,
) -> Result<Vec<u8>, String> {
    let reason = serde_json::to_value(reason).map_err(|e| e.to_string())?;
    let p = json!({"type": "containment-report", "version": 1, "node": node, "models": models, "reason": reason,
                   "detail": detail, "recovered": recovered, "time": time});
    let bytes = to_canonical(&p).map_err(|e| e.to_string())?;
    Envelope::sign(&bytes, &[key.ed25519()]).map_err(|e| e.to_string())
}
