//! Replicated lineage: each node's lineage log, mirrored by the authority.
//!
//! A node ships its new records in batches with a checkpoint it signed and a
//! consistency proof from what it shipped before (`POST
//! /api/v1/nodes/{id}/lineage`). A batch is kept only when the records make
//! the signed root, the proof holds, and the history agrees with the node's
//! latest anchor in the governance log; each node's mirror is one SQLite log
//! (`lineage/<hash of the node id>.db`), appended durably and never
//! rewritten. A signed checkpoint that contradicts the history held is
//! refused and kept as evidence (both signed notes), shown on the console.
//!
//! Records hold metadata and digests only: a node that keeps prompt or
//! output content in its lineage log (`store_content`) does not replicate.
//!
//! An index (`lineage/index.db`) of every record's time, node, model,
//! digest, caller, scope, decision and reason serves the explorer's
//! searches; it is derived from the mirrors, written after them, and
//! brought up to date from them at start-up, so a crash between the two
//! loses nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_store::{Extended, LogStore as _, Mirror, MirrorError, Nodes, SqliteStore, StoreError};
use modelgate_tlog::{CheckpointPolicy, Hash, VerifierKey};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Records a batch may carry.
pub const MAX_BATCH_RECORDS: usize = 5_000;

/// The largest batch body accepted.
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// What a node posts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageBatch {
    /// Index of the first record.
    pub from: u64,
    /// The records, base64.
    pub records: Vec<String>,
    /// The node's signed lineage checkpoint for `from + records.len()`.
    pub checkpoint: String,
    /// The consistency proof from `from` to that size, base64 hashes.
    pub consistency: Vec<String>,
}

/// Why a batch was not kept (nothing was written, except evidence).
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The batch does not start at what the authority holds.
    #[error("the authority holds {size} records of this node; send from there")]
    Gap {
        /// Records held.
        size: u64,
    },
    /// Not a valid batch (see [`MirrorError::Invalid`]).
    #[error("{0}")]
    Invalid(String),
    /// A record carries prompt or output content (`body`).
    #[error("{0}")]
    Content(String),
    /// The node signed two histories; kept as evidence.
    #[error("{0}")]
    Inconsistent(String),
    /// Storage failed.
    #[error("{0}")]
    Store(String),
}

impl From<StoreError> for ReplicationError {
    fn from(e: StoreError) -> Self {
        ReplicationError::Store(e.to_string())
    }
}

impl From<rusqlite::Error> for ReplicationError {
    fn from(e: rusqlite::Error) -> Self {
        ReplicationError::Store(e.to_string())
    }
}

/// A record as the explorer lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The node.
    pub node: String,
    /// Its index in the node's lineage log (the lineage id).
    pub index: u64,
    /// Node time.
    pub time: u64,
    /// `request`, `denial`, `completion` or `lifecycle`.
    pub kind: String,
    /// Model name.
    pub model: Option<String>,
    /// Model digest.
    pub digest: Option<String>,
    /// The caller.
    pub principal: Option<String>,
    /// The scope.
    pub scope: Option<String>,
    /// `allow` (forwarded) or `deny`; none for other kinds.
    pub decision: Option<String>,
    /// A denial's reason code.
    pub code: Option<String>,
}

/// Explorer search filters; every one given must hold.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Search {
    /// A lineage id (a record's index).
    pub id: Option<u64>,
    /// Model name, or a digest prefix of at least 8 hex digits.
    pub model: Option<String>,
    /// Node id.
    pub node: Option<String>,
    /// Caller (principal).
    pub caller: Option<String>,
    /// Scope.
    pub scope: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    /// Reason code.
    pub code: Option<String>,
    /// From this node time (inclusive).
    pub since: Option<u64>,
    /// Up to this node time (inclusive).
    pub until: Option<u64>,
    /// Oldest first (default: newest first).
    #[serde(default)]
    pub oldest_first: bool,
    /// Calls only (requests and denials; the default), or every record.
    #[serde(default)]
    pub all_kinds: bool,
}

/// A record and its inclusion proof in a checkpoint its node signed.
#[derive(Clone, Debug)]
pub struct ProvenRecord {
    /// The record's bytes.
    pub record: Vec<u8>,
    /// The node's signed checkpoint note.
    pub checkpoint: Vec<u8>,
    /// The RFC 6962 inclusion proof in that checkpoint.
    pub inclusion: Vec<Hash>,
}

/// Evidence of a node that signed two histories.
#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    /// The node.
    pub node: String,
    /// When it was found (authority time).
    pub time: u64,
    /// What disagrees.
    pub detail: String,
    /// The signed checkpoint held before (or the anchored one).
    pub held: String,
    /// The signed checkpoint that contradicts it.
    pub offered: String,
}

const INDEX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    node TEXT NOT NULL, idx INTEGER NOT NULL, time INTEGER NOT NULL, kind TEXT NOT NULL,
    model TEXT, digest TEXT, principal TEXT, scope TEXT, decision TEXT, code TEXT,
    PRIMARY KEY (node, idx)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_time ON calls (time, node, idx);
CREATE INDEX IF NOT EXISTS calls_node ON calls (node, time);
CREATE INDEX IF NOT EXISTS calls_model ON calls (model, time);
CREATE INDEX IF NOT EXISTS calls_digest ON calls (digest, time);
CREATE INDEX IF NOT EXISTS calls_principal ON calls (principal, time);
CREATE INDEX IF NOT EXISTS calls_scope ON calls (scope, time);
CREATE INDEX IF NOT EXISTS calls_code ON calls (code, time);
CREATE INDEX IF NOT EXISTS calls_idx ON calls (idx);
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY, node TEXT NOT NULL, time INTEGER NOT NULL, detail TEXT NOT NULL,
    held BLOB NOT NULL, offered BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS mirrors (node TEXT PRIMARY KEY, file TEXT NOT NULL);
";

/// The mirrors and their index.
pub struct Lineage {
    dir: PathBuf,
    mirrors: Mutex<HashMap<String, Mirror<SqliteStore>>>,
    index: Mutex<Connection>,
}

fn file_of(node: &str) -> String {
    format!("{}.db", &hex::encode(Sha256::digest(node.as_bytes()))[..32])
}

fn policy_of(key: &str) -> Result<CheckpointPolicy, ReplicationError> {
    let k = VerifierKey::parse(key).map_err(|e| ReplicationError::Store(format!("the enrolled key: {e}")))?;
    CheckpointPolicy::new(k, vec![], 0).map_err(|e| ReplicationError::Store(e.to_string()))
}

/// The indexed columns of one record (`None`: not JSON, not indexed). A
/// node's record is what the node signed, so nothing in it is trusted: a
/// digest that is not 64 lowercase hex digits is not indexed as one, and a
/// time past SQLite's integers is clamped.
pub fn columns(record: &[u8]) -> Option<(u64, String, [Option<String>; 6])> {
    let v: Value = serde_json::from_slice(record).ok()?;
    let s = |k: &str| v[k].as_str().map(str::to_owned);
    let digest = s("digest").filter(|d| d.len() == 64 && d.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    let kind = s("type")?;
    let decision = match kind.as_str() {
        "request" => Some("allow".to_owned()),
        "denial" => Some("deny".to_owned()),
        _ => None,
    };
    Some((
        v["time"].as_u64().unwrap_or(0).min(i64::MAX as u64),
        kind,
        [s("model"), digest, s("principal"), s("scope"), decision, s("code")],
    ))
}

impl Lineage {
    /// Open (or create) `dir` and its index.
    pub fn open(dir: &Path) -> Result<Self, ReplicationError> {
        std::fs::create_dir_all(dir).map_err(|e| ReplicationError::Store(format!("{}: {e}", dir.display())))?;
        let conn = Connection::open(dir.join("index.db"))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;")?;
        conn.execute_batch(INDEX_SCHEMA)?;
        Ok(Self {
            dir: dir.to_owned(),
            mirrors: Mutex::new(HashMap::new()),
            index: Mutex::new(conn),
        })
    }

    fn with_mirror<T>(
        &self,
        node: &str,
        key: &str,
        f: impl FnOnce(&mut Mirror<SqliteStore>) -> Result<T, ReplicationError>,
    ) -> Result<T, ReplicationError> {
        let mut mirrors = self
            .mirrors
            .lock()
            .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
        if !mirrors.contains_key(node) {
            let file = file_of(node);
            let store = SqliteStore::open(&self.dir.join(&file))?;
            let mirror = Mirror::open(store, policy_of(key)?)?;
            if let Ok(c) = self.index.lock() {
                c.execute(
                    "INSERT OR IGNORE INTO mirrors (node, file) VALUES (?1, ?2)",
                    params![node, file],
                )?;
            }
            mirrors.insert(node.to_owned(), mirror);
        }
        let m = mirrors
            .get_mut(node)
            .ok_or_else(|| ReplicationError::Store("mirror vanished".into()))?;
        f(m)
    }

    /// Records held for `node`.
    pub fn size(&self, node: &str, key: &str) -> Result<u64, ReplicationError> {
        self.with_mirror(node, key, |m| Ok(m.size()))
    }

    /// Keep `batch` from `node` (enrolled with `key`), whose latest anchor
    /// in the governance log is `anchored` (its signed checkpoint), if any.
    /// Durable and indexed when it returns `Ok` (the size held).
    pub fn ingest(
        &self,
        node: &str,
        key: &str,
        anchored: Option<&[u8]>,
        batch: &LineageBatch,
        now: u64,
    ) -> Result<u64, ReplicationError> {
        if batch.records.len() > MAX_BATCH_RECORDS {
            return Err(ReplicationError::Invalid(format!(
                "{} records in one batch; at most {MAX_BATCH_RECORDS}",
                batch.records.len()
            )));
        }
        let records = batch
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                B64.decode(r)
                    .map_err(|_| ReplicationError::Invalid(format!("record {} is not base64", batch.from + i as u64)))
            })
            .collect::<Result<Vec<Vec<u8>>, _>>()?;
        if let Some((i, _)) = records
            .iter()
            .enumerate()
            .find(|(_, r)| serde_json::from_slice::<Value>(r).is_ok_and(|v| v.get("body").is_some()))
        {
            return Err(ReplicationError::Content(format!(
                "record {} carries content (a body): content never leaves the node",
                batch.from + i as u64
            )));
        }
        let proof = batch
            .consistency
            .iter()
            .map(|h| B64.decode(h).ok().and_then(|b| Hash::try_from(b).ok()))
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| ReplicationError::Invalid("consistency hashes must be base64 SHA-256".into()))?;
        let outcome = self.with_mirror(node, key, |m| {
            Ok(
                match m.extend(batch.from, &records, batch.checkpoint.as_bytes(), &proof, anchored) {
                    Ok(Extended::Appended(size)) => Ok((size, true)),
                    Ok(Extended::AlreadyHeld(size)) => Ok((size, false)),
                    Err(e) => Err(e),
                },
            )
        })?;
        match outcome {
            Ok((size, appended)) => {
                if appended {
                    self.index_records(node, batch.from, &records)?;
                }
                Ok(size)
            }
            Err(MirrorError::Gap { size, .. }) => Err(ReplicationError::Gap { size }),
            Err(MirrorError::Invalid(m)) => Err(ReplicationError::Invalid(m)),
            Err(MirrorError::Store(e)) => Err(e.into()),
            Err(MirrorError::Inconsistent { detail, held, offered }) => {
                if let Ok(c) = self.index.lock() {
                    c.execute(
                        "INSERT INTO evidence (node, time, detail, held, offered) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![node, now as i64, detail, held, offered],
                    )?;
                }
                Err(ReplicationError::Inconsistent(format!(
                    "node {node}: {detail}; both signed checkpoints are kept as evidence"
                )))
            }
        }
    }

    fn index_records(&self, node: &str, from: u64, records: &[Vec<u8>]) -> Result<(), ReplicationError> {
        let mut c = self
            .index
            .lock()
            .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
        let tx = c.transaction()?;
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO calls (node, idx, time, kind, model, digest, principal, scope, decision, code)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for (i, r) in records.iter().enumerate() {
                let Some((time, kind, [model, digest, principal, scope, decision, code])) = columns(r) else {
                    continue;
                };
                ins.execute(params![
                    node,
                    (from + i as u64) as i64,
                    time as i64,
                    kind,
                    model,
                    digest,
                    principal,
                    scope,
                    decision,
                    code
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Bring the index up to every mirror (after a crash between a mirror's
    /// append and its indexing). `key_of` gives each node's enrolled key.
    pub fn reconcile(&self, key_of: impl Fn(&str) -> Option<String>) -> Result<u64, ReplicationError> {
        let known: Vec<(String, i64)> = {
            let c = self
                .index
                .lock()
                .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
            let mut st = c.prepare(
                "SELECT m.node, COALESCE((SELECT MAX(idx) + 1 FROM calls WHERE node = m.node), 0) FROM mirrors m",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut added = 0;
        for (node, indexed) in known {
            let Some(key) = key_of(&node) else { continue };
            let (size, records) = self.with_mirror(&node, &key, |m| {
                let size = m.size();
                let from = (indexed as u64).min(size);
                Ok((size, m.store().entries(from, size)?))
            })?;
            let from = size - records.len() as u64;
            added += records.len() as u64;
            for (k, chunk) in records.chunks(MAX_BATCH_RECORDS).enumerate() {
                self.index_records(&node, from + (k * MAX_BATCH_RECORDS) as u64, chunk)?;
            }
        }
        Ok(added)
    }

    /// The digests indexed that start with `prefix` (lowercase hex): two
    /// index seeks when one model matches (the usual case), so the search
    /// can follow the (digest, time) index in time order instead of sorting
    /// every record of the model.
    fn digests_with_prefix(&self, prefix: &str) -> Result<Vec<String>, ReplicationError> {
        let c = self
            .index
            .lock()
            .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
        let end = format!("{prefix}g");
        let mut out: Vec<String> = Vec::new();
        let mut st =
            c.prepare_cached("SELECT digest FROM calls WHERE digest > ?1 AND digest < ?2 ORDER BY digest LIMIT 1")?;
        let mut after = prefix.to_owned();
        // At most a few distinct models share a prefix of 8+ hex digits.
        while out.len() < 16 {
            let next: Option<String> = st.query_row(params![after, end], |r| r.get(0)).optional()?;
            match next {
                Some(d) => {
                    after = d.clone();
                    out.push(d);
                }
                None => break,
            }
        }
        Ok(out)
    }

    /// Search the index: up to `limit` rows after skipping `offset`.
    pub fn search(&self, q: &Search, offset: u64, limit: u64) -> Result<Vec<Row>, ReplicationError> {
        // A digest prefix names models: resolve it first (outside the
        // statement below, which holds the index's lock).
        let digests = match q.model.as_deref() {
            Some(m) if m.len() >= 8 && m.len() < 64 && m.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(self.digests_with_prefix(&m.to_ascii_lowercase())?)
            }
            _ => None,
        };
        let mut sql = String::from(
            "SELECT node, idx, time, kind, model, digest, principal, scope, decision, code FROM calls WHERE 1=1",
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut eq = |sql: &mut String, col: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&format!(" AND {col} = ?{}", args.len()));
        };
        use rusqlite::types::Value as V;
        // SQLite's integers are i64: a number beyond it matches no record
        // (an id) or every one (a bound), so it is clamped, never wrapped.
        let int = |n: u64| V::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        if let Some(id) = q.id {
            if i64::try_from(id).is_err() {
                return Ok(Vec::new());
            }
            eq(&mut sql, "idx", int(id));
        }
        if let Some(n) = q.node.as_deref().filter(|s| !s.is_empty()) {
            eq(&mut sql, "node", V::Text(n.to_owned()));
        }
        if let Some(c) = q.caller.as_deref().filter(|s| !s.is_empty()) {
            eq(&mut sql, "principal", V::Text(c.to_owned()));
        }
        if let Some(s) = q.scope.as_deref().filter(|s| !s.is_empty()) {
            eq(&mut sql, "scope", V::Text(s.to_owned()));
        }
        if let Some(d) = q.decision.as_deref().filter(|s| !s.is_empty()) {
            eq(&mut sql, "decision", V::Text(d.to_owned()));
        }
        if let Some(c) = q.code.as_deref().filter(|s| !s.is_empty()) {
            eq(&mut sql, "code", V::Text(c.to_owned()));
        }
        if let Some(m) = q.model.as_deref().filter(|s| !s.is_empty()) {
            let is_digest = m.len() >= 8 && m.bytes().all(|b| b.is_ascii_hexdigit());
            if is_digest && m.len() == 64 {
                eq(&mut sql, "digest", V::Text(m.to_ascii_lowercase()));
            } else if let Some(ds) = &digests {
                // A prefix, resolved to the digests it matches.
                if ds.is_empty() {
                    return Ok(Vec::new());
                }
                let mut marks = Vec::new();
                for d in ds {
                    args.push(V::Text(d.clone()));
                    marks.push(format!("?{}", args.len()));
                }
                sql.push_str(&format!(" AND digest IN ({})", marks.join(", ")));
            } else {
                eq(&mut sql, "model", V::Text(m.to_owned()));
            }
        }
        if let Some(t) = q.since {
            args.push(int(t));
            sql.push_str(&format!(" AND time >= ?{}", args.len()));
        }
        if let Some(t) = q.until {
            args.push(int(t));
            sql.push_str(&format!(" AND time <= ?{}", args.len()));
        }
        if !q.all_kinds {
            sql.push_str(" AND decision IS NOT NULL");
        }
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        // Bound as parameters: formatted into the text, an offset past
        // i64 was read by SQLite as a REAL and refused.
        args.push(int(limit.min(1000)));
        args.push(int(offset));
        sql.push_str(&format!(
            " ORDER BY time {dir}, node {dir}, idx {dir} LIMIT ?{} OFFSET ?{}",
            args.len() - 1,
            args.len()
        ));
        let c = self
            .index
            .lock()
            .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
        let mut st = c.prepare_cached(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
            Ok(Row {
                node: r.get(0)?,
                index: r.get::<_, i64>(1)? as u64,
                time: r.get::<_, i64>(2)? as u64,
                kind: r.get(3)?,
                model: r.get(4)?,
                digest: r.get(5)?,
                principal: r.get(6)?,
                scope: r.get(7)?,
                decision: r.get(8)?,
                code: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One record of `node` and its inclusion proof in the latest signed
    /// checkpoint held.
    pub fn record(&self, node: &str, key: &str, index: u64) -> Result<Option<ProvenRecord>, ReplicationError> {
        self.with_mirror(node, key, |m| {
            let size = m.size();
            if index >= size {
                return Ok(None);
            }
            let record = m.store().entries(index, index + 1)?.pop().unwrap_or_default();
            let note = m.latest()?.unwrap_or_default();
            let inclusion = modelgate_tlog::inclusion_proof(index, size, &Nodes(m.store()))
                .map_err(|e| ReplicationError::Store(e.to_string()))?;
            Ok(Some(ProvenRecord {
                record,
                checkpoint: note,
                inclusion,
            }))
        })
    }

    /// Records of `node` in `[from, to)` (for the proof of a call, which
    /// names its completion later in the log).
    pub fn records(&self, node: &str, key: &str, from: u64, to: u64) -> Result<Vec<Vec<u8>>, ReplicationError> {
        self.with_mirror(node, key, |m| {
            let to = to.min(m.size());
            Ok(if from >= to {
                Vec::new()
            } else {
                m.store().entries(from, to)?
            })
        })
    }

    /// The signed checkpoint held for exactly `size`, if one is.
    pub fn checkpoint(&self, node: &str, key: &str, size: u64) -> Result<Option<Vec<u8>>, ReplicationError> {
        self.with_mirror(node, key, |m| Ok(m.store().checkpoint(size)?))
    }

    /// Inclusion proof of `index` in the mirror's tree of `size`.
    pub fn inclusion(&self, node: &str, key: &str, index: u64, size: u64) -> Result<Vec<Hash>, ReplicationError> {
        self.with_mirror(node, key, |m| {
            modelgate_tlog::inclusion_proof(index, size, &Nodes(m.store()))
                .map_err(|e| ReplicationError::Store(e.to_string()))
        })
    }

    /// Every piece of evidence, newest first.
    pub fn evidence(&self) -> Result<Vec<Evidence>, ReplicationError> {
        let c = self
            .index
            .lock()
            .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
        let mut st = c.prepare("SELECT node, time, detail, held, offered FROM evidence ORDER BY id DESC LIMIT 100")?;
        let rows = st.query_map([], |r| {
            Ok(Evidence {
                node: r.get(0)?,
                time: r.get::<_, i64>(1)? as u64,
                detail: r.get(2)?,
                held: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(3)?).into_owned(),
                offered: String::from_utf8_lossy(&r.get::<_, Vec<u8>>(4)?).into_owned(),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records indexed, all nodes.
    pub fn indexed(&self) -> Result<u64, ReplicationError> {
        let c = self
            .index
            .lock()
            .map_err(|_| ReplicationError::Store("lock poisoned".into()))?;
        let n: Option<i64> = c.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0)).optional()?;
        Ok(n.unwrap_or(0) as u64)
    }
}

#[cfg(test)]
mod columns_tests {
    use super::columns;
    use proptest::prelude::*;

    proptest! {
        /// Whatever strings a node puts in its records, indexing them never
        /// panics and indexes as a digest only 64 lowercase hex digits.
        #[test]
        fn any_record_is_indexed_or_skipped_and_only_hex_digests_count(
            model in any::<String>(), digest in any::<String>(), principal in any::<String>(),
            kind in prop_oneof![Just("request".to_owned()), Just("denial".to_owned()), any::<String>()],
            time in any::<u64>(), hex in "[0-9a-f]{64}",
        ) {
            for d in [digest.clone(), hex.clone(), hex.to_uppercase()] {
                let record = serde_json::json!({"type": kind, "model": model, "digest": d, "principal": principal, "time": time});
                let (t, k, [m, dg, p, ..]) = columns(&serde_json::to_vec(&record).unwrap()).unwrap();
                prop_assert!(t <= i64::MAX as u64);
                prop_assert_eq!(&k, &kind);
                prop_assert_eq!(m.as_deref(), Some(model.as_str()));
                prop_assert_eq!(p.as_deref(), Some(principal.as_str()));
                let is_hex = d.len() == 64 && d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                prop_assert_eq!(dg.is_some(), is_hex);
            }
            prop_assert!(columns(model.as_bytes()).is_none() || serde_json::from_str::<serde_json::Value>(&model).is_ok());
        }
    }
}
