//! Durable appends per second and acknowledgement latency, group commit
//! (the sequencer) against a naive one-transaction-per-entry baseline, with
//! 1, 16 and 256 concurrent submitters and 256-byte entries, measured in the
//! same run on the same disk.
//!
//! `cargo bench -p modelgate-store --bench store` (MODELGATE_BENCH_SECS sets
//! the seconds per case, default 5; MODELGATE_BENCH_DIR the directory for
//! the databases, default the system temp dir). Prints a Markdown table.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
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

/// CPU seconds (user + system) used so far by this process's sequencer
/// threads, from /proc: the writer's cost per append, apart from the
/// submitters' own work. 0 where /proc is missing.
fn sequencer_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut secs = 0.0;
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with("modelgate-seque") {
            secs += task_cpu(&t.path());
        }
    }
    secs
}

/// CPU seconds (user + system) of the calling thread.
fn own_cpu() -> f64 {
    task_cpu(Path::new("/proc/thread-self"))
}

/// CPU seconds (user + system) of one task, from its /proc `stat`.
fn task_cpu(task: &Path) -> f64 {
    let tick = 100.0; // USER_HZ: Linux reports task times in 1/100 s.
    let stat = std::fs::read_to_string(task.join("stat")).unwrap_or_default();
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    ticks as f64 / tick
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
    if std::env::var("MODELGATE_BENCH_PARTS").is_ok_and(|p| p.contains("paced")) {
        paced(&base, secs);
        return;
    }
    println!("| mode | submitters | durable appends/s | p50 ms | p99 ms | appends | busy retries | sequencer CPU µs/append |");
    println!("|---|---|---|---|---|---|---|---|");
    for submitters in [1usize, 16, 256] {
        for mode in ["naive: 1 transaction per entry", "group commit (sequencer)"] {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let store = SqliteStore::open(&dir.path().join("log.db")).unwrap();
            let log = Log::open(store, key()).unwrap();
            let (r, cpu) = if mode.starts_with("naive") {
                let log = Arc::new(Mutex::new(log));
                let r = drive(
                    submitters,
                    secs,
                    Arc::new(move |t, n| {
                        log.lock().unwrap().append(&[entry(t, n)]).unwrap();
                        true
                    }),
                );
                (r, None)
            } else {
                let seq = Arc::new(Sequencer::start(log, SequencerConfig::default()).unwrap());
                let cpu0 = sequencer_cpu();
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
                let cpu = sequencer_cpu() - cpu0;
                drop(seq);
                (r, Some(cpu))
            };
            println!(
                "| {mode} | {submitters} | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
                r.appends as f64 / r.secs,
                percentile(&r.latencies, 0.50).as_secs_f64() * 1e3,
                percentile(&r.latencies, 0.99).as_secs_f64() * 1e3,
                r.appends,
                r.busy,
                cpu.map_or("—".to_owned(), |c| format!(
                    "{:.1}",
                    c * 1e6 / r.appends.max(1) as f64
                ))
            );
        }
    }
}

/// Appends at fixed rates from one submitter, as a node's gateway makes them (one
/// record per call, ~600 bytes, each waited for), with the raw disk's latency for one
/// 4 KiB write + fdatasync measured beside it at the same rate.
fn paced(base: &Path, secs: f64) {
    println!("| store | rate/s | calls | p50 ms | p99 ms | p99.9 ms | max ms | > 5 ms | writer CPU µs/record |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for rate in [1_000u64, 5_000] {
        let dir = tempfile::tempdir_in(base).unwrap();
        let raw = {
            use std::os::unix::fs::FileExt as _;
            let f = std::fs::File::create(dir.path().join("raw")).unwrap();
            let buf = vec![7u8; 4096];
            let mut off = 0u64;
            let cpu0 = own_cpu();
            let lat = pace(rate, secs, |_| {
                f.write_all_at(&buf, off).unwrap();
                f.sync_data().unwrap();
                off += 4096;
            });
            let cpu = (own_cpu() - cpu0) / lat.len().max(1) as f64;
            (lat, cpu)
        };
        // Its CPU is the appending thread's (pacing included: a sleep and a clock read).
        report("raw file: 4 KiB append + fdatasync", rate, raw.0, Some(raw.1));
        let store = SqliteStore::open(&dir.path().join("log.db")).unwrap();
        let seq = Sequencer::start(Log::open(store, key()).unwrap(), SequencerConfig::default()).unwrap();
        let cpu0 = sequencer_cpu();
        let lat = pace(rate, secs, |n| {
            let mut e = format!("record-{n}-").into_bytes();
            e.resize(600, b'x');
            seq.submit(e).unwrap();
        });
        let cpu = (sequencer_cpu() - cpu0) / lat.len().max(1) as f64;
        report("SqliteStore through the sequencer", rate, lat, Some(cpu));
        drop(seq);
        let (lat, cpu) = node_like(&dir.path().join("big.db"), rate, secs);
        report(
            "SqliteStore, node-like: log of 300k, 2 records per call, a reader every 250 ms",
            rate,
            lat,
            Some(cpu),
        );
    }
}

/// What a gateway node does to its lineage store: a log already holding 300,000
/// records, a request record waited for and a completion record queued per call, and a
/// reader (proofs, anchoring) looking at the latest checkpoint every 250 ms.
/// Returns the calls' latencies and the sequencer's CPU seconds per record.
fn node_like(path: &Path, rate: u64, secs: f64) -> (Vec<Duration>, f64) {
    let record = |n: u64| {
        let mut e = format!("record-{n}-").into_bytes();
        e.resize(600, b'x');
        e
    };
    {
        let mut log = Log::open(SqliteStore::open(path).unwrap(), key()).unwrap();
        for chunk in 0..300u64 {
            let batch: Vec<Vec<u8>> = (0..1000).map(|i| record(chunk * 1000 + i)).collect();
            log.append(&batch).unwrap();
        }
    }
    let seq = Sequencer::start(
        Log::open(SqliteStore::open(path).unwrap(), key()).unwrap(),
        SequencerConfig::default(),
    )
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        let path = path.to_owned();
        std::thread::spawn(move || {
            let mut r = SqliteStore::open_read_only(&path).unwrap();
            while !stop.load(Ordering::Relaxed) {
                use modelgate_store::LogStore as _;
                r.refresh_size().unwrap();
                r.latest_checkpoint().unwrap();
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let cpu0 = sequencer_cpu();
    let lat = pace(rate, secs, |n| {
        seq.submit(record(n)).unwrap();
        seq.submit_with(record(n), |r| {
            r.unwrap();
        })
        .unwrap();
    });
    // Read while the thread lives (its /proc entry goes with it); at most a
    // few queued completion records are still unwritten here.
    let cpu = (sequencer_cpu() - cpu0) / (2 * lat.len()).max(1) as f64;
    drop(seq);
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    (lat, cpu)
}

/// Calls `op` `rate` times a second for `secs` on one thread (each call waited for,
/// the schedule kept: a slow call is followed by catch-up calls), returning latencies.
fn pace(rate: u64, secs: f64, mut op: impl FnMut(u64)) -> Vec<Duration> {
    let total = (rate as f64 * secs) as u64;
    let start = Instant::now();
    let mut lat = Vec::with_capacity(total as usize);
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let t0 = Instant::now();
        op(n);
        lat.push(t0.elapsed());
    }
    lat.sort();
    lat
}

fn report(what: &str, rate: u64, lat: Vec<Duration>, cpu: Option<f64>) {
    let ms = |p| percentile(&lat, p).as_secs_f64() * 1e3;
    let slow = lat.iter().filter(|d| d.as_millis() >= 5).count();
    println!(
        "| {what} | {rate} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}% | {} |",
        lat.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        lat.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        slow as f64 * 100.0 / lat.len().max(1) as f64,
        cpu.map_or("—".to_owned(), |c| format!("{:.1}", c * 1e6))
    );
}
