//! A transparency-log witness speaking the C2SP tlog-witness protocol
//! (<https://c2sp.org/tlog-witness>): `POST /add-checkpoint` with an old
//! size, a consistency proof and a checkpoint; a timestamped cosignature
//! (<https://c2sp.org/tlog-cosignature>, cosignature/v1) back.
//!
//! What it guarantees, for every log it is configured with (one log per
//! origin, the origin being the log key's name):
//! - it cosigns a checkpoint only when the log's key signed it and it extends
//!   the latest checkpoint this witness recorded for that origin (an RFC 6962
//!   consistency proof from the recorded size, or the same size and root);
//! - it never cosigns two checkpoints of one log that are inconsistent with
//!   each other, nor a smaller tree after a larger one, across restarts and
//!   `kill -9`: the check of the old size and the recording of the new
//!   checkpoint are one SQLite transaction (`BEGIN IMMEDIATE`,
//!   `synchronous = FULL`), committed — fsynced — before the cosignature is
//!   returned;
//! - requests are bounded ([`MAX_BODY_BYTES`], [`MAX_PROOF_HASHES`]) and a bad
//!   one changes nothing; every status the spec names is answered: 400
//!   (malformed, or the old size above the checkpoint's), 403 (no valid
//!   signature by the log's key), 404 (unknown origin), 409 (the old size is
//!   not the recorded one; the body is the recorded size, `text/x.tlog.size`),
//!   422 (the consistency proof does not verify).
//!
//! The witness holds no copy of the log: it keeps one row per origin (size,
//! root, the checkpoint it last cosigned). Its state is only as good as its
//! database: a witness whose database is lost must get a new key, not start
//! again with the old one (it would cosign a rollback).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_tlog::{verify_consistency, Checkpoint, Hash, KeyType, Note, SignerKey, VerifierKey, EMPTY_ROOT};
use rusqlite::{params, Connection, OptionalExtension as _, TransactionBehavior};

/// Largest request body accepted (a checkpoint note plus a proof).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most consistency-proof hashes a request may carry (a tree of 2^63 leaves needs fewer).
pub const MAX_PROOF_HASHES: usize = 63;
/// The content type of a 409 answer's body: the size the witness recorded.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Why a request was not cosigned; each maps to the status the spec names.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WitnessError {
    /// 400: the request is not an add-checkpoint request, or its old size is above the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no valid signature by the log's key.
    #[error("not signed by the log: {0}")]
    Forbidden(String),
    /// 404: this witness does not know the checkpoint's origin.
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// 409: the old size is not the size this witness recorded.
    #[error("this witness recorded size {recorded} for the log (the request said {old})")]
    Conflict {
        /// What the request said.
        old: u64,
        /// What the witness recorded.
        recorded: u64,
    },
    /// 422: the consistency proof does not verify.
    #[error("the consistency proof does not verify: {0}")]
    Unprocessable(String),
    /// 500: the state could not be read or written durably; nothing was cosigned.
    #[error("witness state: {0}")]
    Store(String),
    /// Set-up problems (keys, files).
    #[error("{0}")]
    Config(String),
    /// 503: the witness key cannot sign now (its token is gone); nothing
    /// was recorded or cosigned, and the request may be retried.
    #[error("the witness key cannot sign: {0}")]
    Unavailable(String),
}

impl WitnessError {
    /// The HTTP status the spec names for it (one exhaustive match).
    pub fn status(&self) -> u16 {
        match self {
            WitnessError::BadRequest(_) => 400,
            WitnessError::Forbidden(_) => 403,
            WitnessError::UnknownLog(_) => 404,
            WitnessError::Conflict { .. } => 409,
            WitnessError::Unprocessable(_) => 422,
            WitnessError::Store(_) | WitnessError::Config(_) => 500,
            WitnessError::Unavailable(_) => 503,
        }
    }
}

/// An add-checkpoint request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size the client believes the witness recorded.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: Vec<u8>,
}

fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl AddCheckpoint {
    /// Parse a request body: `old N`, up to [`MAX_PROOF_HASHES`] base64
    /// hashes one per line, an empty line, the checkpoint.
    pub fn parse(body: &[u8]) -> Result<Self, WitnessError> {
        let bad = |m: &str| WitnessError::BadRequest(m.to_owned());
        if body.len() > MAX_BODY_BYTES {
            return Err(bad("the request is larger than a witness accepts"));
        }
        let split = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let head = std::str::from_utf8(&body[..split]).map_err(|_| bad("the request is not UTF-8"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(decimal)
            .ok_or_else(|| bad("the first line must be `old N` with N a decimal size"))?;
        let mut proof = Vec::new();
        for l in lines {
            if proof.len() == MAX_PROOF_HASHES {
                return Err(bad("too many consistency proof hashes"));
            }
            let h: Hash = B64
                .decode(l)
                .ok()
                .filter(|b| B64.encode(b) == l)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("a consistency proof line is not a base64 SHA-256 hash"))?;
            proof.push(h);
        }
        Ok(Self {
            old,
            proof,
            note: body[split + 2..].to_vec(),
        })
    }

    /// The request body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(B64.encode(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.note);
        out
    }
}

/// What the witness recorded for one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
}

/// A witness: its cosigning key, the logs it serves, its durable state.
pub struct Witness {
    key: SignerKey,
    logs: Vec<VerifierKey>,
    db: Mutex<Connection>,
    clock: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// The files of a witness's data directory.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("witness.key")
}

fn db_path(dir: &Path) -> PathBuf {
    dir.join("witness.db")
}

/// Create a witness's key (cosignature/v1, named `name`) and database in
/// `dir`; returns its verifier key. Refuses a directory that has one.
pub fn init(dir: &Path, name: &str) -> Result<VerifierKey, WitnessError> {
    init_with(dir, name, None)
}

/// [`init`], with the key on the PKCS#11 token `token` names (a `pkcs11:`
/// URI, recorded in the key file) instead of a new one.
pub fn init_with(dir: &Path, name: &str, token: Option<&str>) -> Result<VerifierKey, WitnessError> {
    use rand_core::RngCore as _;
    let cfg = |m: String| WitnessError::Config(m);
    if key_path(dir).exists() || db_path(dir).exists() {
        return Err(cfg(format!(
            "{} already holds a witness: a witness's key and state are never replaced",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| cfg(format!("creating {}: {e}", dir.display())))?;
    let key = match token {
        Some(uri) => SignerKey::from_token(name, KeyType::CosignatureV1, uri),
        None => {
            let mut seed = [0u8; 32];
            rand_core::OsRng.fill_bytes(&mut seed);
            SignerKey::from_seed(name, KeyType::CosignatureV1, &seed)
        }
    }
    .map_err(|e| cfg(format!("key: {e}")))?;
    open_db(&db_path(dir))?;
    write_private(&key_path(dir), key.to_private_string().as_bytes())
        .map_err(|e| cfg(format!("writing {}: {e}", key_path(dir).display())))?;
    Ok(key.verifier())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn open_db(path: &Path) -> Result<Connection, WitnessError> {
    let st = |e: rusqlite::Error| WitnessError::Store(e.to_string());
    let c = Connection::open(path).map_err(st)?;
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;
         CREATE TABLE IF NOT EXISTS logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL,
                                          checkpoint BLOB NOT NULL);",
    )
    .map_err(st)?;
    Ok(c)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// Open the witness in `dir` (made by [`init`]) for these logs' keys.
    pub fn open(dir: &Path, logs: Vec<VerifierKey>) -> Result<Self, WitnessError> {
        let cfg = |m: String| WitnessError::Config(m);
        if !db_path(dir).exists() {
            return Err(cfg(format!(
                "{} holds no witness state (run `modelgate witness init`): a witness never starts without the state it recorded",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(key_path(dir))
            .map_err(|e| cfg(format!("reading {}: {e}", key_path(dir).display())))?;
        let key = SignerKey::parse(text.trim()).map_err(|e| cfg(format!("witness key: {e}")))?;
        if key.key_type() != KeyType::CosignatureV1 {
            return Err(cfg("the witness key must be a cosignature/v1 key".into()));
        }
        if logs.is_empty() {
            return Err(cfg("give at least one log key (--log VKEY)".into()));
        }
        for (i, l) in logs.iter().enumerate() {
            if l.key_type() != KeyType::Ed25519 {
                return Err(cfg(format!("log key {} must be an Ed25519 (0x01) note key", l.name())));
            }
            if logs[..i].iter().any(|o| o.name() == l.name()) {
                return Err(cfg(format!("two log keys have the origin {}", l.name())));
            }
        }
        Ok(Self {
            key,
            logs,
            db: Mutex::new(open_db(&db_path(dir))?),
            clock: Box::new(now),
        })
    }

    /// The same witness with another clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Box::new(clock);
        self
    }

    /// Its verifier key.
    pub fn verifier(&self) -> VerifierKey {
        self.key.verifier()
    }

    /// What it recorded for `origin`.
    pub fn recorded(&self, origin: &str) -> Result<Option<Recorded>, WitnessError> {
        let db = self
            .db
            .lock()
            .map_err(|_| WitnessError::Store("lock poisoned".into()))?;
        read(&db, origin)
    }

    /// Handle one add-checkpoint request: the cosignature line(s) to answer
    /// with, after the new checkpoint is durably recorded.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<u8>, WitnessError> {
        let req = AddCheckpoint::parse(body)?;
        let note = Note::parse(&req.note).map_err(|e| WitnessError::Forbidden(format!("checkpoint note: {e}")))?;
        let cp = Checkpoint::parse(note.text()).map_err(|e| WitnessError::Forbidden(format!("checkpoint: {e}")))?;
        let log = self
            .logs
            .iter()
            .find(|k| k.name() == cp.origin)
            .ok_or_else(|| WitnessError::UnknownLog(cp.origin.clone()))?;
        note.verify(std::slice::from_ref(log))
            .map_err(|e| WitnessError::Forbidden(e.to_string()))?;
        if req.old > cp.size {
            return Err(WitnessError::BadRequest(format!(
                "old size {} is above the checkpoint's size {}",
                req.old, cp.size
            )));
        }
        let mut db = self
            .db
            .lock()
            .map_err(|_| WitnessError::Store("lock poisoned".into()))?;
        let st = |e: rusqlite::Error| WitnessError::Store(e.to_string());
        // One transaction from the read of the recorded size to the commit
        // of the new one: no other request, in this process or another, can
        // come between the check and the record.
        let tx = db
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(st)?;
        let recorded = read(&tx, &cp.origin)?.unwrap_or(Recorded {
            size: 0,
            root: EMPTY_ROOT,
        });
        if req.old != recorded.size {
            return Err(WitnessError::Conflict {
                old: req.old,
                recorded: recorded.size,
            });
        }
        if cp.size == recorded.size && cp.root != recorded.root {
            // The same size with another root: a fork, never cosigned.
            return Err(WitnessError::Conflict {
                old: req.old,
                recorded: recorded.size,
            });
        }
        verify_consistency(recorded.size, cp.size, &req.proof, &recorded.root, &cp.root)
            .map_err(|e| WitnessError::Unprocessable(e.to_string()))?;
        // Signed before it is recorded: a key that cannot sign (its token
        // is gone) leaves the witness's state as it was.
        let sig = self
            .key
            .cosign(note.text(), (self.clock)())
            .map_err(|e| WitnessError::Unavailable(e.to_string()))?;
        tx.execute(
            "INSERT INTO logs (origin, size, root, checkpoint) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root, checkpoint = excluded.checkpoint",
            params![cp.origin, cp.size as i64, cp.root.as_slice(), req.note],
        )
        .map_err(st)?;
        tx.commit().map_err(st)?;
        drop(db);
        Ok(sig.line().into_bytes())
    }
}

fn read(c: &Connection, origin: &str) -> Result<Option<Recorded>, WitnessError> {
    let st = |e: rusqlite::Error| WitnessError::Store(e.to_string());
    let row: Option<(i64, Vec<u8>)> = c
        .query_row("SELECT size, root FROM logs WHERE origin = ?1", [origin], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(st)?;
    row.map(|(size, root)| {
        Ok(Recorded {
            size: u64::try_from(size).map_err(|_| WitnessError::Store("a negative size".into()))?,
            root: root
                .try_into()
                .map_err(|_| WitnessError::Store("a root that is not 32 bytes".into()))?,
        })
    })
    .transpose()
}

/// Bodies of add-checkpoint requests, which anyone who reaches the witness
/// can send (each is checked against the log's signature only once read):
/// 8 MiB of them at once in all, 1 MiB per client address, each within 2 s
/// plus its length at 256 KiB/s.
pub const BODIES: modelgate_http::BodyLimits = modelgate_http::BodyLimits {
    budget_bytes: 8 << 20,
    per_client_bytes: 1 << 20,
    wait: std::time::Duration::from_secs(1),
    grace: std::time::Duration::from_secs(2),
    min_bytes_per_second: 256 << 10,
};

/// The witness's HTTP service: `POST /add-checkpoint`. Serve it with
/// [`modelgate_http::serve`] (head and request deadlines, connection caps).
pub fn router(w: Arc<Witness>) -> axum::Router {
    use axum::extract::State;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse as _;
    use axum::routing::post;
    async fn add(
        State((w, bodies)): State<(Arc<Witness>, Arc<modelgate_http::Budget>)>,
        req: axum::extract::Request,
    ) -> axum::response::Response {
        let (parts, body) = req.into_parts();
        let client = modelgate_http::client_of(&parts.extensions);
        let body = match bodies.read(client, &parts.headers, body, MAX_BODY_BYTES).await {
            Ok(b) => b,
            Err(e) => return (e.status(), format!("{e}\n")).into_response(),
        };
        // The fsync of the commit blocks: off the async threads.
        let r = tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await;
        match r {
            Ok(Ok(lines)) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response(),
            Ok(Err(WitnessError::Conflict { recorded, .. })) => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                format!("{recorded}\n"),
            )
                .into_response(),
            Ok(Err(e)) => {
                if matches!(
                    e,
                    WitnessError::Store(_) | WitnessError::Config(_) | WitnessError::Unavailable(_)
                ) {
                    tracing::error!(error = %e, "add-checkpoint");
                }
                let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                if matches!(e, WitnessError::Unavailable(_)) {
                    return (status, [(header::RETRY_AFTER, "5")], format!("{e}\n")).into_response();
                }
                (status, format!("{e}\n")).into_response()
            }
            Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        }
    }
    axum::Router::new()
        .route("/add-checkpoint", post(add))
        .with_state((w, modelgate_http::Budget::new(BODIES)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use modelgate_tlog::{consistency_proof, leaf_hash, MemoryTree};

    fn log_key() -> SignerKey {
        SignerKey::from_seed("example.org/log", KeyType::Ed25519, &[1; 32]).unwrap()
    }

    fn checkpoint(tree: &MemoryTree, key: &SignerKey) -> Vec<u8> {
        Checkpoint {
            origin: key.name().to_owned(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        }
        .sign(key)
        .unwrap()
        .to_bytes()
    }

    fn tree(n: u64, salt: u8) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(leaf_hash(&[salt, i as u8, (i >> 8) as u8]));
        }
        t
    }

    fn req(old: u64, proof: Vec<Hash>, note: Vec<u8>) -> Vec<u8> {
        AddCheckpoint { old, proof, note }.to_bytes()
    }

    #[test]
    fn cosigns_what_extends_and_refuses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let vkey = init(dir.path(), "witness.example/w1").unwrap();
        assert!(init(dir.path(), "again").is_err(), "never re-initialised");
        let key = log_key();
        let w = Witness::open(dir.path(), vec![key.verifier()])
            .unwrap()
            .with_clock(|| 1_800_000_000);
        let t5 = tree(5, 0);
        let t9 = tree(9, 0);
        // First checkpoint: from the empty tree.
        let line = w.add_checkpoint(&req(0, vec![], checkpoint(&t5, &key))).unwrap();
        let mut note = Note::parse(&checkpoint(&t5, &key)).unwrap();
        let text = String::from_utf8(line).unwrap();
        let sig = Note::parse(format!("{}\n{text}", note.text()).as_bytes())
            .unwrap()
            .signatures()[0]
            .clone();
        note.add_signature(sig).unwrap();
        let v = note.verify(std::slice::from_ref(&vkey)).unwrap();
        assert_eq!(v.verified[0].1, Some(1_800_000_000), "a timestamped cosignature");
        // A stale old size: 409 with the recorded one.
        let e = w.add_checkpoint(&req(0, vec![], checkpoint(&t9, &key))).unwrap_err();
        assert_eq!(e, WitnessError::Conflict { old: 0, recorded: 5 });
        // The right old size and proof: cosigned; the state moves on.
        let p = consistency_proof(5, 9, &t9).unwrap();
        w.add_checkpoint(&req(5, p.clone(), checkpoint(&t9, &key))).unwrap();
        assert_eq!(w.recorded(key.name()).unwrap().unwrap().size, 9);
        // A rollback: the old size is not the recorded one.
        assert_eq!(
            w.add_checkpoint(&req(5, vec![], checkpoint(&t5, &key)))
                .unwrap_err()
                .status(),
            409
        );
        // A fork at the same size.
        let fork = tree(9, 1);
        assert_eq!(
            w.add_checkpoint(&req(9, vec![], checkpoint(&fork, &key)))
                .unwrap_err()
                .status(),
            409
        );
        // A fork that grows: the proof cannot verify.
        let fork12 = tree(12, 1);
        let p = consistency_proof(9, 12, &fork12).unwrap();
        assert_eq!(
            w.add_checkpoint(&req(9, p, checkpoint(&fork12, &key)))
                .unwrap_err()
                .status(),
            422
        );
        // The same checkpoint again: cosigned again (fresh timestamp).
        w.add_checkpoint(&req(9, vec![], checkpoint(&t9, &key))).unwrap();
        // Unknown origin, foreign signature, old above size, garbage.
        let other = SignerKey::from_seed("other.org/log", KeyType::Ed25519, &[2; 32]).unwrap();
        assert_eq!(
            w.add_checkpoint(&req(0, vec![], checkpoint(&t5, &other)))
                .unwrap_err()
                .status(),
            404
        );
        let forged = SignerKey::from_seed("example.org/log", KeyType::Ed25519, &[3; 32]).unwrap();
        assert_eq!(
            w.add_checkpoint(&req(9, vec![], checkpoint(&t9, &forged)))
                .unwrap_err()
                .status(),
            403
        );
        assert_eq!(
            w.add_checkpoint(&req(10, vec![], checkpoint(&t9, &key)))
                .unwrap_err()
                .status(),
            400
        );
        for junk in [
            &b"old 9\n"[..],
            b"old 09\n\nx",
            b"new 9\n\nx",
            b"old 9\nnot-a-hash\n\nx",
            b"",
        ] {
            assert_eq!(w.add_checkpoint(junk).unwrap_err().status(), 400, "{junk:?}");
        }
        // None of that changed the record, and it survives a reopen.
        drop(w);
        let w = Witness::open(dir.path(), vec![key.verifier()]).unwrap();
        assert_eq!(
            w.recorded(key.name()).unwrap(),
            Some(Recorded {
                size: 9,
                root: t9.root()
            })
        );
    }

    #[test]
    fn requests_are_bounded() {
        let many = (0..=MAX_PROOF_HASHES)
            .map(|_| B64.encode([0u8; 32]) + "\n")
            .collect::<String>();
        let body = format!("old 1\n{many}\nx");
        assert!(matches!(
            AddCheckpoint::parse(body.as_bytes()),
            Err(WitnessError::BadRequest(_))
        ));
        let big = vec![b'a'; MAX_BODY_BYTES + 1];
        assert!(matches!(AddCheckpoint::parse(&big), Err(WitnessError::BadRequest(_))));
    }
}
