//! CPU per governed call against nginx's per proxied call, and the
//! authority's CPU per lineage record it ingests, with real processes on one
//! machine, in one run:
//!
//! - the upstream: nginx answering a small chat completion (a process of its own);
//! - the baseline: nginx as a plain reverse proxy of it (another process);
//! - the node (`dev govern`, `node serve`) in front of the same upstream,
//!   lineage replication on (every 2 s, the default) and off;
//! - the dev authority on the same machine, ingesting what the node replicates.
//!
//! Each proxy at saturation with `wrk -t2 -c32` and keep-alive; the CPU of
//! each process from `/proc/PID/stat` over the run. The authority's CPU per
//! record is its CPU from the start of the run until the node's replication
//! has caught up, less its idle rate over that time, over the records the
//! authority acknowledged meanwhile. Three interleaved rounds, medians.
//!
//! `cargo bench -p modelgate --bench gateway` (MODELGATE_BENCH_SECS, default
//! 10; nginx and wrk on PATH). MODELGATE_BENCH_PERF_DIR=DIR records `perf`
//! profiles of the node (replication on) and of the authority in the first
//! round, prints their top symbols, and writes flame graphs when
//! `inferno-collapse-perf` and `inferno-flamegraph` are on PATH.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::s;
use common::world::Killed;
use support::{cpu_secs, with_children};

const ROUNDS: usize = 3;
const CONNECTIONS: u32 = 32;
const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"approved"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}"#;
const CALL: &str = r#"{"model": "m", "messages": [{"role": "user", "content": "score applicant 42"}]}"#;

/// One node under test: the process, its pid and base URL.
struct Node {
    _child: Killed,
    pid: u32,
    url: String,
}

/// `node serve` with lineage replication every `replicate` seconds (0: off),
/// once it answers a governed call.
fn start_node(config: &Path, url: &str, token: &str, replicate: u64) -> Node {
    let replicate = replicate.to_string();
    let (child, pid) = common::world::node_serve(
        config,
        &[],
        &[
            ("MODELGATE_NODE_LINEAGE_REPLICATION_INTERVAL_SECONDS", &replicate),
            ("MODELGATE_NODE_REHASH_INTERVAL_SECONDS", "0"),
        ],
    );
    common::world::until_served(url, token, CALL, Duration::from_millis(50), Duration::from_secs(60));
    Node {
        _child: child,
        pid,
        url: url.to_owned(),
    }
}

/// Lineage records the authority holds for this node, as the node last heard.
fn replicated(node: &Node) -> u64 {
    let mut r = support::agent().get(&format!("{}/metrics", node.url)).call().unwrap();
    let text = r.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("modelgate_lineage_replicated_records "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Wait until replication stops advancing (three polls a replication
/// interval apart agree): the backlog of the run is shipped.
fn caught_up(node: &Node) -> u64 {
    let mut last = (replicated(node), 0);
    let t0 = Instant::now();
    while last.1 < 2 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(2_500));
        let now = replicated(node);
        last = if now == last.0 { (now, last.1 + 1) } else { (now, 0) };
    }
    last.0
}

/// `perf record` of `pid` for `secs`, when profiling was asked for.
fn perf(dir: Option<&PathBuf>, name: &str, pid: u32, secs: u64) -> Option<(std::process::Child, PathBuf)> {
    let out = dir?.join(format!("{name}.perf.data"));
    let child = Command::new("perf")
        .args([
            "record",
            "-F",
            "999",
            "-g",
            "-p",
            &pid.to_string(),
            "-o",
            s(&out),
            "--",
            "sleep",
        ])
        .arg(secs.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some((child, out))
}

/// The profile's shares by binary and its top symbols (self time), and a
/// flame graph where inferno is installed.
fn report(profile: Option<(std::process::Child, PathBuf)>, name: &str) {
    let Some((mut child, data)) = profile else { return };
    let _ = child.wait();
    println!("\nProfile of {name} ({}):\n", data.display());
    for (sort, limit) in [("dso", "1"), ("dso,symbol", "1.5")] {
        let o = Command::new("perf")
            .args([
                "report",
                "-i",
                s(&data),
                "--stdio",
                "--no-children",
                "-g",
                "none",
                "--sort",
                sort,
            ])
            .args(["--percent-limit", limit])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        // Only the rows: a share first (no callers, no headers).
        for l in text
            .lines()
            .map(str::trim)
            .filter(|l| l.split('%').next().is_some_and(|p| p.parse::<f64>().is_ok()))
        {
            println!("    {}", l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        println!();
    }
    let svg = data.with_extension("svg");
    let folded = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "perf script -i {} 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > {}",
            s(&data),
            s(&svg)
        ))
        .status()
        .is_ok_and(|st| st.success());
    if folded {
        println!("\n    flame graph: {}", svg.display());
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What one run of a proxy measured.
#[derive(Default)]
struct Figures {
    rps: Vec<f64>,
    cpu_us: Vec<f64>,
    authority_us: Vec<f64>,
    records: Vec<f64>,
    /// The authority's idle CPU, in % of a core.
    idle: Vec<f64>,
}

/// wrk at saturation against `url`, with the CPU per call of `pids`.
fn saturate(url: &str, token: &str, pids: &[u32], secs: u64, f: &mut Figures) {
    let cpu0 = cpu_secs(pids);
    let rps = support::wrk(url, CALL, token, CONNECTIONS, secs);
    f.cpu_us.push((cpu_secs(pids) - cpu0) / (rps * secs as f64) * 1e6);
    f.rps.push(rps);
}

/// The node with replication on: its CPU per call, and the authority's per
/// record ingested (less its idle rate, measured just before).
fn with_replication(node: &Node, authority: u32, token: &str, secs: u64, f: &mut Figures, perf_dir: Option<&PathBuf>) {
    // The authority's rate with this node serving and nothing to ship (its
    // syncs and heartbeats go on during the run too).
    let shipped0 = caught_up(node);
    let idle0 = (cpu_secs(&[authority]), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle_rate = (cpu_secs(&[authority]) - idle0.0) / idle0.1.elapsed().as_secs_f64();
    let (a0, t0) = (cpu_secs(&[authority]), Instant::now());
    let profiles = [
        perf(perf_dir, "node", node.pid, secs),
        perf(perf_dir, "authority", authority, secs),
    ];
    saturate(&node.url, token, &[node.pid], secs, f);
    let shipped = caught_up(node) - shipped0;
    let spent = cpu_secs(&[authority]) - a0 - idle_rate * t0.elapsed().as_secs_f64();
    f.authority_us.push(spent / shipped.max(1) as f64 * 1e6);
    f.records.push(shipped as f64);
    f.idle.push(idle_rate * 100.0);
    for (p, name) in profiles
        .into_iter()
        .zip(["the node (replication on)", "the authority (ingest)"])
    {
        report(p, name);
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let secs: u64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let perf_dir = std::env::var_os("MODELGATE_BENCH_PERF_DIR").map(PathBuf::from);
    if let Some(d) = &perf_dir {
        std::fs::create_dir_all(d).unwrap();
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let d = dir.path();
    let (_upstream, upstream) = support::nginx_answering(&d.join("nginx-upstream"), ANSWER).unwrap();
    let (proxy, proxy_url) = support::nginx_proxy(&d.join("nginx-proxy"), &upstream).unwrap();
    let proxy_pids = with_children(proxy.0.id());
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 1 << 20]).unwrap();
    let dev = d.join("dev");
    let authority = common::dev_serve(&dev);
    let port = common::world::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (config, token) = common::dev_govern(&dev, &model, &upstream, "m", &format!("127.0.0.1:{port}"));

    let (mut nginx, mut on, mut off) = (Figures::default(), Figures::default(), Figures::default());
    for round in 0..ROUNDS {
        saturate(&proxy_url, &token, &proxy_pids, secs, &mut nginx);
        let node = start_node(&config, &url, &token, 2);
        let profile = if round == 0 { perf_dir.as_ref() } else { None };
        with_replication(&node, authority.child.id(), &token, secs, &mut on, profile);
        drop(node);
        let node = start_node(&config, &url, &token, 0);
        saturate(&node.url, &token, &[node.pid], secs, &mut off);
        drop(node);
    }
    print(&nginx, &on, &off, secs);
}

fn print(nginx: &Figures, on: &Figures, off: &Figures, secs: u64) {
    let n_cpu = median(nginx.cpu_us.clone());
    let n_rps = median(nginx.rps.clone());
    println!("\n# The gateway's CPU per call against nginx ({ROUNDS} rounds of {secs} s, wrk -t2 -c{CONNECTIONS})\n");
    println!("| proxy (upstream: nginx answering) | calls/s | of nginx | CPU per call | of nginx's |");
    println!("|---|---|---|---|---|");
    println!("| nginx, plain reverse proxy | {n_rps:.0} | 1.00 | {n_cpu:.1} µs | 1.00 |");
    for (name, f) in [
        ("modelgate node, replication on", on),
        ("modelgate node, replication off", off),
    ] {
        let (rps, cpu) = (median(f.rps.clone()), median(f.cpu_us.clone()));
        println!(
            "| {name} | {rps:.0} | {:.2} | {cpu:.1} µs | {:.2} |",
            rps / n_rps,
            cpu / n_cpu
        );
    }
    let per_record = median(on.authority_us.clone());
    println!(
        "\nThe authority ingesting the replicated lineage: **{per_record:.1} µs of CPU per record** \
         (rounds: {:?} µs over {:?} records; its idle CPU, subtracted: {:?} % of a core), \
         {:.0} records/s per core.",
        on.authority_us
            .iter()
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        on.records,
        on.idle.iter().map(|v| (v * 10.0).round() / 10.0).collect::<Vec<_>>(),
        1e6 / per_record
    );
}
