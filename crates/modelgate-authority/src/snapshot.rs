//! A signed snapshot of the folded state, so that a restart refolds only the
//! entries after it instead of the whole log.
//!
//! A snapshot is a cache of a fold, never a source of truth: it is used only
//! when its signature verifies with the log's key, the store holds a
//! checkpoint at its size whose root is the one it names, and the state it
//! restores has the digest it recorded. Anything else is logged and the
//! whole log is refolded, as without a snapshot.
//!
//! ```text
//! line 1: {"format": "modelgate-state-snapshot/v1", "size": N, "root": hex, "digest": hex,
//!          "state_sha256": hex, "signature": base64}
//! rest:   the state's records (modelgate_governance::State::snapshot)
//! ```
//!
//! The signature is the log key's Ed25519 signature over
//! `modelgate-state-snapshot/v1\n{size}\n{root}\n{digest}\n{state_sha256}\n`.

use std::io::Write as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, Verifier as _};
use modelgate_governance::State;
use modelgate_store::{LogStore, SqliteStore};
use modelgate_tlog::{Checkpoint, Note, SignerKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const FORMAT: &str = "modelgate-state-snapshot/v1";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    size: u64,
    root: String,
    digest: String,
    state_sha256: String,
    signature: String,
}

fn message(size: u64, root: &str, digest: &str, state_sha256: &str) -> String {
    format!("{FORMAT}\n{size}\n{root}\n{digest}\n{state_sha256}\n")
}

/// The root of the checkpoint the store holds at exactly `size`.
fn root_at(store: &SqliteStore, size: u64) -> Result<String, String> {
    let note = store
        .checkpoint(size)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the store has no checkpoint at size {size}"))?;
    let note = Note::parse(&note).map_err(|e| e.to_string())?;
    let cp = Checkpoint::parse(note.text()).map_err(|e| e.to_string())?;
    Ok(hex::encode(cp.root))
}

/// Write `state` (at a size where the store has a checkpoint) to `path`,
/// atomically: a temporary file, fsynced, renamed over the old snapshot.
pub fn write(path: &Path, state: &State, store: &SqliteStore, key: &SignerKey) -> Result<(), String> {
    let body = state.snapshot()?;
    let root = root_at(store, state.size)?;
    let digest = hex::encode(state.digest());
    let state_sha256 = hex::encode(Sha256::digest(&body));
    let sig = key
        .ed25519()
        .sign(message(state.size, &root, &digest, &state_sha256).as_bytes());
    let header = Header {
        format: FORMAT.into(),
        size: state.size,
        root,
        digest,
        state_sha256,
        signature: B64.encode(sig.to_bytes()),
    };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| format!("couldn't write {}: {e}", path.display()))
}

/// The state in the snapshot at `path`, checked against the log's key, the
/// store and its own digest. `Ok(None)` when there is no snapshot.
pub fn read(path: &Path, pinned: &[u8], store: &SqliteStore, key: &SignerKey) -> Result<Option<State>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("couldn't read {}: {e}", path.display())),
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("the snapshot has no header line")?;
    let (head, body) = (&bytes[..split], &bytes[split + 1..]);
    let h: Header = serde_json::from_slice(head).map_err(|e| format!("snapshot header: {e}"))?;
    if h.format != FORMAT {
        return Err(format!("snapshot format {:?}, this modelgate reads {FORMAT}", h.format));
    }
    let sig = B64
        .decode(&h.signature)
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or("the snapshot's signature is not an Ed25519 signature")?;
    key.ed25519()
        .verifying_key()
        .verify(message(h.size, &h.root, &h.digest, &h.state_sha256).as_bytes(), &sig)
        .map_err(|_| "the snapshot's signature does not verify with the log's key")?;
    if hex::encode(Sha256::digest(body)) != h.state_sha256 {
        return Err("the snapshot's state does not match its signed hash".into());
    }
    let size = store.size().map_err(|e| e.to_string())?;
    if h.size > size {
        return Err(format!("the snapshot is at size {}, the log only holds {size}", h.size));
    }
    if root_at(store, h.size)? != h.root {
        return Err(format!("the log's root at size {} is not the snapshot's", h.size));
    }
    let state = State::restore(pinned, body)?;
    if state.size != h.size || hex::encode(state.digest()) != h.digest {
        return Err("the restored state does not have the snapshot's size and digest".into());
    }
    Ok(Some(state))
}
