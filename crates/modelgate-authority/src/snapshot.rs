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
//! the state's records (modelgate_governance::State::snapshot), then
//! "\n" and one line: {"format": "modelgate-state-snapshot/v1", "size": N, "root": hex,
//!          "digest": hex, "state_sha256": hex, "state_bytes": B, "signature": base64}, then "\n"
//! ```
//!
//! The state comes first so that it is streamed to disk as it is encoded,
//! and streamed back as it is decoded: a large state is never held twice in
//! memory. The signature is the log key's Ed25519 signature over
//! `modelgate-state-snapshot/v1\n{size}\n{root}\n{digest}\n{state_sha256}\n{state_bytes}\n`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::AuthorityError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Verifier as _;
use modelgate_governance::State;
use modelgate_store::LogStore;
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
    state_bytes: u64,
    signature: String,
}

/// The trailer is one short line; a file whose last 4 KiB hold none is not a snapshot.
const TRAILER_MAX: u64 = 4096;

fn message(h: &Header) -> String {
    format!(
        "{FORMAT}\n{}\n{}\n{}\n{}\n{}\n",
        h.size, h.root, h.digest, h.state_sha256, h.state_bytes
    )
}

/// Counts and hashes what passes through.
struct Hashing<T> {
    inner: T,
    hash: Sha256,
    len: u64,
}

impl<T: Write> Write for Hashing<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Hashing<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// The root of the checkpoint the store holds at exactly `size`.
fn root_at(store: &dyn LogStore, size: u64) -> Result<String, String> {
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
pub fn write(path: &Path, state: &State, store: &dyn LogStore, key: &SignerKey) -> Result<(), AuthorityError> {
    write_msg(path, state, store, key).map_err(AuthorityError::snapshot)
}

fn write_msg(path: &Path, state: &State, store: &dyn LogStore, key: &SignerKey) -> Result<(), String> {
    let root = root_at(store, state.size)?;
    let digest = hex::encode(state.digest());
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| format!("couldn't write {}: {e}", tmp.display());
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = Hashing {
        inner: std::io::BufWriter::new(file),
        hash: Sha256::new(),
        len: 0,
    };
    state.snapshot_to(&mut w).map_err(|e| e.to_string())?;
    let mut h = Header {
        format: FORMAT.into(),
        size: state.size,
        root,
        digest,
        state_sha256: hex::encode(w.hash.finalize_reset()),
        state_bytes: w.len,
        signature: String::new(),
    };
    h.signature = B64.encode(key.signer().sign(message(&h).as_bytes()).map_err(|e| e.to_string())?);
    let mut file = w.inner;
    let trailer = serde_json::to_string(&h).map_err(|e| e.to_string())?;
    write!(file, "\n{trailer}\n").map_err(io)?;
    let file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("couldn't write {}: {e}", path.display()))
}

/// The state in the snapshot at `path`, checked against the log's key, the
/// store and its own digest. `Ok(None)` when there is no snapshot.
pub fn read(
    path: &Path,
    pinned: &[u8],
    store: &dyn LogStore,
    key: &SignerKey,
) -> Result<Option<State>, AuthorityError> {
    read_msg(path, pinned, store, key).map_err(AuthorityError::snapshot)
}

fn read_msg(path: &Path, pinned: &[u8], store: &dyn LogStore, key: &SignerKey) -> Result<Option<State>, String> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("couldn't read {}: {e}", path.display())),
    };
    let io = |e: std::io::Error| format!("couldn't read {}: {e}", path.display());
    let len = file.metadata().map_err(io)?.len();
    let tail_len = len.min(TRAILER_MAX);
    file.seek(SeekFrom::Start(len - tail_len)).map_err(io)?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    file.read_to_end(&mut tail).map_err(io)?;
    let tail = tail
        .strip_suffix(b"\n")
        .ok_or("the snapshot does not end with its trailer line")?;
    let start = tail
        .iter()
        .rposition(|b| *b == b'\n')
        .ok_or("the snapshot has no trailer line")?;
    let h: Header = serde_json::from_slice(&tail[start + 1..]).map_err(|e| format!("snapshot trailer: {e}"))?;
    if h.format != FORMAT {
        return Err(format!("snapshot format {:?}, this modelgate reads {FORMAT}", h.format));
    }
    let sig = B64
        .decode(&h.signature)
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .ok_or("the snapshot's signature is not an Ed25519 signature")?;
    key.verifier()
        .public_key()
        .verify(message(&h).as_bytes(), &sig)
        .map_err(|_| "the snapshot's signature does not verify with the log's key")?;
    let trailer_len = (tail.len() - start) as u64 + 1;
    if h.state_bytes + trailer_len != len {
        return Err("the snapshot's length is not the one it signed".into());
    }
    let size = store.size().map_err(|e| e.to_string())?;
    if h.size > size {
        return Err(format!("the snapshot is at size {}, the log only holds {size}", h.size));
    }
    if root_at(store, h.size)? != h.root {
        return Err(format!("the log's root at size {} is not the snapshot's", h.size));
    }
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut r = Hashing {
        inner: (&mut file).take(h.state_bytes),
        hash: Sha256::new(),
        len: 0,
    };
    // Decoded as it is read; used only once its hash is the signed one.
    let state = State::restore_from(pinned, &mut r);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).map_err(io)?;
    if hex::encode(r.hash.finalize()) != h.state_sha256 {
        return Err("the snapshot's state does not match its signed hash".into());
    }
    let state = state.map_err(|e| e.to_string())?;
    if state.size != h.size || hex::encode(state.digest()) != h.digest {
        return Err("the restored state does not have the snapshot's size and digest".into());
    }
    Ok(Some(state))
}
