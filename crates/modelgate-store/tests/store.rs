//! The store's contract: appends are readable as entries, nodes, tiles and
//! checkpoints; one writer at a time; bad input changes nothing; the
//! sequencer gives every submitter its own index only after the append is
//! durable, says "busy" when full, and survives a failed batch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelgate_store::*;
use modelgate_tlog::*;

const ORIGIN: &str = "store.example/log";

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[4; 32]).unwrap()
}

fn policy() -> CheckpointPolicy {
    CheckpointPolicy::new(key().verifier(), vec![], 0).unwrap()
}

fn open_log(path: &Path) -> Log<SqliteStore> {
    Log::open(SqliteStore::open(path).unwrap(), key()).unwrap()
}

fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| format!("entry {i}").into_bytes()).collect()
}

#[test]
fn appends_are_readable_as_entries_nodes_tiles_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut log = open_log(&db);
    let mut mem = MemoryTree::new();
    let mut start = 0;
    for batch in [1u64, 7, 256, 300, 1] {
        let es = entries(start..start + batch);
        let done = log.append(&es).unwrap();
        for e in &es {
            mem.append(leaf_hash(e));
        }
        assert_eq!((done.first, done.size, done.root), (start, start + batch, mem.root()));
        let v = policy().verify(&done.checkpoint).unwrap();
        assert_eq!((v.checkpoint.size, v.checkpoint.root), (done.size, mem.root()));
        start += batch;
    }
    log.close().unwrap();

    // Reopen: same size and root; everything reads back.
    let log = open_log(&db);
    assert_eq!((log.size(), log.root()), (565, mem.root()));
    let store = log.store();
    assert_eq!(store.entries(0, 565).unwrap(), entries(0..565));
    assert_eq!(store.entries(300, 302).unwrap(), entries(300..302));
    assert!(store.entries(560, 566).is_err());
    for t in TileId::all_for_size(565) {
        assert_eq!(
            read_tile(store, t).unwrap(),
            tile_data(t, &mem).unwrap(),
            "{}",
            t.path()
        );
    }
    assert_eq!(root_at(300, &Nodes(store)).unwrap(), root_at(300, &mem).unwrap());
    assert_eq!(
        inclusion_proof(17, 565, &Nodes(store)).unwrap(),
        inclusion_proof(17, 565, &mem).unwrap()
    );
    assert_eq!(store.checkpoint_sizes().unwrap(), vec![1, 8, 264, 564, 565]);
    let report = audit(store, &policy()).unwrap();
    assert_eq!((report.entries, report.checkpoints, report.root), (565, 5, mem.root()));
}

#[test]
fn one_writer_at_a_time_and_readers_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut log = open_log(&db);
    log.append(&entries(0..3)).unwrap();
    let second = SqliteStore::open(&db);
    match second {
        Err(StoreError::Locked { path }) => assert!(path.contains(&std::process::id().to_string()), "{path}"),
        other => panic!("second writer: {:?}", other.map(|_| ())),
    }
    // An auditor can read while the writer holds the lock.
    let reader = SqliteStore::open_read_only(&db).unwrap();
    assert_eq!(reader.size().unwrap(), 3);
    audit(&reader, &policy()).unwrap();
    log.close().unwrap();
    // Once the writer is gone, the next one gets in.
    let log = open_log(&db);
    assert_eq!(log.size(), 3);
}

/// A reader opened while the writer commits sees one snapshot: never a store whose
/// entries and latest checkpoint disagree (which it would report as corrupt).
#[test]
fn readers_opened_during_appends_never_see_a_torn_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut log = open_log(&db);
    log.append(&entries(0..1)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 1;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                log.append(&entries(n..n + 50)).unwrap();
                n += 50;
            }
            n
        })
    };
    let mut opened = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let r = SqliteStore::open_read_only(&db).unwrap_or_else(|e| panic!("reader {opened}: {e}"));
        assert!(r.size().unwrap() >= 1);
        opened += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(
        opened > 20 && written > 1_000,
        "{opened} readers beside {written} entries"
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut log = open_log(&db);
    log.append(&entries(0..5)).unwrap();
    let root = log.root();

    let too_big = vec![vec![1u8; 10], vec![0u8; MAX_ENTRY_BYTES + 1]];
    assert_eq!(
        log.append(&too_big),
        Err(StoreError::EntryTooLarge {
            position: 1,
            len: MAX_ENTRY_BYTES + 1,
            max: MAX_ENTRY_BYTES
        })
    );
    assert_eq!(log.append(&[]), Err(StoreError::EmptyBatch));
    assert_eq!((log.size(), log.root()), (5, root));
    // The largest allowed entry is fine.
    log.append(&[vec![7u8; MAX_ENTRY_BYTES]]).unwrap();
    log.close().unwrap();

    // A batch at the wrong position, straight at the store.
    let mut store = SqliteStore::open(&db).unwrap();
    let e = entries(0..1);
    let r = store.append(&Batch {
        start: 3,
        entries: &e,
        nodes: &[],
        checkpoint: b"x",
    });
    assert_eq!(r, Err(StoreError::Conflict { start: 3, size: 6 }));
    assert_eq!(store.size().unwrap(), 6);
    audit(&store, &policy()).unwrap();

    // A closed store refuses everything.
    store.close().unwrap();
    assert_eq!(store.size(), Err(StoreError::Closed));
    assert_eq!(store.entries(0, 1), Err(StoreError::Closed));
    assert_eq!(store.node_hash(0, 0), Err(StoreError::Closed));
    assert_eq!(store.latest_checkpoint(), Err(StoreError::Closed));
    let r = store.append(&Batch {
        start: 6,
        entries: &e,
        nodes: &[],
        checkpoint: b"x",
    });
    assert_eq!(r, Err(StoreError::Closed));
    let log = open_log(&db);
    assert_eq!(log.size(), 6);
    audit(log.store(), &policy()).unwrap();
}

#[test]
fn a_store_from_a_newer_schema_or_another_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut log = open_log(&db);
    log.append(&entries(0..2)).unwrap();
    log.close().unwrap();
    let other = SignerKey::from_seed("other.example/log", KeyType::Ed25519, &[4; 32]).unwrap();
    assert!(matches!(
        Log::open(SqliteStore::open(&db).unwrap(), other),
        Err(StoreError::Corrupt(_))
    ));
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    match SqliteStore::open(&db) {
        Err(StoreError::Schema(m)) => assert!(m.contains("newer"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn sequencer_gives_each_submitter_its_own_durable_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let seq = Arc::new(Sequencer::start(open_log(&db), SequencerConfig::default()).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let seq = Arc::clone(&seq);
            std::thread::spawn(move || {
                (0..150)
                    .map(|n| {
                        let e = format!("t{t} n{n}").into_bytes();
                        (seq.submit(e.clone()).unwrap(), e)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut got: Vec<(Receipt, Vec<u8>)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    got.sort_by_key(|(r, _)| r.index);
    assert_eq!(
        got.iter().map(|(r, _)| r.index).collect::<Vec<_>>(),
        (0..1200).collect::<Vec<_>>()
    );
    let log = Arc::try_unwrap(seq).ok().unwrap().shutdown().unwrap();
    let stored = log.store().entries(0, 1200).unwrap();
    for (r, e) in &got {
        assert_eq!(&stored[r.index as usize], e);
        // The receipt's checkpoint is signed and covers the entry.
        let v = policy().verify(&r.checkpoint).unwrap();
        assert!(v.checkpoint.size > r.index && v.checkpoint.size == r.size);
        let proof = inclusion_proof(r.index, r.size, &Nodes(log.store())).unwrap();
        verify_inclusion(&leaf_hash(e), r.index, r.size, &proof, &v.checkpoint.root).unwrap();
    }
    // Batching happened: fewer checkpoints than entries.
    let batches = log.store().checkpoint_sizes().unwrap().len();
    assert!(batches < 1200, "{batches} batches for 1200 entries");
    audit(log.store(), &policy()).unwrap();
    // Entries over the limit are refused before they are queued.
    let seq = Sequencer::start(log, SequencerConfig::default()).unwrap();
    assert!(matches!(
        seq.submit(vec![0; MAX_ENTRY_BYTES + 1]),
        Err(SubmitError::Invalid(_))
    ));
    let log = seq.shutdown().unwrap();
    assert_eq!(log.size(), 1200);
}

/// A store whose appends wait for a go-ahead (and can be told to fail), to
/// hold the writer inside a batch.
struct Gated {
    inner: SqliteStore,
    gate: Arc<Mutex<mpsc::Receiver<bool>>>,
}

impl LogStore for Gated {
    fn size(&self) -> Result<u64, StoreError> {
        self.inner.size()
    }
    fn append(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let ok = self.gate.lock().unwrap().recv().unwrap();
        if ok {
            self.inner.append(batch)
        } else {
            Err(StoreError::Io("injected failure".into()))
        }
    }
    fn entries(&self, s: u64, e: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.entries(s, e)
    }
    fn node_hash(&self, l: u8, i: u64) -> Result<Hash, StoreError> {
        self.inner.node_hash(l, i)
    }
    fn node_count(&self) -> Result<u64, StoreError> {
        self.inner.node_count()
    }
    fn checkpoint(&self, s: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.checkpoint(s)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.inner.latest_checkpoint()
    }
    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        self.inner.checkpoint_sizes()
    }
    fn close(&mut self) -> Result<(), StoreError> {
        self.inner.close()
    }
}

#[test]
fn a_full_queue_says_busy_and_a_failed_batch_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (go, gate) = mpsc::channel();
    let store = Gated {
        inner: SqliteStore::open(&dir.path().join("log.db")).unwrap(),
        gate: Arc::new(Mutex::new(gate)),
    };
    let config = SequencerConfig {
        max_batch: 1,
        max_wait: Duration::ZERO,
        queue_capacity: 1,
    };
    let seq = Sequencer::start(Log::open(store, key()).unwrap(), config).unwrap();
    let (tx, results) = mpsc::channel();
    let t1 = tx.clone();
    seq.submit_with(b"first".to_vec(), move |r| t1.send(("first", r)).unwrap())
        .unwrap();
    // Wait until the writer holds "first" inside append, so the queue is empty.
    std::thread::sleep(Duration::from_millis(100));
    let t2 = tx.clone();
    seq.submit_with(b"second".to_vec(), move |r| t2.send(("second", r)).unwrap())
        .unwrap();
    let third = seq.submit_with(b"third".to_vec(), |_| panic!("a refused entry must not get a reply"));
    assert_eq!(third, Err(SubmitError::Busy(1)));

    go.send(false).unwrap(); // "first" fails in storage
    go.send(true).unwrap(); // "second" is written
    let mut replies: Vec<_> = (0..2)
        .map(|_| results.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    replies.sort_by_key(|(n, _)| *n);
    assert!(
        matches!(&replies[0], ("first", Err(SubmitError::Failed(StoreError::Io(_))))),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[1], ("second", Ok(Receipt { index: 0, size: 1, .. }))),
        "{replies:?}"
    );
    let log = seq.shutdown().unwrap();
    assert_eq!(log.store().entries(0, 1).unwrap(), vec![b"second".to_vec()]);
    audit(log.store(), &policy()).unwrap();
}

/// A store written by schema version 1 (nodes keyed by level and index) opens, is
/// migrated in place to version 2, keeps its root and every proof, and takes appends.
#[test]
fn a_version_1_store_is_migrated_and_keeps_its_tree() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("log.db");
    let mut log = open_log(&db);
    for chunk in 0..7u64 {
        log.append(&entries(chunk * 100..chunk * 100 + 37 + chunk)).unwrap();
    }
    let (size, root) = (log.size(), log.root());
    log.close().unwrap();
    // Turn it back into what version 1 wrote.
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(
            "BEGIN;
             CREATE TABLE v1 (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
                              PRIMARY KEY (level, idx)) WITHOUT ROWID;
             INSERT INTO v1 SELECT pos & 63, (((pos >> 6) + 1) >> (pos & 63)) - 1, hash FROM nodes;
             DROP TABLE nodes;
             ALTER TABLE v1 RENAME TO nodes;
             PRAGMA user_version = 1;
             COMMIT;",
        )
        .unwrap();
    }
    // A reader does not migrate; it names the versions.
    match SqliteStore::open_read_only(&db) {
        Err(StoreError::Schema(m)) => assert!(m.contains("version 1") && m.contains("version 2"), "{m}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let mut log = open_log(&db);
    assert_eq!((log.size(), log.root()), (size, root));
    let report = audit(log.store(), &policy()).unwrap();
    assert_eq!(report.root, root);
    log.append(&entries(1000..1100)).unwrap();
    let report = audit(log.store(), &policy()).unwrap();
    assert_eq!(report.root, log.root());
    let version: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 2);
}
