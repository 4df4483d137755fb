//! The authority over HTTP: entry submissions per second (keep-alive, 64
//! concurrent clients) and tile reads per second, beside the store alone
//! (the same entries through `Sequencer`, no HTTP, no rule checks) measured
//! in the same run; and the authority's resident memory at 100,000 entries.
//!
//! `cargo bench -p modelgate --bench authority` (MODELGATE_BENCH_SECS, default 10).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use support::{agent, drive};

use support::CLIENTS;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: f64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let dir =
        tempfile::tempdir_in(std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let d = dir.path();
    let g = support::governed(d);
    let approver = g.approver;
    let (data, server, url, admin) = (g.data, g.server, g.url, g.admin);
    let pid = server.child.id();
    let entry = move |c: usize, n: u64| approver.approval(&format!("CHG-{c}-{n}-{}", "x".repeat(40)));
    let entry = Arc::new(entry);
    let entry_len = entry(0, 0).len();

    // Entries are signed before the timed loop: a client's own signing is not the authority's cost.
    let per_client: Vec<Arc<Mutex<Vec<Vec<u8>>>>> = (0..CLIENTS).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let agents: Vec<ureq::Agent> = (0..CLIENTS).map(|_| agent()).collect();
    let agents = Arc::new(agents);
    let submitted = Arc::new(AtomicU64::new(0));
    let pregen = 4000;
    for (c, pc) in per_client.iter().enumerate() {
        let mut v = pc.lock().unwrap();
        for n in 0..pregen {
            v.push(entry(c, n));
        }
    }
    let post = {
        let (url, admin, agents, per_client, submitted) = (
            url.clone(),
            admin.clone(),
            Arc::clone(&agents),
            per_client.clone(),
            Arc::clone(&submitted),
        );
        Arc::new(move |c: usize, _n: u64| {
            let Some(body) = per_client[c].lock().unwrap().pop() else {
                return false;
            };
            let r = agents[c]
                .post(&format!("{url}/api/v1/entries"))
                .header("Content-Type", "application/json")
                .header("Authorization", &format!("Bearer {admin}"))
                .send(&body[..]);
            let ok = matches!(r, Ok(ref resp) if resp.status().as_u16() == 201);
            if ok {
                submitted.fetch_add(1, Ordering::Relaxed);
            }
            ok
        })
    };
    let http = drive(secs, post.clone());
    let size_after = common::world::get_json(&format!("{url}/api/v1/state"));
    let size = size_after["size"].as_u64().unwrap();

    // Tile reads: full level-0 tiles and entry bundles at random.
    let full_tiles = size / 256;
    let reads = {
        let (url, agents) = (url.clone(), Arc::clone(&agents));
        Arc::new(move |c: usize, n: u64| {
            let t = (n.wrapping_mul(2654435761).wrapping_add(c as u64)) % full_tiles.max(1);
            let path = if n.is_multiple_of(2) {
                format!("tile/0/{}", modelgate_tlog::encode_index(t))
            } else {
                format!("tile/entries/{}", modelgate_tlog::encode_index(t))
            };
            match agents[c].get(&format!("{url}/log/{path}")).call() {
                Ok(mut r) if r.status().as_u16() == 200 => r.body_mut().read_to_vec().is_ok(),
                _ => false,
            }
        })
    };
    let tiles = drive(secs.min(5.0), reads);

    // Grow to 100,000 entries, then sample memory while reading and writing.
    while submitted.load(Ordering::Relaxed) + 3 < 100_000 {
        let need = 100_000 - submitted.load(Ordering::Relaxed) as usize;
        for (c, pc) in per_client.iter().enumerate() {
            let mut v = pc.lock().unwrap();
            for n in 0..(need / CLIENTS + 1).min(3000) as u64 {
                v.push(entry(c, 1_000_000 + submitted.load(Ordering::Relaxed) + n));
            }
        }
        drive(3.0, post.clone());
    }
    let mut peak = rss_kib(pid);
    let mixed_post = post.clone();
    let mixed = {
        let (url, agents) = (url.clone(), Arc::clone(&agents));
        Arc::new(move |c: usize, n: u64| {
            if c.is_multiple_of(2) {
                mixed_post(c, n)
            } else {
                let t = n % (100_000 / 256);
                agents[c]
                    .get(&format!("{url}/log/tile/entries/{}", modelgate_tlog::encode_index(t)))
                    .call()
                    .map(|r| r.status().as_u16() == 200)
                    .unwrap_or(false)
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut m = 0;
            while !stop.load(Ordering::Relaxed) {
                m = m.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            m
        })
    };
    drive(5.0, mixed);
    stop.store(true, Ordering::Relaxed);
    peak = peak.max(sampler.join().unwrap());
    let final_size = common::world::get_json(&format!("{url}/api/v1/state"));
    drop(server);
    // The same data, a fresh process: what holding the log costs by itself.
    let restarted = common::serve(&data);
    std::thread::sleep(Duration::from_secs(1));
    let idle_after_restart = rss_kib(restarted.child.id());
    drop(restarted);

    // The store alone, same entries, same client count, same disk.
    let store_dir = tempfile::tempdir_in(d).unwrap();
    let key = modelgate_tlog::SignerKey::from_seed("bench.example/store", modelgate_tlog::KeyType::Ed25519, &[1; 32])
        .unwrap();
    let log = modelgate_store::Log::open(
        modelgate_store::SqliteStore::open(&store_dir.path().join("s.db")).unwrap(),
        key,
    )
    .unwrap();
    let seq = Arc::new(modelgate_store::Sequencer::start(log, modelgate_store::SequencerConfig::default()).unwrap());
    // The store does not read entries, so unique bytes of the same length do.
    let unique = |c: usize, n: u64| {
        let mut e = format!("{c}-{n}-").into_bytes();
        e.resize(entry_len, b'x');
        e
    };
    let pools: Vec<Mutex<Vec<Vec<u8>>>> = (0..CLIENTS)
        .map(|c| Mutex::new((0..20_000).map(|n| unique(c, n)).collect()))
        .collect();
    let pools = Arc::new(pools);
    let store_alone = drive(
        secs,
        Arc::new(move |c: usize, _n: u64| match pools[c].lock().unwrap().pop() {
            Some(e) => seq.submit(e).is_ok(),
            None => false,
        }),
    );

    println!(
        "| case ({CLIENTS} clients, {entry_len}-byte approval entries) | per second | p50 ms | p99 ms | operations |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| HTTP submissions (checked, durable, acknowledged) | {:.0} | {:.2} | {:.2} | {} |",
        http.per_sec, http.p50_ms, http.p99_ms, http.count
    );
    println!(
        "| baseline: the store alone (Sequencer, no HTTP, no checks) | {:.0} | {:.2} | {:.2} | {} |",
        store_alone.per_sec, store_alone.p50_ms, store_alone.p99_ms, store_alone.count
    );
    println!(
        "| HTTP tile reads (full level-0 tiles and entry bundles) | {:.0} | {:.2} | {:.2} | {} |",
        tiles.per_sec, tiles.p50_ms, tiles.p99_ms, tiles.count
    );
    println!(
        "\nauthority resident memory (VmRSS) at {} entries, peak while reading and writing: {:.1} MiB; a fresh process on the same data, idle: {:.1} MiB",
        final_size["size"],
        peak as f64 / 1024.0,
        idle_after_restart as f64 / 1024.0
    );
}
