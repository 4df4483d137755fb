//! Tampering: entries, node hashes and checkpoints are changed through SQL
//! and by raw byte edits of the database file. In every trial, opening the
//! store or the audit must report it; none may pass silently.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_store::*;
use modelgate_tlog::*;
use rusqlite::params;

const ORIGIN: &str = "tamper.example/log";
const N: u64 = 600;

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[6; 32]).unwrap()
}

fn policy() -> CheckpointPolicy {
    CheckpointPolicy::new(key().verifier(), vec![], 0).unwrap()
}

/// Where the store keeps node `(level, index)`: the index of the leaf that completed
/// it, times 64, plus the level (written out here, not imported, so a change of the
/// store's layout shows up as a failing trial).
fn pos(level: u8, index: u64) -> i64 {
    ((((index + 1) << level) - 1) * 64 + u64::from(level)) as i64
}

fn entry(i: u64) -> Vec<u8> {
    format!("governance entry {i:06} {}", "p".repeat((i % 40) as usize)).into_bytes()
}

/// A pristine store of N entries in batches of varying size; returns its
/// bytes (the WAL is folded into the main file when the writer closes).
fn pristine(dir: &Path) -> Vec<u8> {
    let db = dir.join("pristine.db");
    let mut log = Log::open(SqliteStore::open(&db).unwrap(), key()).unwrap();
    let mut i = 0;
    for size in [1u64, 2, 61, 200, 36, 300] {
        let es: Vec<Vec<u8>> = (i..i + size).map(entry).collect();
        log.append(&es).unwrap();
        i += size;
    }
    assert_eq!(i, N);
    log.close().unwrap();
    let wal = dir.join("pristine.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL not folded in"
    );
    let store = SqliteStore::open_read_only(&db).unwrap();
    audit(&store, &policy()).unwrap();
    std::fs::read(&db).unwrap()
}

/// Write `bytes` as a fresh database; return the outcome of open + audit.
fn check(dir: &Path, name: &str, bytes: &[u8]) -> Result<AuditReport, String> {
    let db = dir.join(format!("{name}.db"));
    std::fs::write(&db, bytes).unwrap();
    check_path(&db)
}

fn check_path(db: &Path) -> Result<AuditReport, String> {
    let store = SqliteStore::open(db).map_err(|e| format!("open: {e}"))?;
    let r = audit(&store, &policy()).map_err(|e| format!("audit: {e}"));
    if r.is_ok() {
        // The writer's own start-up check sees the same store.
        Log::open(store, key()).map_err(|e| format!("log open: {e}"))?;
    }
    r
}

fn sql_trial(dir: &Path, pristine: &[u8], name: &str, sql: impl FnOnce(&rusqlite::Connection)) -> String {
    let db = dir.join(format!("{name}.db"));
    std::fs::write(&db, pristine).unwrap();
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        sql(&c);
    }
    match check_path(&db) {
        Ok(r) => panic!("{name}: tampering passed silently: {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn sql_edits_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = pristine(dir.path());
    let mut trials = 0;
    for idx in [0u64, 1, 63, 64, 299, 599] {
        let e = sql_trial(dir.path(), &p, &format!("entry{idx}"), |c| {
            c.execute(
                "UPDATE entries SET data = ?1 WHERE idx = ?2",
                params![b"forged".to_vec(), idx],
            )
            .unwrap();
        });
        assert!(e.contains(&format!("node (level 0, index {idx})")), "{e}");
        trials += 1;
    }
    for (level, idx) in [(0u8, 5u64), (1, 3), (3, 10), (6, 2), (9, 0)] {
        let e = sql_trial(dir.path(), &p, &format!("node{level}-{idx}"), |c| {
            let n = c
                .execute(
                    "UPDATE nodes SET hash = randomblob(32) WHERE pos = ?1",
                    params![pos(level, idx)],
                )
                .unwrap();
            assert_eq!(n, 1);
        });
        assert!(
            e.contains(&format!("node (level {level}, index {idx})")) || e.contains("checkpoint"),
            "{e}"
        );
        trials += 1;
    }
    // Checkpoints: another root (signature fails), another signature, another size.
    for (name, size) in [("cp-first", 1u64), ("cp-mid", 64), ("cp-last", N)] {
        let e = sql_trial(dir.path(), &p, name, |c| {
            let note: Vec<u8> = c
                .query_row("SELECT note FROM checkpoints WHERE size = ?1", [size], |r| r.get(0))
                .unwrap();
            let mut text = String::from_utf8(note).unwrap();
            let root_line = text.lines().nth(2).unwrap().to_owned();
            let forged = B64.encode([0x42u8; 32]);
            text = text.replacen(&root_line, &forged, 1);
            c.execute(
                "UPDATE checkpoints SET note = ?1 WHERE size = ?2",
                params![text.into_bytes(), size],
            )
            .unwrap();
        });
        assert!(e.contains(&format!("size {size}")), "{e}");
        trials += 1;
    }
    // A consistent forgery: change an entry and recompute every node hash.
    // Only the log's key could re-sign the checkpoints, so their roots expose it.
    let e = sql_trial(dir.path(), &p, "rewritten-history", |c| {
        c.execute(
            "UPDATE entries SET data = ?1 WHERE idx = 10",
            params![b"approve the bad model".to_vec()],
        )
        .unwrap();
        let mut mem = MemoryTree::new();
        let mut nodes = Vec::new();
        let mut compact = CompactTree::new();
        for i in 0..N {
            let data: Vec<u8> = c
                .query_row("SELECT data FROM entries WHERE idx = ?1", [i], |r| r.get(0))
                .unwrap();
            compact.append(leaf_hash(&data), |l, x, h| nodes.push((l, x, *h)));
            mem.append(leaf_hash(&data));
        }
        c.execute("DELETE FROM nodes", []).unwrap();
        for (l, x, h) in nodes {
            c.execute(
                &format!("INSERT INTO nodes (pos, hash) VALUES ({}, ?1)", pos(l, x)),
                params![&h[..]],
            )
            .unwrap();
        }
    });
    assert!(e.contains("checkpoint for size 64") && e.contains("root"), "{e}");
    trials += 1;
    // Deletions and insertions.
    for (name, sql) in [
        ("drop-last-entry", "DELETE FROM entries WHERE idx = 599".to_owned()),
        ("drop-middle-entry", "DELETE FROM entries WHERE idx = 300".to_owned()),
        ("drop-node", format!("DELETE FROM nodes WHERE pos = {}", pos(2, 7))),
        (
            "extra-node",
            format!("INSERT INTO nodes (pos, hash) VALUES ({}, randomblob(32))", pos(0, 600)),
        ),
        (
            "extra-entry",
            "INSERT INTO entries (idx, data) VALUES (600, x'00')".to_owned(),
        ),
        (
            "drop-last-checkpoint",
            "DELETE FROM checkpoints WHERE size = 600".to_owned(),
        ),
        (
            "orphan-checkpoint",
            "INSERT INTO checkpoints (size, note) VALUES (601, x'00')".to_owned(),
        ),
        (
            "short-hash",
            format!("UPDATE nodes SET hash = x'0102' WHERE pos = {}", pos(0, 4)),
        ),
    ] {
        sql_trial(dir.path(), &p, name, |c| {
            c.execute_batch(&sql).unwrap();
        });
        trials += 1;
    }
    eprintln!("{trials} SQL tampering trials, all reported");
}

/// Every offset at which `needle` occurs in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn raw_byte_edits_of_the_file_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let p = pristine(dir.path());
    let store = SqliteStore::open_read_only(&dir.path().join("pristine.db")).unwrap();
    // A value can sit in the file more than once (stale copies in free
    // pages after b-tree splits), so each trial edits every copy: whichever
    // one SQLite reads is changed.
    let mut targets: Vec<(String, Vec<usize>)> = Vec::new();
    // Entry bytes.
    for i in (0..N).step_by(37) {
        let e = entry(i);
        let at = find_all(&p, &e);
        assert!(!at.is_empty(), "entry {i} not found");
        targets.push((format!("entry {i}"), at.iter().map(|a| a + 20).collect()));
    }
    // Stored node hashes, at several levels.
    for (level, idx) in [(0u8, 0u64), (0, 17), (0, 599), (1, 40), (2, 9), (4, 3), (8, 1), (9, 0)] {
        let h = store.node_hash(level, idx).unwrap();
        let at = find_all(&p, &h);
        assert!(!at.is_empty(), "node ({level},{idx}) not found");
        targets.push((format!("node ({level},{idx})"), at.iter().map(|a| a + 13).collect()));
    }
    // Checkpoint notes: a byte of the size line, the root line and the signature.
    for size in store.checkpoint_sizes().unwrap() {
        let note = store.checkpoint(size).unwrap().unwrap();
        let at = find_all(&p, &note);
        assert!(!at.is_empty(), "checkpoint {size} not found");
        let text = String::from_utf8(note.clone()).unwrap();
        let size_line = ORIGIN.len() + 1;
        let root_line = text.find('\n').unwrap() + text[size_line..].find('\n').unwrap() + 2;
        let sig = text.find('\u{2014}').unwrap() + 30;
        targets.push((
            format!("checkpoint {size} size"),
            at.iter().map(|a| a + size_line).collect(),
        ));
        targets.push((
            format!("checkpoint {size} root"),
            at.iter().map(|a| a + root_line + 5).collect(),
        ));
        targets.push((
            format!("checkpoint {size} signature"),
            at.iter().map(|a| a + sig).collect(),
        ));
    }
    drop(store);
    let mut trials = 0;
    for (what, offsets) in &targets {
        for (k, flip) in [0x01u8, 0x20, 0x80].into_iter().enumerate() {
            let mut bytes = p.clone();
            for &o in offsets {
                bytes[o] ^= flip;
            }
            let name = format!("raw-{trials}-{k}");
            match check(dir.path(), &name, &bytes) {
                Ok(r) => panic!("{what}: bytes {offsets:?} ^ {flip:#04x} passed silently: {r:?}"),
                Err(e) => {
                    if trials < 3 {
                        eprintln!("{what}: {e}");
                    }
                }
            }
        }
        trials += 1;
    }
    assert!(trials >= 30, "{trials}");
    eprintln!(
        "{} raw byte edits ({trials} places × 3 flips), all reported",
        trials * 3
    );
}

/// The incremental auditor follows a growing log chunk by chunk, agrees with
/// the full audit, and stops at a changed node hash or a re-signed
/// checkpoint among the entries it has not audited yet.
#[test]
fn the_incremental_auditor_follows_growth_and_finds_tampering_in_the_new_tail() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grow.db");
    let mut log = Log::open(SqliteStore::open(&db).unwrap(), key()).unwrap();
    let reader = SqliteStore::open_read_only(&db).unwrap();
    let mut auditor = Auditor::new(policy());
    assert_eq!(auditor.advance(&reader).unwrap(), 0);
    let mut i = 0;
    for size in [1u64, 5, 4096, 3, 5000] {
        let es: Vec<Vec<u8>> = (i..i + size).map(entry).collect();
        log.append(&es).unwrap();
        i += size;
        let mut reader = SqliteStore::open_read_only(&db).unwrap();
        reader.refresh_size().unwrap();
        assert_eq!(auditor.advance(&reader).unwrap(), i);
    }
    let mut reader = reader;
    reader.refresh_size().unwrap();
    assert_eq!(audit(&reader, &policy()).unwrap().root, log.root());
    // Tamper with a node in the next (not yet audited) batch.
    log.append(&(i..i + 10).map(entry).collect::<Vec<_>>()).unwrap();
    drop(log);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let n = conn
        .execute(
            "UPDATE nodes SET hash = zeroblob(32) WHERE pos = ?1",
            params![pos(0, i + 4)],
        )
        .unwrap();
    assert_eq!(n, 1);
    let reader = SqliteStore::open_read_only(&db).unwrap();
    let before = auditor.size();
    let err = auditor.advance(&reader).unwrap_err();
    assert!(
        matches!(err, AuditError::Node { level: 0, index, .. } if index == i + 4),
        "{err}"
    );
    assert_eq!(auditor.size(), before, "a failed advance must not move");
    // A checkpoint signed by another key is refused.
    let other = Auditor::new(
        CheckpointPolicy::new(
            SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[7; 32])
                .unwrap()
                .verifier(),
            vec![],
            0,
        )
        .unwrap(),
    )
    .advance(&reader)
    .unwrap_err();
    assert!(matches!(other, AuditError::Checkpoint { .. }), "{other}");
}
