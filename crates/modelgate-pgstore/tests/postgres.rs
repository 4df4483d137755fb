//! The PostgreSQL store against a real server (MODELGATE_POSTGRES_URL, set
//! by scripts/test.sh from scripts/postgres.sh; missing, these tests fail):
//! the same contract as the SQLite store — appends readable as entries,
//! nodes, tiles and checkpoints, an audit that passes, a reopened store at
//! the same size — and the sequencer lease: one holder at a time, and a
//! deposed or expired holder can never commit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use modelgate_pgstore::PgStore;
use modelgate_store::{audit, read_tile, Log, LogStore, StoreError};
use modelgate_tlog::{leaf_hash, CheckpointPolicy, KeyType, MemoryTree, SignerKey, TileId};

const ORIGIN: &str = "pg.example/log";

fn key() -> SignerKey {
    SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[4; 32]).unwrap()
}

fn policy() -> CheckpointPolicy {
    CheckpointPolicy::new(key().verifier(), vec![], 0).unwrap()
}

fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range.map(|i| format!("entry {i}").into_bytes()).collect()
}

/// A database of its own on the test server, dropped afterwards.
struct Db {
    admin: String,
    name: String,
    url: String,
}

impl Db {
    fn new() -> Self {
        let admin = std::env::var("MODELGATE_POSTGRES_URL").unwrap_or_else(|_| {
            panic!(
                "MODELGATE_POSTGRES_URL is not set: these tests need a PostgreSQL server \
                 (scripts/test.sh starts one with scripts/postgres.sh)"
            )
        });
        let mut b = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
        let name = format!("mg_test_{}", hex::encode(b));
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self { admin, name, url }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

#[test]
fn appends_are_durable_readable_and_audit_clean() {
    let db = Db::new();
    let store = PgStore::open_writer(&db.url, "test-writer", Duration::from_secs(30)).unwrap();
    let mut log = Log::open(store, key()).unwrap();
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
    let store = log.into_store();
    assert_eq!(store.entries(5, 9).unwrap(), entries(5..9));
    assert!(store.entries(560, 566).is_err(), "beyond the log");
    let tile = read_tile(
        &store,
        TileId {
            level: 0,
            index: 1,
            width: 256,
        },
    )
    .unwrap();
    assert_eq!(tile.len(), 256 * 32);
    assert_eq!(store.checkpoint_sizes().unwrap(), vec![1, 8, 264, 564, 565]);
    let report = audit(&store, &policy()).unwrap();
    assert_eq!(report.entries, 565);
    let latest = store.latest_checkpoint().unwrap().unwrap();
    drop(store);

    // Another process's view: the same log, the same checkpoint, audit clean.
    let reader = PgStore::open_reader(&db.url).unwrap();
    assert_eq!(reader.size().unwrap(), 565);
    assert_eq!(reader.latest_checkpoint().unwrap().unwrap(), latest);
    audit(&reader, &policy()).unwrap();
}

#[test]
fn one_sequencer_at_a_time_and_a_deposed_one_never_commits() {
    let db = Db::new();
    let a = PgStore::open_writer(&db.url, "a", Duration::from_millis(1500)).unwrap();
    assert_eq!(a.lease().unwrap().token, 1);
    let mut log_a = Log::open(a, key()).unwrap();
    log_a.append(&entries(0..3)).unwrap();
    // While a's lease runs, nobody else sequences.
    match PgStore::open_writer(&db.url, "b", Duration::from_secs(30)) {
        Err(StoreError::Locked { path }) => assert!(path.contains("held by a"), "{path}"),
        other => panic!("a second sequencer: {:?}", other.map(|_| ())),
    }
    // a pauses past its lease; b takes over with a larger token and appends.
    std::thread::sleep(Duration::from_millis(1700));
    let b = PgStore::open_writer(&db.url, "b", Duration::from_secs(30)).unwrap();
    assert_eq!(b.lease().unwrap().token, 2);
    let mut log_b = Log::open(b, key()).unwrap();
    assert_eq!(log_b.size(), 3);
    log_b.append(&entries(3..5)).unwrap();
    // a wakes up and tries to commit: fenced, nothing written.
    match log_a.append(&entries(3..4)) {
        Err(StoreError::Fenced(why)) => assert!(why.contains("b (token 2)"), "{why}"),
        other => panic!("a deposed sequencer committed: {:?}", other.map(|d| d.size)),
    }
    let mut a = log_a.into_store();
    assert!(!a.renew("", Duration::from_secs(1)).unwrap(), "a's lease is gone");
    log_b.append(&entries(5..6)).unwrap();
    let b = log_b.into_store();
    assert_eq!(b.size().unwrap(), 6);
    audit(&b, &policy()).unwrap();
    assert_eq!(
        b.entries(0, 6).unwrap(),
        entries(0..6),
        "every index used once, by the holder of the lease"
    );
    drop(a);
}

#[test]
fn an_expired_lease_fences_until_it_is_taken_again() {
    let db = Db::new();
    let store = PgStore::open_writer(&db.url, "solo", Duration::from_millis(500)).unwrap();
    let mut log = Log::open(store, key()).unwrap();
    log.append(&entries(0..2)).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // Nobody took it, but it ran out: a paused sequencer does not commit.
    assert!(matches!(log.append(&entries(2..3)), Err(StoreError::Fenced(_))));
    let mut store = log.into_store();
    let lease = store
        .acquire("solo", "http://solo.example", Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(lease.token, 2, "taken again: a new token");
    let mut log = Log::open(store, key()).unwrap();
    log.append(&entries(2..3)).unwrap();
    audit(log.store(), &policy()).unwrap();
}

#[test]
fn a_replica_follows_and_takes_over_where_the_sequencer_stopped() {
    let db = Db::new();
    let a = PgStore::open_writer(&db.url, "a", Duration::from_secs(30)).unwrap();
    let mut seq = Log::open(a, key()).unwrap();
    seq.append(&entries(0..4)).unwrap();
    let mut replica = Log::open(PgStore::open_reader(&db.url).unwrap(), key()).unwrap();
    assert_eq!(replica.size(), 4);
    seq.append(&entries(4..9)).unwrap();
    assert_eq!(replica.resync().unwrap(), 9);
    assert_eq!(replica.root(), seq.root(), "the replica's tree is the sequencer's");
    assert!(
        replica.append(&entries(9..10)).is_err(),
        "a replica without the lease appends nothing"
    );
    // The sequencer steps down: the lease is free at once, not after its expiry.
    let mut probe = PgStore::open_reader(&db.url).unwrap();
    assert_eq!(probe.holder().unwrap().unwrap().lease.holder, "a");
    let mut a = seq.into_store();
    a.release().unwrap();
    assert!(probe.holder().unwrap().is_none());
    let lease = probe
        .acquire("b", "http://b.example:7370", Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(lease.token, 2);
    let seen = probe.holder().unwrap().unwrap();
    assert_eq!(
        (seen.lease, seen.url.as_str()),
        (lease.clone(), "http://b.example:7370")
    );
    replica.set_lease(Some(lease));
    replica.append(&entries(9..10)).unwrap();
    // The old sequencer's handle, its lease released, is fenced.
    let mut old = Log::open(a, key()).unwrap();
    assert!(old.append(&entries(10..11)).is_err());
    assert_eq!(old.resync().unwrap(), 10, "and it follows like any reader");
    audit(replica.store(), &policy()).unwrap();
}

#[test]
fn the_schema_is_versioned() {
    let db = Db::new();
    drop(PgStore::open_reader(&db.url).unwrap());
    drop(PgStore::open_reader(&db.url).unwrap());
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE modelgate_schema SET version = 99").unwrap();
    match PgStore::open_reader(&db.url) {
        Err(StoreError::Schema(m)) => assert!(m.contains("99"), "{m}"),
        other => panic!("a newer schema opened: {:?}", other.map(|_| ())),
    }
}
