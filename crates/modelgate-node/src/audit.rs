//! The audit of an authority from the outside, with nothing but its log key
//! (and, best, the pinned trust root): every entry bundle and tile served is
//! checked against the signed checkpoint, the entries are folded again, and
//! the state digest the authority publishes must be the one refolded.

use modelgate_tlog::{decode_entry_bundle, encode_index, leaf_hash, tile_data, CheckpointPolicy, MemoryTree, TileId};

use crate::{Fetch, FetchError};

/// What a passed audit establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAudit {
    /// Entries audited (the checkpoint's size).
    pub size: u64,
    /// The checkpoint's root (hex).
    pub root: String,
    /// The refolded state digest (hex), equal to the published one.
    pub state_digest: String,
}

/// Why an audit did not pass.
#[derive(Debug, thiserror::Error)]
pub enum RemoteAuditError {
    /// The authority could not be read.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Entry 0 is not the pinned trust root.
    #[error("entry 0 is not the pinned trust root")]
    NotPinned,
    /// What it served does not check.
    #[error("{0}")]
    Invalid(String),
}

/// Audit the authority `fetch` reads from; `pinned` is the trust root entry 0
/// must be; `progress` hears (entries read, size) while the entries download.
pub fn remote_audit(
    fetch: &dyn Fetch,
    pinned: Option<&[u8]>,
    policy: &CheckpointPolicy,
    mut progress: impl FnMut(u64, u64),
) -> Result<RemoteAudit, RemoteAuditError> {
    let bad = |m: String| RemoteAuditError::Invalid(m);
    let note = fetch.get("/log/checkpoint")?;
    let cp = policy
        .verify(&note)
        .map_err(|e| bad(format!("checkpoint: {e}")))?
        .checkpoint;
    let size = cp.size;
    let mut tree = MemoryTree::new();
    let mut entries: Vec<Vec<u8>> = Vec::with_capacity(size.min(1 << 20) as usize);
    for n in 0..size.div_ceil(256) {
        let width = (size - n * 256).min(256) as u16;
        let suffix = if width == 256 {
            String::new()
        } else {
            format!(".p/{width}")
        };
        let path = format!("/log/tile/entries/{}{suffix}", encode_index(n));
        let data = fetch.get(&path)?;
        for e in decode_entry_bundle(&data, width).map_err(|e| bad(format!("{path}: {e}")))? {
            tree.append(leaf_hash(e));
            entries.push(e.to_vec());
        }
        progress(entries.len() as u64, size);
    }
    if tree.root() != cp.root {
        return Err(bad(format!(
            "the {size} entries served do not hash to the checkpoint's root"
        )));
    }
    for t in TileId::all_for_size(size) {
        let path = format!("/log/{}", t.path());
        let served = fetch.get(&path)?;
        let want = tile_data(t, &tree).map_err(|e| bad(e.to_string()))?;
        if served != want {
            return Err(bad(format!("{path} differs from the tile recomputed from the entries")));
        }
    }
    let first = entries.first().ok_or_else(|| bad("the log is empty".into()))?;
    if pinned.is_some_and(|p| p != first.as_slice()) {
        return Err(RemoteAuditError::NotPinned);
    }
    let state = modelgate_governance::fold(first, entries.iter().map(Vec::as_slice))
        .map_err(|e| bad(format!("the log does not fold: {e}")))?;
    let digest = hex::encode(state.digest());
    #[derive(serde::Deserialize)]
    struct Published {
        digest: String,
    }
    let published: Published = serde_json::from_slice(&fetch.get(&format!("/api/v1/state?size={size}"))?)
        .map_err(|e| bad(format!("state summary: {e}")))?;
    if published.digest != digest {
        return Err(bad(format!(
            "state digest at size {size}: refolded {digest}, published {}",
            published.digest
        )));
    }
    Ok(RemoteAudit {
        size,
        root: hex::encode(cp.root),
        state_digest: digest,
    })
}

impl RemoteAudit {
    /// The verdict in words, a line each; `pinned`: entry 0 was compared
    /// with a pinned trust root.
    pub fn describe(&self, pinned: bool) -> Vec<String> {
        let mut out = vec![
            "authority: consistent".to_owned(),
            format!("entries: {}", self.size),
            format!("root: {}", self.root),
            format!("state digest: {}", self.state_digest),
        ];
        if !pinned {
            out.push("note: entry 0 was not compared with a pinned trust root (give --trust-root FILE)".into());
        }
        out
    }
}

/// A verified checkpoint in words, a line each: origin, size, root, and
/// who signed or cosigned it when.
pub fn describe_checkpoint(v: &modelgate_tlog::VerifiedCheckpoint) -> Vec<String> {
    let cp = &v.checkpoint;
    let mut out = vec![
        format!("origin: {}", cp.origin),
        format!("size: {}", cp.size),
        format!("root: {}", hex::encode(cp.root)),
    ];
    out.extend(v.witnesses.iter().map(|(name, ts)| match ts {
        Some(ts) => format!(
            "cosigned: {name} at {} ({ts})",
            modelgate_governance::time::rfc3339(*ts)
        ),
        None => format!("signed: {name}"),
    }));
    out
}
