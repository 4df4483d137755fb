//! What TLS costs the gateway, in one run, with real processes: a dev
//! authority, the mock upstream, and one node serving a governed model
//! (lineage replication on, the default), started alternately with plain
//! HTTP and with TLS on the same data:
//!
//! A. throughput at saturation with keep-alive (`wrk -t2 -c32`, wrk from
//!    Debian, OpenSSL on its side), and the node's CPU per call from
//!    /proc; three rounds of each, interleaved, so drift hits both alike;
//! B. handshakes against the TLS gateway: 1,000 full ones (a client with
//!    resumption off) and 1,000 resumed ones (one client config, its
//!    session cache warm; each counted only when rustls says it resumed),
//!    the client's wall time per connect + handshake (p50/p99), and the
//!    node's CPU per connection (the handshake and one `/healthz`), less
//!    what the idle node spends in the same time (measured just before).
//!
//! `cargo bench -p modelgate --bench tls` (MODELGATE_BENCH_SECS, default 10).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::world::{wait_for, Killed};
use common::{ok, s};
use support::cpu_secs;

const HANDSHAKES: usize = 1_000;
/// Rounds of plain HTTP then TLS, interleaved.
const ROUNDS: u32 = 3;

struct Node {
    _child: Killed,
    pid: u32,
    url: String,
}

fn start(config: &Path, tls: bool) -> Node {
    let (child, events) = common::world::spawn_node("serve", config, &[], &[]);
    let pid = child.0.id();
    let l = wait_for(&events, 30, "listening", |v| v.get("listening").is_some());
    wait_for(&events, 60, "Serving", |v| v.to_string().contains("Serving"));
    let mut url = l["listening"].as_str().unwrap().to_owned();
    if tls {
        url = url.replace("http://", "https://");
    }
    std::thread::spawn(move || for _ in events {});
    Node {
        _child: child,
        pid,
        url,
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Connect and hand-shake `n` times with `config`; wall ms of each, and
/// how many resumed.
async fn handshakes(addr: &str, config: Arc<rustls::ClientConfig>, n: usize) -> (Vec<f64>, usize) {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut times = Vec::with_capacity(n);
    let mut resumed = 0;
    for _ in 0..n {
        let t = Instant::now();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut tls = connector.connect(name.clone(), tcp).await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            resumed += 1;
        }
        // One request, read to its end: the server's session tickets (TLS 1.3
        // sends them after the handshake) arrive before its answer, so the
        // next connection can resume.
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    (times, resumed)
}

fn main() {
    let secs: u64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    assert!(
        Command::new("wrk").arg("--version").output().is_ok(),
        "wrk is missing (Debian package wrk)"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = d.join("pki");
    ok(&common::mg(&[
        "dev",
        "ca",
        "--out",
        s(&pki),
        "--server",
        "gateway=127.0.0.1",
    ]));
    let dev = d.join("dev");
    let _authority = common::dev_serve(&dev);
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 1 << 16]).unwrap();
    let (_mock, upstream) = common::world::start_mock(1, 0);
    let port = common::world::free_port();
    let (plain, token) = common::dev_govern(&dev, &model, &upstream, "m", &format!("127.0.0.1:{port}"));
    let text = std::fs::read_to_string(&plain).unwrap();
    let (head, tail) = text.split_at(text.find("[models.").unwrap());
    let tls_config = plain.with_file_name("node-tls.toml");
    std::fs::write(
        &tls_config,
        format!(
            "{head}tls_cert = \"{}\"\ntls_key = \"{}\"\n\n{tail}",
            pki.join("gateway.pem").display(),
            pki.join("gateway.key").display()
        ),
    )
    .unwrap();
    let body = r#"{"model": "m", "messages": [{"role": "user", "content": "hello"}]}"#;

    println!("# The gateway with and without TLS ({secs} s per run, wrk -t2 -c32, keep-alive)\n");
    println!("| round | transport | calls/s | node CPU per call |");
    println!("|---|---|---|---|");
    let mut sums = [(0.0, 0.0); 2];
    for round in 1..=ROUNDS {
        for (i, (config, tls)) in [(&plain, false), (&tls_config, true)].into_iter().enumerate() {
            let node = start(config, tls);
            support::wrk(&node.url, body, &token, 32, 2); // warm-up, not counted
            let c0 = cpu_secs(&[node.pid]);
            let rps = support::wrk(&node.url, body, &token, 32, secs);
            let cpu = cpu_secs(&[node.pid]) - c0;
            let per_call = cpu / (rps * secs as f64) * 1e6;
            sums[i].0 += rps / ROUNDS as f64;
            sums[i].1 += per_call / ROUNDS as f64;
            let name = if tls { "TLS 1.3" } else { "plain HTTP" };
            println!("| {round} | {name} | {rps:.0} | {per_call:.1} µs |");
        }
    }
    let ratio = sums[1].0 / sums[0].0;
    println!(
        "\nmean: plain {:.0} calls/s ({:.1} µs CPU/call), TLS {:.0} calls/s ({:.1} µs CPU/call): TLS keeps {:.1} % \
         of the throughput, costs {:.1} % (target: at most 15 %)\n",
        sums[0].0,
        sums[0].1,
        sums[1].0,
        sums[1].1,
        ratio * 100.0,
        (1.0 - ratio) * 100.0
    );

    let node = start(&tls_config, true);
    let addr = node.url.trim_start_matches("https://").to_owned();
    let client = modelgate_http::tls::ClientTls::load(&modelgate_http::tls::ClientFiles {
        ca_bundle: Some(pki.join("ca.pem")),
        ..Default::default()
    })
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // What the node spends idle (its loop, heartbeats, replication), per second.
    std::thread::sleep(Duration::from_secs(2));
    let (i0, t0) = (cpu_secs(&[node.pid]), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle = (cpu_secs(&[node.pid]) - i0) / t0.elapsed().as_secs_f64();
    println!("# Handshakes against the TLS gateway ({HANDSHAKES} each, one at a time)\n");
    println!("| handshake | p50 | p99 | node CPU per connection (handshake + one /healthz) | resumed |");
    println!("|---|---|---|---|---|");
    let mut full = client.rustls().unwrap();
    full.resumption = rustls::client::Resumption::disabled();
    let full = Arc::new(full);
    let warm = Arc::new(client.rustls().unwrap());
    rt.block_on(handshakes(&addr, Arc::clone(&warm), 1));
    for (name, config) in [
        ("full (TLS 1.3, ECDHE + P-256 signature)", full),
        ("resumed (TLS 1.3 PSK)", warm),
    ] {
        let (c0, w0) = (cpu_secs(&[node.pid]), Instant::now());
        let (mut t, resumed) = rt.block_on(handshakes(&addr, config, HANDSHAKES));
        let busy = cpu_secs(&[node.pid]) - c0 - idle * w0.elapsed().as_secs_f64();
        let cpu = busy / HANDSHAKES as f64 * 1e6;
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {cpu:.0} µs | {resumed} of {HANDSHAKES} |",
            pct(&mut t, 0.5),
            pct(&mut t, 0.99)
        );
    }
}
