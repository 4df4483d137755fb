//! Lineage replication keeping up with a busy node, in one process:
//!
//! A writer appends RATE lineage records per second to a real node lineage
//! log (`StoreLineage`, group commit, fsync) — a node serving RATE/2 calls/s
//! writes a request and a completion record per call — for SECS seconds,
//! while the real replicator (`replicate::step`, every 100 ms, batches of up
//! to 5,000) ships them to the authority's real `Lineage` (mirror append with
//! fsync, index). The authority side is called in-process instead of over
//! HTTP: the figures are the authority's own CPU per replicated record and
//! the lag (records written but not yet held by the authority) at the end of
//! the run. The baseline, in the same run, is the node's own cost: the CPU of
//! its lineage writer per record.
//!
//! `cargo bench -p modelgate-runtime --bench replication`
//! (MODELGATE_BENCH_RATE, default 10,000 records/s; MODELGATE_BENCH_SECS, default 60).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelgate_authority::lineage::{Lineage, LineageBatch};
use modelgate_node::FetchError;
use modelgate_runtime::authority::AuthorityClient;
use modelgate_runtime::lineage::{LineageLog, StoreLineage};
use modelgate_tlog::{KeyType, SignerKey};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time of the calling thread, from the scheduler's account.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(s.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0))
}

/// CPU time of every thread whose name starts with `prefix`.
fn threads_cpu(prefix: &str) -> Duration {
    let mut total = Duration::ZERO;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            let s = std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default();
            total += Duration::from_nanos(s.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0));
        }
    }
    total
}

/// The authority, in-process: `Lineage` behind the two calls the
/// replicator makes, with the CPU each ingest took.
struct InProcess {
    lineage: Lineage,
    key: String,
    cpu: Mutex<Duration>,
}

impl AuthorityClient for InProcess {
    fn get(&self, _path: &str, _limit: u64) -> Result<(u16, Vec<u8>), FetchError> {
        let size = self.lineage.size("node-1", &self.key).unwrap();
        Ok((200, serde_json::to_vec(&serde_json::json!({ "size": size })).unwrap()))
    }

    fn post(&self, _path: &str, _content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>), FetchError> {
        let c0 = thread_cpu();
        let batch: LineageBatch = serde_json::from_slice(body).unwrap();
        let r = self.lineage.ingest("node-1", &self.key, None, &batch, 0);
        *self.cpu.lock().unwrap() += thread_cpu() - c0;
        match r {
            Ok(size) => Ok((200, serde_json::to_vec(&serde_json::json!({ "size": size })).unwrap())),
            Err(e) => Ok((422, e.to_string().into_bytes())),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("in-process{path}")
    }
}

fn main() {
    let rate = env("MODELGATE_BENCH_RATE", 10_000);
    let secs = env("MODELGATE_BENCH_SECS", 60);
    let dir = tempfile::tempdir().unwrap();
    let key = SignerKey::from_seed("node-1/lineage", KeyType::Ed25519, &[3; 32]).unwrap();
    let node_log = Arc::new(StoreLineage::open(&dir.path().join("lineage.db"), &key).unwrap());
    let authority = Arc::new(InProcess {
        lineage: Lineage::open(&dir.path().join("authority-lineage")).unwrap(),
        key: key.verifier().to_string(),
        cpu: Mutex::new(Duration::ZERO),
    });

    // The writer: RATE records a second, in 10 ms slices, without waiting
    // for durability (as the gateway's completions are written).
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (log, written, stop) = (Arc::clone(&node_log), Arc::clone(&written), Arc::clone(&stop));
        std::thread::spawn(move || {
            let start = Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                while n < due {
                    let rec = serde_json::to_vec(&serde_json::json!({
                        "endpoint": "chat", "principal": format!("caller-{}", n % 100), "scope": "prod/credit/scoring",
                        "request_sha256": format!("{:064x}", n), "model": "credit", "digest": format!("{:064x}", 7),
                        "governance": {"size": 100, "root": "00", "state_digest": "00"},
                        "type": if n.is_multiple_of(2) { "request" } else { "completion" }, "time": 1_790_000_000 + n / rate,
                        "node": "node-1", "approval": format!("{:064x}", 9), "policies": ["permit"], "trace_id": format!("{:032x}", n),
                    }))
                    .unwrap();
                    loop {
                        let counter = Arc::clone(&written);
                        let queued = log.append_then(
                            rec.clone(),
                            Box::new(move |r| {
                                if r.is_ok() {
                                    counter.fetch_add(1, Ordering::Relaxed);
                                }
                            }),
                        );
                        if queued.is_ok() {
                            break;
                        }
                        // The writer's queue is full: wait for it.
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // The replicator, stepping every 100 ms (and at once while it ships).
    let shipped = Arc::new(AtomicU64::new(0));
    let r = {
        let (log, auth, shipped, stop, key) = (
            Arc::clone(&node_log),
            Arc::clone(&authority),
            Arc::clone(&shipped),
            Arc::clone(&stop),
            key.clone(),
        );
        std::thread::Builder::new()
            .name("bench-replicator".into())
            .spawn(move || {
                let mut known = None;
                while !stop.load(Ordering::SeqCst) {
                    match modelgate_runtime::replicate::step("node-1", &key, &*log, &*auth, &mut known) {
                        modelgate_runtime::replicate::Step::Shipped(n) => {
                            shipped.store(n, Ordering::Relaxed);
                            continue;
                        }
                        modelgate_runtime::replicate::Step::Failed(e) => panic!("replication failed: {e}"),
                        modelgate_runtime::replicate::Step::Idle => {}
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
            .unwrap()
    };

    let writer_cpu0 = threads_cpu("modelgate-seq");
    let started = Instant::now();
    let mut max_lag = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(250));
        let lag = written
            .load(Ordering::Relaxed)
            .saturating_sub(shipped.load(Ordering::Relaxed));
        max_lag = max_lag.max(lag);
    }
    let at_end_written = written.load(Ordering::Relaxed);
    let at_end_shipped = shipped.load(Ordering::Relaxed);
    let writer_cpu = threads_cpu("modelgate-seq") - writer_cpu0;
    stop.store(true, Ordering::SeqCst);
    w.join().unwrap();
    r.join().unwrap();
    let auth_cpu = *authority.cpu.lock().unwrap();
    let n = at_end_shipped.max(1);
    println!("rate {rate} records/s ({} calls/s) for {secs} s", rate / 2);
    println!("written {at_end_written}, held by the authority {at_end_shipped}, lag at the end {} records ({:.2} s), max lag seen {max_lag}",
        at_end_written.saturating_sub(at_end_shipped),
        at_end_written.saturating_sub(at_end_shipped) as f64 / rate as f64);
    println!(
        "authority CPU per replicated record: {:.1} µs (ingest: verify, mirror append with fsync, index)",
        auth_cpu.as_secs_f64() * 1e6 / n as f64
    );
    println!(
        "baseline: node lineage writer CPU per record: {:.1} µs (its group-commit thread)",
        writer_cpu.as_secs_f64() * 1e6 / at_end_written.max(1) as f64
    );
    println!(
        "authority CPU share of one core at this rate: {:.0}%",
        auth_cpu.as_secs_f64() / secs as f64 * 100.0
    );
}
