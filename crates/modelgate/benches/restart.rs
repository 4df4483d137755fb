//! How long a node takes from `node serve` to its first governed 200 on a
//! large model, with real processes (a dev authority, the mock upstream, one
//! node): with no verified-digest cache (every byte hashed) and with a valid
//! one (a restart), the page cache dropped before each start where the
//! kernel allows it; then the background full re-verification's read rate,
//! unpaced and paced to 256 MiB/s (from `/status`); beside them, in the same
//! run, `dd`'s sequential read of the same files (the disk's speed) and the
//! node's peak resident memory.
//!
//! `cargo bench -p modelgate --bench restart` (MODELGATE_BENCH_GIB, default
//! 20, in 5 files; MODELGATE_BENCH_DIR, default /var/tmp). Prints Markdown.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;

use common::world::Killed;

const FILES: u64 = 5;

/// Drop the page cache (root only); whether it was dropped.
fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// `node serve`, its events drained; background re-verification off
/// unless `rehash` gives its pace (MiB/s, 0: none).
fn serve(config: &Path, rehash: Option<u64>) -> (Killed, u32) {
    let (every, pace) = match rehash {
        Some(p) => ("86400".to_owned(), p.to_string()),
        None => ("0".to_owned(), "0".to_owned()),
    };
    common::world::node_serve(
        config,
        &["--interval-ms", "20"],
        &[
            ("MODELGATE_NODE_REHASH_INTERVAL_SECONDS", &every),
            ("MODELGATE_NODE_REHASH_MAX_MIB_PER_SECOND", &pace),
        ],
    )
}

/// The background full re-verification at `pace` MiB/s (0: none), started
/// on a valid cache: its read rate (MiB/s, from `/status`) and the node's
/// peak RSS.
fn full_verification(config: &Path, url: &str, gib: u64, pace: u64) -> (f64, f64) {
    let (child, pid) = serve(config, Some(pace));
    let agent = common::world::agent();
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(3600),
            "no full re-verification in an hour"
        );
        if let Ok(mut r) = agent.get(&format!("{url}/status")).call() {
            let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
            let f = &v["integrity"]["full_verification"]["m"];
            if f["ok"] == true {
                let bytes = f["bytes"].as_f64().unwrap();
                assert!(bytes >= (gib << 30) as f64, "it read {bytes} bytes");
                let rate = bytes / f["seconds"].as_f64().unwrap() / f64::from(1 << 20);
                let rss = peak_rss_mib(pid);
                drop(child);
                return (rate, rss);
            }
            assert!(f["ok"] != false, "the re-verification failed: {v}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Seconds from spawning `node serve` to its first 200, and its peak RSS.
fn first_call(config: &Path, url: &str, token: &str) -> (f64, f64) {
    let t0 = Instant::now();
    let (child, pid) = serve(config, None);
    let body = r#"{"model": "m", "messages": [{"role": "user", "content": "hello"}]}"#;
    common::world::until_served(url, token, body, Duration::from_millis(10), Duration::from_secs(1800));
    let secs = t0.elapsed().as_secs_f64();
    let rss = peak_rss_mib(pid);
    drop(child);
    (secs, rss)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let gib: u64 = std::env::var("MODELGATE_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let base = std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into());
    let dir = tempfile::tempdir_in(base).unwrap();
    let d = dir.path();
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let per_file = gib * (1 << 30) / FILES;
    let mut chunk = vec![0u8; 64 << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for b in chunk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    for n in 0..FILES {
        let mut f = std::fs::File::create(model.join(format!("shard-{n}.bin"))).unwrap();
        let mut left = per_file;
        while left > 0 {
            let k = left.min(chunk.len() as u64) as usize;
            chunk[0] = n as u8;
            f.write_all(&chunk[..k]).unwrap();
            left -= k as u64;
        }
        f.sync_all().unwrap();
    }
    let dev = d.join("dev");
    let _authority = common::dev_serve(&dev);
    let (_mock, upstream) = common::world::start_mock(1, 0);
    let port = common::world::free_port();
    let (config, token) = common::dev_govern(&dev, &model, &upstream, "m", &format!("127.0.0.1:{port}"));
    let url = format!("http://127.0.0.1:{port}");
    let node_data = config.parent().unwrap().join("data");

    println!("# A node's start on a {gib} GiB model of {FILES} files\n");
    let mut dropped = drop_caches();
    let t = Instant::now();
    for n in 0..FILES {
        let o = Command::new("dd")
            .args([
                &format!("if={}", model.join(format!("shard-{n}.bin")).display()),
                "of=/dev/null",
                "bs=16M",
            ])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success());
    }
    let dd = gib as f64 * 1024.0 / t.elapsed().as_secs_f64();
    println!("| start | page cache dropped | to first 200 | read rate | node peak RSS |");
    println!("|---|---|---|---|---|");
    println!("| baseline: `dd bs=16M` of the same files | {dropped} | | {dd:.0} MiB/s | |");
    for round in 1..=2 {
        let _ = std::fs::remove_file(node_data.join("digest-cache.json"));
        dropped = drop_caches();
        let (cold, rss) = first_call(&config, &url, &token);
        println!(
            "| {round}: no cache (every byte hashed) | {dropped} | {cold:.2} s | {:.0} MiB/s | {rss:.0} MiB |",
            gib as f64 * 1024.0 / cold
        );
        dropped = drop_caches();
        let (warm, rss) = first_call(&config, &url, &token);
        println!("| {round}: valid cache (a restart) | {dropped} | {warm:.2} s | | {rss:.0} MiB |");
    }
    println!("\n| background full re-verification | page cache dropped | read rate | of `dd` | node peak RSS |");
    println!("|---|---|---|---|---|");
    for (what, pace) in [
        ("unpaced (`rehash_max_mib_per_second = 0`)", 0),
        ("paced to 256 MiB/s (the default)", 256),
    ] {
        dropped = drop_caches();
        let (rate, rss) = full_verification(&config, &url, gib, pace);
        println!(
            "| {what} | {dropped} | {rate:.0} MiB/s | {:.2} | {rss:.0} MiB |",
            rate / dd
        );
    }
}
