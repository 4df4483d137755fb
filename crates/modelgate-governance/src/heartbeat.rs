//! Node heartbeats: a signed note from a node to the authority, saying it
//! is alive and how it is doing. Heartbeats are frequent, so they are not
//! governance entries (nothing in the state depends on them); the authority
//! keeps the latest per node and shows it to operators.
//!
//! The note's text is four lines:
//!
//! ```text
//! modelgate-heartbeat/v1
//! <node id>
//! <POSIX seconds>
//! <summary: one line of JSON>
//! ```
//!
//! signed with the node's enrolled note key. The authority accepts it only
//! with a valid signature by the key enrolled for that node, a time within
//! its clock window, and a time later than the node's previous heartbeat
//! (so a captured heartbeat cannot be replayed).

use modelgate_tlog::{Note, SignerKey, VerifierKey};

/// First line of a heartbeat note.
pub const HEARTBEAT_HEADER: &str = "modelgate-heartbeat/v1";

/// Largest accepted heartbeat, in bytes.
pub const MAX_HEARTBEAT_BYTES: usize = 64 * 1024;

/// A verified heartbeat.
#[derive(Clone, Debug, PartialEq)]
pub struct Heartbeat {
    /// The node.
    pub node: String,
    /// When the node sent it.
    pub time: u64,
    /// What it reported.
    pub summary: serde_json::Value,
}

/// Sign a heartbeat.
pub fn sign_heartbeat(key: &SignerKey, node: &str, time: u64, summary: &serde_json::Value) -> Result<Vec<u8>, String> {
    let text = format!("{HEARTBEAT_HEADER}\n{node}\n{time}\n{summary}\n");
    let mut note = Note::new(&text).map_err(|e| e.to_string())?;
    note.add_signature(key.sign(&text).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok(note.to_bytes())
}

/// Verify a heartbeat from `node` against its enrolled `key`. The caller
/// checks the time window and the ordering against earlier heartbeats.
pub fn verify_heartbeat(bytes: &[u8], node: &str, key: &VerifierKey) -> Result<Heartbeat, crate::GovernanceError> {
    verify(bytes, node, key).map_err(crate::GovernanceError::Heartbeat)
}

fn verify(bytes: &[u8], node: &str, key: &VerifierKey) -> Result<Heartbeat, String> {
    if bytes.len() > MAX_HEARTBEAT_BYTES {
        return Err(format!("a heartbeat is at most {MAX_HEARTBEAT_BYTES} bytes"));
    }
    let note = Note::parse(bytes).map_err(|e| format!("not a signed note: {e}"))?;
    note.verify(std::slice::from_ref(key))
        .map_err(|e| format!("not signed by node {node}'s enrolled key: {e}"))?;
    let mut lines = note.text().lines();
    if lines.next() != Some(HEARTBEAT_HEADER) {
        return Err(format!("the first line must be {HEARTBEAT_HEADER}"));
    }
    let named = lines.next().unwrap_or_default();
    if named != node {
        return Err(format!("the heartbeat names node {named:?}, not {node:?}"));
    }
    let time = lines
        .next()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or("the third line must be the time in POSIX seconds")?;
    let summary: serde_json::Value = lines
        .next()
        .and_then(|s| serde_json::from_str(s).ok())
        .filter(serde_json::Value::is_object)
        .ok_or("the fourth line must be a JSON object")?;
    if lines.next().is_some() {
        return Err("a heartbeat has exactly four lines".into());
    }
    Ok(Heartbeat {
        node: node.to_owned(),
        time,
        summary,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use modelgate_tlog::KeyType;

    #[test]
    fn a_heartbeat_verifies_only_with_the_nodes_key_and_name() {
        let key = SignerKey::from_seed("node-1/lineage", KeyType::Ed25519, &[1; 32]).unwrap();
        let other = SignerKey::from_seed("node-1/lineage", KeyType::Ed25519, &[2; 32]).unwrap();
        let s = serde_json::json!({"models": {"credit": "Serving"}});
        let hb = sign_heartbeat(&key, "node-1", 1_800_000_000, &s).unwrap();
        let v = verify_heartbeat(&hb, "node-1", &key.verifier()).unwrap();
        assert_eq!((v.time, v.summary), (1_800_000_000, s.clone()));
        assert!(verify_heartbeat(&hb, "node-1", &other.verifier()).is_err());
        assert!(verify_heartbeat(&hb, "node-2", &key.verifier())
            .unwrap_err()
            .to_string()
            .contains("names node"));
        let forged = String::from_utf8(hb).unwrap().replace("1800000000", "1800000001");
        assert!(verify_heartbeat(forged.as_bytes(), "node-1", &key.verifier()).is_err());
        let not_json = sign_heartbeat(&key, "node-1", 1, &serde_json::json!([1])).unwrap();
        assert!(verify_heartbeat(&not_json, "node-1", &key.verifier())
            .unwrap_err()
            .to_string()
            .contains("JSON object"));
    }
}
