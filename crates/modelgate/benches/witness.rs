//! Checkpoint publication latency with 0 and with 3 witnesses, over HTTP
//! with real processes: an authority (`authority serve`), then the same
//! authority asking three `modelgate witness serve` processes (trust root
//! quorum 2). For each of N entries submitted one after another: the time
//! from the authority's 201 to the first `/log/checkpoint` that includes the
//! entry (with 3 witnesses: with their cosignatures, the only checkpoint the
//! authority serves), polled every millisecond; and from the request to it.
//!
//! `cargo bench -p modelgate --bench witness` (MODELGATE_BENCH_N, default 300).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::s;
use support::mg;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn size(agent: &ureq::Agent, url: &str) -> u64 {
    let t = agent
        .get(&format!("{url}/log/checkpoint"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    t.lines().nth(1).unwrap().parse().unwrap()
}

/// Submit `n` entries one after another; (ack → served, request → served) in ms.
fn run(url: &str, admin: &str, entries: &[Vec<u8>]) -> (Vec<f64>, Vec<f64>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let (mut after_ack, mut total) = (Vec::new(), Vec::new());
    for e in entries {
        let t0 = Instant::now();
        let mut r = agent
            .post(&format!("{url}/api/v1/entries"))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {admin}"))
            .send(&e[..])
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let v: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let index = v["index"].as_u64().unwrap();
        let t1 = Instant::now();
        while size(&agent, url) <= index {
            std::thread::sleep(Duration::from_millis(1));
        }
        after_ack.push(t1.elapsed().as_secs_f64() * 1000.0);
        total.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    (after_ack, total)
}

fn report(what: &str, (mut a, mut t): (Vec<f64>, Vec<f64>)) {
    println!(
        "{what}: ack → served p50 {:.1} ms, p99 {:.1} ms; request → served p50 {:.1} ms, p99 {:.1} ms ({} entries)",
        pct(&mut a, 0.5),
        pct(&mut a, 0.99),
        pct(&mut t, 0.5),
        pct(&mut t, 0.99),
        a.len()
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("MODELGATE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir =
        tempfile::tempdir_in(std::env::var_os("MODELGATE_BENCH_DIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let d = dir.path();
    let g = support::governed(d);
    let (data, mut server, url, admin, root_key, approver) = (g.data, g.server, g.url, g.admin, g.root_key, g.approver);
    let root_token = mg(&["authority", "token", "create", "--data", s(&data), "--role", "root"])
        .trim()
        .to_owned();
    let p = |n: &str| d.join(n);
    let entry = |k: usize| approver.approval(&format!("CHG-{k}"));
    let first: Vec<Vec<u8>> = (0..n).map(entry).collect();
    let second: Vec<Vec<u8>> = (n..2 * n).map(entry).collect();
    let zero = run(&url, &admin, &first);

    // Three witnesses, a quorum of 2, and the same authority asking them.
    let log = common::world::get_json(&format!("{url}/api/v1/trust-root"));
    let log = log["authority"]["log"]
        .as_str()
        .or_else(|| log["doc"]["authority"]["log"].as_str())
        .unwrap()
        .to_owned();
    let mut witnesses = Vec::new();
    let mut vkeys = Vec::new();
    for i in 1..=3 {
        let wd = d.join(format!("w{i}"));
        vkeys.push(
            mg(&["witness", "init", "--data", s(&wd), "--name", &format!("w{i}.example")])
                .trim()
                .to_owned(),
        );
        let w = common::spawn_json_server(&[
            "witness",
            "serve",
            "--data",
            s(&wd),
            "--listen",
            "127.0.0.1:0",
            "--log",
            &log,
        ]);
        let url = w.url.clone();
        witnesses.push((w, url));
    }
    let _ = server.child.kill();
    let _ = server.child.wait();
    let listen = url.trim_start_matches("http://").to_owned();
    let urls = witnesses.iter().map(|w| w.1.clone()).collect::<Vec<_>>().join(",");
    server = common::spawn_server(&[
        "authority",
        "serve",
        "--data",
        s(&data),
        "--listen",
        &listen,
        &format!("--witness-url={urls}"),
    ]);
    let mut edit = vec![
        "trust".to_owned(),
        "edit".into(),
        "--authority".into(),
        url.clone(),
        "--out".into(),
        s(&p("c.json")).to_owned(),
        "--witness-quorum".into(),
        "2".into(),
    ];
    for v in &vkeys {
        edit.extend(["--add-witness".to_owned(), v.clone()]);
    }
    mg(&edit.iter().map(String::as_str).collect::<Vec<_>>());
    mg(&[
        "trust",
        "sign",
        s(&p("c.json")),
        "--key",
        s(&root_key),
        "--out",
        s(&p("c.dsse")),
    ]);
    mg(&["submit", s(&p("c.dsse")), "--authority", &url, "--token", &root_token]);
    let three = run(&url, &admin, &second);
    println!("checkpoint publication, {n} entries submitted one after another (loopback, fsync'd store):");
    report("  0 witnesses", zero);
    report("  3 witnesses (quorum 2)", three);
    drop(server);
}
