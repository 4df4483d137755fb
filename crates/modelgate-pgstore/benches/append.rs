//! Durable appends on PostgreSQL against SQLite, same entries, same run,
//! same machine: one entry per commit one after another (what a commit
//! costs: appends/s, p50, p99), then group commit (the `Sequencer`) with 16
//! concurrent submitters (entries/s, acknowledgement p50 and p99).
//!
//! `cargo bench -p modelgate-pgstore --bench append` against
//! MODELGATE_POSTGRES_URL, or a throwaway cluster `scripts/postgres.sh`
//! starts (MODELGATE_BENCH_SECS per group-commit case, default 5;
//! MODELGATE_BENCH_DIR holds the SQLite file, default /var/tmp).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate_pgstore::PgStore;
use modelgate_store::{Log, LogStore, Sequencer, SequencerConfig, SqliteStore};
use modelgate_tlog::{KeyType, SignerKey};

const ENTRY: usize = 600;
const SUBMITTERS: usize = 16;

fn key() -> SignerKey {
    SignerKey::from_seed("bench.example/log", KeyType::Ed25519, &[1; 32]).unwrap()
}

fn entry(t: usize, n: u64) -> Vec<u8> {
    let mut e = format!("{t}-{n}-").into_bytes();
    e.resize(ENTRY, b'x');
    e
}

fn ms(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
}

/// One entry per commit, `n` times: (appends/s, p50 ms, p99 ms).
fn one_by_one<S: LogStore>(store: S, n: u64) -> (f64, f64, f64) {
    let mut log = Log::open(store, key()).unwrap();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    for k in 0..n {
        let t = Instant::now();
        log.append(&[entry(0, k)]).unwrap();
        lat.push(t.elapsed());
    }
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    (rate, ms(&lat, 0.5), ms(&lat, 0.99))
}

/// Group commit with SUBMITTERS threads for `secs`: (entries/s, p50 ms, p99 ms).
fn grouped<S: LogStore + 'static>(store: S, secs: f64) -> (f64, f64, f64) {
    let seq = Arc::new(Sequencer::start(Log::open(store, key()).unwrap(), SequencerConfig::default()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let handles: Vec<_> = (0..SUBMITTERS)
        .map(|t| {
            let (seq, stop) = (Arc::clone(&seq), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut n = 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let t1 = Instant::now();
                    seq.submit(entry(t, n)).unwrap();
                    lat.push(t1.elapsed());
                    n += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let rate = lat.len() as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    (rate, ms(&lat, 0.5), ms(&lat, 0.99))
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let server = modelgate_testkit::postgres::Server::or_start();
    let dir =
        tempfile::tempdir_in(std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let n = 2000;
    let sqlite_one = one_by_one(SqliteStore::open(&dir.path().join("one.db")).unwrap(), n);
    let pg = server.database("mg_bench_one");
    let pg_one = one_by_one(PgStore::open_writer(&pg, "bench", Duration::from_secs(600)).unwrap(), n);
    let sqlite_grouped = grouped(SqliteStore::open(&dir.path().join("grouped.db")).unwrap(), secs);
    let pg = server.database("mg_bench_grouped");
    let pg_grouped = grouped(
        PgStore::open_writer(&pg, "bench", Duration::from_secs(600)).unwrap(),
        secs,
    );
    println!("| case ({ENTRY}-byte entries) | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    for (what, (rate, p50, p99)) in [
        ("SQLite, one entry per commit (baseline)", sqlite_one),
        ("PostgreSQL, one entry per commit", pg_one),
        ("SQLite, group commit, 16 submitters (baseline)", sqlite_grouped),
        ("PostgreSQL, group commit, 16 submitters", pg_grouped),
    ] {
        println!("| {what} | {rate:.0} | {p50:.2} | {p99:.2} |");
    }
    println!(
        "PostgreSQL / SQLite: {:.2}x one by one, {:.2}x with group commit",
        pg_one.0 / sqlite_one.0,
        pg_grouped.0 / sqlite_grouped.0
    );
}
