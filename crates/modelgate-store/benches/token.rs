//! Keys on a PKCS#11 token against key files, in the same run: the latency
//! of one signature (an Ed25519 checkpoint; a P-256 model-signing digest) by
//! a key file and by SoftHSM2, and durable appends per second through the
//! sequencer with the log key as a file and on SoftHSM2 (8 and 256
//! submitters, 256-byte entries; a checkpoint is signed once per batch).
//! Rounds are interleaved so that the disk's drift falls on both.
//!
//! `cargo bench -p modelgate-store --bench token` (MODELGATE_BENCH_SECS per
//! append case, default 5; MODELGATE_BENCH_DIR for the databases, default
//! /var/tmp). Needs Debian's softhsm2 and opensc. Prints Markdown tables.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate_store::{Log, Sequencer, SequencerConfig, SqliteStore, SubmitError};
use modelgate_testkit::softhsm::{SoftHsm, MODULE};
use modelgate_tlog::{Checkpoint, KeyType, SignerKey};

const ORIGIN: &str = "bench.example/log";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

/// p50 and p99 of `n` calls of `f`, in µs.
fn latency(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut lat: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    lat.sort();
    (pct(&lat, 0.5), pct(&lat, 0.99))
}

/// Durable appends per second and p99 (ms) with `submitters` threads for `secs`.
fn appends(key: &SignerKey, dir: &std::path::Path, name: &str, submitters: usize, secs: f64) -> (f64, f64) {
    let store = SqliteStore::open(&dir.join(format!("{name}.db"))).unwrap();
    let seq = Arc::new(Sequencer::start(Log::open(store, key.clone()).unwrap(), SequencerConfig::default()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..submitters)
        .map(|t| {
            let (seq, stop, done) = (Arc::clone(&seq), Arc::clone(&stop), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut e = format!("{t}-{n}-").into_bytes();
                    e.resize(256, b'x');
                    let t0 = Instant::now();
                    match seq.submit(e) {
                        Ok(_) => {
                            lat.push(t0.elapsed());
                            done.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                        }
                        Err(SubmitError::Busy(_)) => std::thread::yield_now(),
                        Err(e) => panic!("{e}"),
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    (done.load(Ordering::Relaxed) as f64 / secs, pct(&lat, 0.99) / 1000.0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5.0);
    let base = std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let hsm = SoftHsm::new(&dir.path().join("hsm"), "1234");
    // The module reads its configuration when loaded: set before any key opens.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    std::env::set_var(modelgate_signer::pkcs11::MODULE_ENV, MODULE);
    hsm.add_token("bench");
    hsm.keygen("bench", "log", "EC:edwards25519");
    hsm.keygen("bench", "model", "EC:prime256v1");

    let file = SignerKey::from_seed(ORIGIN, KeyType::Ed25519, &[7; 32]).unwrap();
    let token = SignerKey::from_token(ORIGIN, KeyType::Ed25519, &hsm.uri("bench", "log")).unwrap();
    let text = Checkpoint {
        origin: ORIGIN.into(),
        size: 1_234_567,
        root: [9; 32],
        extensions: vec![],
    }
    .to_text();
    let p256_file = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
    let p256_token = modelgate_signer::open_token(&hsm.uri("bench", "model"), None).unwrap();
    let digest = [5u8; 32];

    println!("| signature | key | p50 µs | p99 µs |");
    println!("|---|---|---|---|");
    for round in 0..2 {
        let (a, b) = latency(2000, || {
            file.sign(&text).unwrap();
        });
        let (c, d) = latency(2000, || {
            token.sign(&text).unwrap();
        });
        let (e, f) = latency(2000, || {
            let _: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(&p256_file, &digest);
        });
        let (g, h) = latency(2000, || {
            p256_token.sign(&digest).unwrap();
        });
        println!("| Ed25519 checkpoint (round {round}) | file | {a:.1} | {b:.1} |");
        println!("| Ed25519 checkpoint (round {round}) | SoftHSM2 | {c:.1} | {d:.1} |");
        println!("| ECDSA P-256 (round {round}) | file | {e:.1} | {f:.1} |");
        println!("| ECDSA P-256 (round {round}) | SoftHSM2 | {g:.1} | {h:.1} |");
    }

    println!();
    println!("| submitters | round | file key appends/s | p99 ms | SoftHSM2 key appends/s | p99 ms | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for submitters in [8usize, 256] {
        let (mut sf, mut st) = (0.0, 0.0);
        for round in 0..3 {
            let (f, fp) = appends(
                &file,
                dir.path(),
                &format!("file-{submitters}-{round}"),
                submitters,
                secs,
            );
            let (t, tp) = appends(
                &token,
                dir.path(),
                &format!("token-{submitters}-{round}"),
                submitters,
                secs,
            );
            sf += f;
            st += t;
            println!(
                "| {submitters} | {round} | {f:.0} | {fp:.2} | {t:.0} | {tp:.2} | {:.2} |",
                t / f
            );
        }
        println!(
            "| {submitters} | all | {:.0} | | {:.0} | | **{:.2}** |",
            sf / 3.0,
            st / 3.0,
            st / sf
        );
    }
}
