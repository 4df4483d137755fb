//! Durable appends per second and acknowledgement latency, group commit
//! (the sequencer) against a naive one-transaction-per-entry baseline, with
//! 1, 16 and 256 concurrent submitters and 256-byte entries, measured in the
//! same run on the same disk.
//!
//! `cargo bench -p modelgate-store --bench store` (MODELGATE_BENCH_SECS sets
//! the seconds per case, default 5; MODELGATE_BENCH_DIR the directory for
//! the databases, default the system temp dir). Prints a Markdown table.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelgate_store::{Log, Sequencer, SequencerConfig, SqliteStore, SubmitError};
use modelgate_tlog::{KeyType, SignerKey};

const ENTRY: usize = 256;

fn key() -> SignerKey {
    SignerKey::from_seed("bench.example/log", KeyType::Ed25519, &[1; 32]).unwrap()
}

fn entry(t: usize, n: u64) -> Vec<u8> {
    let mut e = format!("{t}-{n}-").into_bytes();
    e.resize(ENTRY, b'x');
    e
}

struct Result {
    appends: u64,
    secs: f64,
    latencies: Vec<Duration>,
    busy: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Run `submitters` threads for `secs`, each calling `op` in a loop.
fn drive(submitters: usize, secs: f64, op: Arc<dyn Fn(usize, u64) -> bool + Send + Sync>) -> Result {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..submitters)
        .map(|t| {
            let stop = Arc::clone(&stop);
            let op = Arc::clone(&op);
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut busy = 0;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    if op(t, n) {
                        lat.push(t0.elapsed());
                        n += 1;
                    } else {
                        busy += 1;
                        std::thread::yield_now();
                    }
                }
                (lat, busy)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut busy = 0;
    for t in threads {
        let (l, b) = t.join().unwrap();
        latencies.extend(l);
        busy += b;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort();
    Result {
        appends: latencies.len() as u64,
        secs,
        latencies,
        busy,
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // useful either; only run the measurement when asked to bench.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let base = std::env::var_os("MODELGATE_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!("| mode | submitters | durable appends/s | p50 ms | p99 ms | appends | busy retries |");
    println!("|---|---|---|---|---|---|---|");
    for submitters in [1usize, 16, 256] {
        for mode in ["naive: 1 transaction per entry", "group commit (sequencer)"] {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let store = SqliteStore::open(&dir.path().join("log.db")).unwrap();
            let log = Log::open(store, key()).unwrap();
            let r = if mode.starts_with("naive") {
                let log = Arc::new(Mutex::new(log));
                drive(
                    submitters,
                    secs,
                    Arc::new(move |t, n| {
                        log.lock().unwrap().append(&[entry(t, n)]).unwrap();
                        true
                    }),
                )
            } else {
                let seq = Arc::new(Sequencer::start(log, SequencerConfig::default()).unwrap());
                let s2 = Arc::clone(&seq);
                let r = drive(
                    submitters,
                    secs,
                    Arc::new(move |t, n| match s2.submit(entry(t, n)) {
                        Ok(_) => true,
                        Err(SubmitError::Busy(_)) => false,
                        Err(e) => panic!("{e}"),
                    }),
                );
                drop(seq);
                r
            };
            println!(
                "| {mode} | {submitters} | {:.0} | {:.2} | {:.2} | {} | {} |",
                r.appends as f64 / r.secs,
                percentile(&r.latencies, 0.50).as_secs_f64() * 1e3,
                percentile(&r.latencies, 0.99).as_secs_f64() * 1e3,
                r.appends,
                r.busy
            );
        }
    }
}
