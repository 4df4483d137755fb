//! The authority's costs under a large log, in-process over real TCP:
//!
//! - restart time with ENTRIES entries (30,000 approvals, 100 nodes, the rest
//!   node containment reports): with the state snapshot, against folding the
//!   whole log (the baseline, measured in the same run);
//! - durable writes per second (16 clients submitting approvals) with 8
//!   clients polling `/api/v1/state` as fast as they can, and 8 polling every
//!   100 ms (a dashboard's or a node's rate), against none, alternating;
//! - `/log/checkpoint` latency (4 clients) while a durable write is stuck
//!   (another connection holds the database's write lock), against no stall.
//!
//! `cargo bench -p modelgate-authority --bench hardening`
//! (MODELGATE_BENCH_ENTRIES, default 1,000,000; MODELGATE_BENCH_SECS, default 5;
//! MODELGATE_BENCH_DIR, default a temporary directory: a directory the bench
//! built before is reused, and its restart figures are then from its snapshot
//! only; MODELGATE_BENCH_PARTS, default "restart,writes,stall").
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../modelgate-governance/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{sign, World, AUTHORITY};
use modelgate_authority::{data::DataDir, tokens, Authority, TokenRole};
use modelgate_store::{Log, SqliteStore};
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::json;

const APPROVALS: usize = 30_000;
const NODES: usize = 100;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Sign `n` entries on every core; `make(i)` builds entry `i`.
fn parallel(n: usize, make: impl Fn(usize) -> Vec<u8> + Sync) -> Vec<Vec<u8>> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let make = &make;
                s.spawn(move || (t * chunk..((t + 1) * chunk).min(n)).map(make).collect::<Vec<_>>())
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

fn approval(w: &World, model: &str, ticket: &str) -> Vec<u8> {
    w.approval(model, &["prod/*"], (0, 4_000_000_000), "low", ticket, &[&w.alice])
}

/// An authority data directory holding `entries` entries.
fn build(dir: &Path, w: &World, entries: usize) {
    let d = DataDir::new(dir);
    std::fs::create_dir_all(dir).unwrap();
    let log_key = SignerKey::from_seed(AUTHORITY, KeyType::Ed25519, &[60; 32]).unwrap();
    let cosigner = SignerKey::from_seed(AUTHORITY, KeyType::CosignatureV1, &[61; 32]).unwrap();
    std::fs::write(d.log_key(), format!("{}\n", log_key.to_private_string())).unwrap();
    std::fs::write(d.cosigner_key(), format!("{}\n", cosigner.to_private_string())).unwrap();
    std::fs::write(d.trust_root(), w.genesis()).unwrap();
    std::fs::write(d.tokens(), "{\"tokens\":[]}\n").unwrap();
    let (model, digest) = w.model("bench", 70, &w.pipeline);
    let mut head = vec![w.genesis(), model];
    for n in 0..NODES {
        head.push(w.enroll(&format!("node-{n}"), &["prod/*"]));
    }
    let t = Instant::now();
    let approvals = parallel(APPROVALS, |i| approval(w, &digest, &format!("CHG-{i}")));
    let node_gov = ed25519_dalek::SigningKey::from_bytes(&[50; 32]);
    let reports_n = entries.saturating_sub(head.len() + APPROVALS);
    let reports = parallel(reports_n, |i| {
        sign(
            &json!({"type": "containment-report", "version": 3, "node": format!("node-{}", i % NODES),
                    "sequence": i / NODES + 1, "models": [digest], "reason": "UnauthorizedModification",
                    "check": "RuntimeIntegrityVerification", "step": "IntegrityVerification",
                    "detail": "weights.bin changed", "recovered": i % 2 == 1, "time": 1_800_000_000u64 + i as u64}),
            &[&node_gov],
        )
    });
    eprintln!(
        "signed {} entries in {:.1} s",
        head.len() + approvals.len() + reports.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut log = Log::open(SqliteStore::open(&d.store()).unwrap(), log_key).unwrap();
    let all: Vec<Vec<u8>> = head.into_iter().chain(approvals).chain(reports).collect();
    for batch in all.chunks(4096) {
        log.append(batch).unwrap();
    }
    log.close().unwrap();
    eprintln!("stored them in {:.1} s", t.elapsed().as_secs_f64());
}

struct Server {
    url: String,
    authority: Arc<Authority>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn serve(authority: Arc<Authority>) -> Server {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let a = Arc::clone(&authority);
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            modelgate_http::serve(
                listener,
                modelgate_authority::router(a),
                modelgate_http::Limits::default(),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
        });
    });
    Server {
        url: format!("http://{}", addr_rx.recv().unwrap()),
        authority,
        stop: Some(tx),
        thread: Some(thread),
    }
}

impl Server {
    fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.thread.take() {
            h.join().unwrap();
        }
        self.authority.shutdown();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Durable approvals per second from 16 clients over `secs`, with `pollers`
/// clients reading `/api/v1/state` meanwhile.
fn writes(
    s: &Server,
    token: &str,
    queue: &Arc<Mutex<Vec<Vec<u8>>>>,
    pollers: usize,
    pace: Option<Duration>,
    secs: u64,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let polls = Arc::new(AtomicU64::new(0));
    let mut hs = vec![];
    for _ in 0..pollers {
        let (url, stop, polls) = (s.url.clone(), Arc::clone(&stop), Arc::clone(&polls));
        hs.push(std::thread::spawn(move || {
            let a = agent();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(mut r) = a.get(&format!("{url}/api/v1/state")).call() {
                    let _ = r.body_mut().read_to_vec();
                    polls.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(p) = pace {
                    std::thread::sleep(p);
                }
            }
        }));
    }
    for _ in 0..16 {
        let (url, stop, done, queue, token) = (
            s.url.clone(),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(queue),
            token.to_owned(),
        );
        hs.push(std::thread::spawn(move || {
            let a = agent();
            while !stop.load(Ordering::Relaxed) {
                let Some(body) = queue.lock().unwrap().pop() else { break };
                let r = a
                    .post(&format!("{url}/api/v1/entries"))
                    .header("Content-Type", "application/json")
                    .header("Authorization", &format!("Bearer {token}"))
                    .send(&body[..]);
                if matches!(r, Ok(ref r) if r.status().as_u16() == 201) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let n = done.load(Ordering::Relaxed);
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    if pollers > 0 {
        eprintln!(
            "  {pollers} pollers read the state {:.0} times/s",
            polls.load(Ordering::Relaxed) as f64 / elapsed
        );
    }
    n as f64 / elapsed
}

/// `/log/checkpoint` latencies (µs) from 4 clients over `secs`.
fn checkpoint_latencies(url: &str, secs: u64) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (url.to_owned(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let a = agent();
                let mut lat = vec![];
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let mut r = a.get(&format!("{url}/log/checkpoint")).call().unwrap();
                    let _ = r.body_mut().read_to_vec();
                    assert_eq!(r.status().as_u16(), 200);
                    lat.push(t.elapsed().as_micros() as u64);
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

fn main() {
    let entries = env("MODELGATE_BENCH_ENTRIES", 1_000_000) as usize;
    let secs = env("MODELGATE_BENCH_SECS", 5);
    let parts = std::env::var("MODELGATE_BENCH_PARTS").unwrap_or_else(|_| "restart,writes,stall".into());
    let tmp = tempfile::tempdir().unwrap();
    let dir: std::path::PathBuf =
        std::env::var_os("MODELGATE_BENCH_DIR").map_or_else(|| tmp.path().join("authority"), Into::into);
    let w = World::new();
    let (_, digest) = w.bundle("bench", 70);
    let complete = dir.join(".complete");
    let reused = complete.exists();
    if !reused {
        let _ = std::fs::remove_dir_all(&dir);
        build(&dir, &w, entries);
        std::fs::write(&complete, "").unwrap();
    }
    let d = DataDir::new(&dir);
    let token = tokens::create(&d.tokens(), TokenRole::Admin, "bench").unwrap();

    // Restart: the whole log folded (baseline), then from the snapshot.
    let mut a: Option<Arc<Authority>> = None;
    if parts.contains("restart") {
        let t = Instant::now();
        let first = Authority::open(&dir).unwrap();
        let first_open = t.elapsed();
        let size = first.state().size;
        let folded = first.startup.folded;
        let t = Instant::now();
        first.shutdown();
        let shutdown = t.elapsed();
        drop(first);
        let snapshot_bytes = std::fs::metadata(d.snapshot()).map_or(0, |m| m.len());
        let mut with_snapshot = vec![];
        for _ in 0..3 {
            if let Some(prev) = a.take() {
                prev.shutdown();
            }
            let t = Instant::now();
            let opened = Authority::open(&dir).unwrap();
            with_snapshot.push(t.elapsed().as_secs_f64());
            assert_eq!(opened.startup.snapshot_size, Some(size));
            a = Some(opened);
        }
        println!(
            "## Restart with {size} entries ({APPROVALS} approvals, {NODES} nodes, the rest containment reports)\n"
        );
        println!("| restart | time |");
        println!("|---|---|");
        println!(
            "| first open ({folded} entries folded{}) | {:.2} s |",
            if reused {
                ", after a snapshot"
            } else {
                ": the whole log, no snapshot; baseline"
            },
            first_open.as_secs_f64()
        );
        println!(
            "| from the snapshot ({:.1} MB; median of 3) | {:.3} s (runs {:?}) |",
            snapshot_bytes as f64 / 1e6,
            median(with_snapshot.clone()),
            with_snapshot.iter().map(|s| format!("{s:.3}")).collect::<Vec<_>>()
        );
        println!("| shutdown, writing the snapshot | {:.2} s |\n", shutdown.as_secs_f64());
    }
    let a = a.unwrap_or_else(|| Authority::open(&dir).unwrap());
    let s = serve(a);

    if parts.contains("writes") {
        let queue = Arc::new(Mutex::new(parallel(300_000, |i| {
            approval(&w, &digest, &format!("W-{}-{i}", std::process::id()))
        })));
        let (mut none, mut eight, mut paced) = (vec![], vec![], vec![]);
        for round in 0..3 {
            eprintln!("round {round}: no pollers");
            none.push(writes(&s, &token, &queue, 0, None, secs));
            eprintln!("round {round}: 8 pollers, unpaced");
            eight.push(writes(&s, &token, &queue, 8, None, secs));
            eprintln!("round {round}: 8 pollers, every 100 ms");
            paced.push(writes(&s, &token, &queue, 8, Some(Duration::from_millis(100)), secs));
        }
        let (n, e, p) = (median(none.clone()), median(eight.clone()), median(paced.clone()));
        println!("## Durable writes/s (16 clients submitting approvals, {secs} s runs, alternating)\n");
        println!("| readers | writes/s (median of 3) | ratio to none | runs |");
        println!("|---|---|---|---|");
        println!("| none | {n:.0} | 1 | {none:.0?} |");
        println!(
            "| 8 clients polling /api/v1/state every 100 ms | {p:.0} | {:.2} | {paced:.0?} |",
            p / n
        );
        println!(
            "| 8 clients polling /api/v1/state unpaced | {e:.0} | {:.2} | {eight:.0?} |",
            e / n
        );
        println!("\ntarget: ≥ 0.8 of none\n");
    }

    if parts.contains("stall") {
        let mut calm = checkpoint_latencies(&s.url, 3);
        let blocker = rusqlite::Connection::open(d.store()).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        let stuck = {
            let (url, token) = (s.url.clone(), token.clone());
            let body = approval(&w, &digest, &format!("STUCK-{}", std::process::id()));
            std::thread::spawn(move || {
                agent()
                    .post(&format!("{url}/api/v1/entries"))
                    .header("Content-Type", "application/json")
                    .header("Authorization", &format!("Bearer {token}"))
                    .send(&body[..])
                    .map(|r| r.status().as_u16())
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let mut stalled = checkpoint_latencies(&s.url, 3);
        let ready = agent()
            .get(&format!("{}/readyz", s.url))
            .call()
            .unwrap()
            .status()
            .as_u16();
        let stuck_status = stuck.join().unwrap();
        blocker.execute_batch("ROLLBACK;").unwrap();
        println!("## /log/checkpoint latency, 4 clients, 3 s\n");
        println!("| writer | requests | p50 | p99 |");
        println!("|---|---|---|---|");
        println!(
            "| idle | {} | {:.2} ms | {:.2} ms |",
            calm.len(),
            pct(&mut calm, 0.5),
            pct(&mut calm, 0.99)
        );
        println!(
            "| a durable write stuck (readyz {ready}; the write answered {stuck_status:?}) | {} | {:.2} ms | {:.2} ms |",
            stalled.len(),
            pct(&mut stalled, 0.5),
            pct(&mut stalled, 0.99)
        );
        println!("\ntarget: p99 ≤ 50 ms during the stall");
    }
    s.stop();
}
