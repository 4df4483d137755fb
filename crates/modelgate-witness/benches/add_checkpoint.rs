//! A witness's add-checkpoint throughput, in process: one log growing by
//! one entry per request (each request carries the consistency proof from
//! the size the witness recorded), every request verified, recorded durably
//! (SQLite, synchronous = FULL, fsync) and cosigned. Baseline in the same
//! run, same directory: the bare durable write — one row upserted and
//! committed per transaction, nothing verified or signed.
//!
//! `cargo bench -p modelgate-witness --bench add_checkpoint`
//! (MODELGATE_BENCH_N, default 2,000 requests; MODELGATE_BENCH_DIR, default /var/tmp).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use modelgate_tlog::{consistency_proof, leaf_hash, Checkpoint, KeyType, MemoryTree, SignerKey};
use modelgate_witness::{AddCheckpoint, Witness};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("MODELGATE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir =
        tempfile::tempdir_in(std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let log = SignerKey::from_seed("bench.example/log", KeyType::Ed25519, &[7; 32]).unwrap();
    modelgate_witness::init(&dir.path().join("w"), "bench.example/witness").unwrap();
    let w = Witness::open(&dir.path().join("w"), vec![log.verifier()]).unwrap();

    // The requests, made before the timed loop (a log's own signing is not the witness's cost).
    let mut tree = MemoryTree::new();
    let mut bodies = Vec::new();
    for i in 0..n {
        let old = tree.size();
        tree.append(leaf_hash(&i.to_be_bytes()));
        let note = Checkpoint {
            origin: log.name().into(),
            size: tree.size(),
            root: tree.root(),
            extensions: vec![],
        }
        .sign(&log)
        .unwrap()
        .to_bytes();
        let proof = consistency_proof(old, tree.size(), &tree).unwrap();
        bodies.push(AddCheckpoint { old, proof, note }.to_bytes());
    }
    let mut lat = Vec::with_capacity(bodies.len());
    let t = Instant::now();
    for b in &bodies {
        let s = Instant::now();
        w.add_checkpoint(b).unwrap();
        lat.push(s.elapsed());
    }
    let took = t.elapsed();

    // Baseline: the durable write alone.
    let c = rusqlite::Connection::open(dir.path().join("baseline.db")).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE logs (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, checkpoint BLOB NOT NULL);",
    )
    .unwrap();
    let mut base = Vec::with_capacity(bodies.len());
    let tb = Instant::now();
    for (i, b) in bodies.iter().enumerate() {
        let s = Instant::now();
        c.execute(
            "INSERT INTO logs VALUES ('o', ?1, ?2, ?3) ON CONFLICT(origin) DO UPDATE SET size = excluded.size,
             root = excluded.root, checkpoint = excluded.checkpoint",
            rusqlite::params![i as i64, &[0u8; 32][..], b],
        )
        .unwrap();
        base.push(s.elapsed());
    }
    let took_base = tb.elapsed();
    println!("{n} add-checkpoint requests, one log growing by one entry each:");
    println!(
        "  witness: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms (verify signature and proof, durable record, cosign)",
        n as f64 / took.as_secs_f64(),
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    println!(
        "  baseline, the durable write alone: {:.0} commits/s, p50 {:.2} ms, p99 {:.2} ms",
        n as f64 / took_base.as_secs_f64(),
        pct(&mut base, 0.5),
        pct(&mut base, 0.99)
    );
}
