//! The runtime node and its gateway, with real processes, in one run:
//!
//! A. revocation latency: a node following the authority serves 100 models;
//!    each is revoked in turn, timed from the revocation's submission to the
//!    node's Contained event (p50/p99 over 100);
//! B. start-up and idle memory: a gateway node serving 4 models, following a
//!    governance log of more than 10,000 entries;
//! C. the gateway under load, against the mock upstream: direct, through
//!    nginx as a plain reverse proxy, and through the node (a durable lineage
//!    record per call). Throughput at saturation (wrk, 64 connections) and
//!    latency at fixed rates of 1,000 and 5,000 calls/s (an open-loop
//!    generator: latency counts from each call's scheduled time, so a stall
//!    is not hidden; two seconds at the rate run first and are not counted,
//!    so the figure is the steady state, not the aftermath of the saturation
//!    run); the node's resident memory at 5,000 calls/s; the proxy's own CPU per
//!    call at saturation and at 5,000 calls/s (node, or nginx's master and workers,
//!    from /proc).
//!
//! `cargo bench -p modelgate --bench node` (MODELGATE_BENCH_SECS, default 10;
//! needs `nginx` and `wrk` on PATH for part C's comparison, and says so if not).
//! MODELGATE_BENCH_PARTS (default `ABC`) picks the parts: without `A` the
//! revocations are skipped, without `B` the log is not filled to 10,000
//! entries first (C then runs against a short log), for quicker iteration on
//! one part. Diagnosis knobs: MODELGATE_BENCH_NODE_NICE=N runs the gateway node's
//! threads at nice N; MODELGATE_BENCH_NODE_WORKERS=N gives it N async worker
//! threads; MODELGATE_BENCH_PERF=FILE profiles the node in its first
//! saturation run, MODELGATE_BENCH_PERF_5K=FILE in its first 5,000/s run;
//! MODELGATE_BENCH_SLOW_SYSCALLS=FILE and MODELGATE_BENCH_SCHED=FILE
//! record its slow system calls and the machine's scheduler events in its first
//! 5,000/s run.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use modelgate_governance::{to_canonical, Envelope};
use serde_json::{json, Value};

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use support::cpu_secs;

use common::world::{agent, caller_table, get_json, start_mock, wait_for, world, Killed, World};
use common::{ok, s};

const TOKEN: &str = "bench-caller-token";
/// Seconds run at each fixed rate before the measured seconds.
const WARM_UP_SECS: u64 = 2;

fn mg(args: &[&str]) -> String {
    ok(&common::mg(args))
}

fn load(path: &Path) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A diagnosis knob: when `when` holds and the environment variable `knob` names a
/// file, `perf SUBCOMMAND…` for `secs`, attached to `pid` (or the whole machine),
/// writing to that file.
fn perf_if(knob: &str, when: bool, pid: Option<u32>, subcommand: &[&str], secs: u64) -> Option<std::process::Child> {
    let out = std::env::var(knob).ok().filter(|_| when)?;
    let mut c = Command::new("perf");
    c.args(subcommand);
    if let Some(pid) = pid {
        c.args(["-p", &pid.to_string()]);
    }
    Some(
        c.args(["-o", &out, "--", "sleep", &secs.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `perf record` with call graphs at 999 Hz.
const PROFILE: &[&str] = &["record", "-F", "999", "-g"];

fn lineage_size(db: &Path) -> u64 {
    use modelgate_store::LogStore as _;
    modelgate_store::SqliteStore::open_read_only(db)
        .unwrap()
        .size()
        .unwrap()
}

/// `latency_ms` of the completion records appended to the node's lineage log from
/// index `from` on.
fn completion_latencies(db: &Path, from: u64) -> Vec<f64> {
    use modelgate_store::LogStore as _;
    // The last completion records are queued behind the answers: let them land.
    std::thread::sleep(Duration::from_millis(200));
    let r = modelgate_store::SqliteStore::open_read_only(db).unwrap();
    r.entries(from, r.size().unwrap())
        .unwrap()
        .iter()
        .filter_map(|e| serde_json::from_slice::<Value>(e).ok())
        .filter(|v| v["type"] == "completion")
        .filter_map(|v| v["latency_ms"].as_f64())
        .collect()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Per rate: p50s and p99s of the rounds, and failed calls.
type Samples = (Vec<f64>, Vec<f64>, u64);
/// Name, saturation throughput, per rate (rate, p50, p99, errors), and the proxy's CPU
/// per call at saturation.
type TargetResult = (String, Option<f64>, Vec<(u32, f64, f64, u64)>, Option<f64>);

fn post_entry(url: &str, admin: &str, body: &[u8]) -> Value {
    let mut r = agent()
        .post(&format!("{url}/api/v1/entries"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {admin}"))
        .send(body)
        .unwrap();
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(r.status().as_u16(), 201, "{v}");
    v
}

fn signed(p: &Value, key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    Envelope::sign(&to_canonical(p).unwrap(), &[key]).unwrap()
}

/// N extra signed, registered and approved models m0..mN; their digests.
fn models(w: &World, n: usize) -> Vec<String> {
    let d = w.dir.path();
    let alice = load(&d.join("alice.key"));
    let mut digests = Vec::new();
    for k in 0..n {
        let m = d.join(format!("models/m{k}"));
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("weights.bin"), format!("weights of model {k}")).unwrap();
        mg(&["sign", s(&m), "--key", s(&d.join("signer-model.key"))]);
        let digest = mg(&["digest", s(&m)]).trim().to_owned();
        mg(&[
            "model",
            "register",
            s(&m),
            "--name",
            &format!("m{k}"),
            "--model-version",
            "1",
            "--key",
            s(&d.join("signer.key")),
            "--authority",
            &w.server.url,
            "--token",
            &w.admin,
        ]);
        let p = json!({"type": "approval", "version": 1, "model": digest, "scopes": ["prod/*"], "valid_from": 0,
                       "valid_until": 4_000_000_000u64, "risk_tier": "low", "ticket": format!("CHG-{k}")});
        post_entry(&w.server.url, &w.admin, &signed(&p, &alice));
        digests.push(digest);
    }
    digests
}

fn node_config(w: &World, dir: &Path, models: &[usize], extra: &str) -> std::path::PathBuf {
    let mut t = format!(
        "node = \"{}\"\nauthority = \"{}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = 30\ndata_dir = \"data\"\n{extra}\n",
        dir.file_name().unwrap().to_str().unwrap(),
        w.server.url,
        s(&w.data.join("trust-root.dsse.json"))
    );
    for k in models {
        let m = w.dir.path().join(format!("models/m{k}"));
        t.push_str(&format!(
            "[models.m{k}]\ndir = \"{}\"\nbundle = \"{}\"\n",
            s(&m),
            s(&m.join("model.sig"))
        ));
    }
    std::fs::create_dir_all(dir).unwrap();
    let c = dir.join("node.toml");
    std::fs::write(&c, t).unwrap();
    let vkey = mg(&["node", "init", "--config", s(&c)]).trim().to_owned();
    let id = dir.file_name().unwrap().to_str().unwrap();
    mg(&[
        "node",
        "enroll",
        id,
        "--node-key",
        &vkey,
        "--scope",
        "prod/*",
        "--key",
        s(&w.dir.path().join("nadmin.key")),
        "--authority",
        &w.server.url,
        "--token",
        &w.admin,
    ]);
    c
}

fn main() {
    let secs: u64 = std::env::var("MODELGATE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let parts = std::env::var("MODELGATE_BENCH_PARTS").unwrap_or_else(|_| "ABC".into());
    let w = world();
    let d = w.dir.path().to_owned();
    std::fs::write(d.join("all.cedar"), "permit(principal, action, resource);").unwrap();
    mg(&[
        "policy",
        "publish",
        s(&d.join("all.cedar")),
        "--key",
        s(&d.join("padmin.key")),
        "--authority",
        &w.server.url,
        "--token",
        &w.admin,
    ]);
    let t = Instant::now();
    let digests = models(&w, 104);
    eprintln!(
        "set-up: 104 models signed, registered and approved in {:.1?}",
        t.elapsed()
    );

    // A. Revocation latency over 100 revocations.
    if parts.contains('A') {
        revocations(&w, &digests);
    }

    // B. A log of more than 10,000 entries, then a 4-model gateway node from cold.
    let t = Instant::now();
    let agent = agent();
    let alice = load(&d.join("alice.key"));
    let need = if parts.contains('B') {
        10_200u64.saturating_sub(get_size(&w.server.url))
    } else {
        0
    };
    for i in 0..need {
        let p = json!({"type": "approval", "version": 1, "model": digests[100 + (i % 4) as usize],
                       "scopes": ["prod/credit/*"], "valid_from": 0, "valid_until": 4_000_000_000u64,
                       "risk_tier": "low", "ticket": format!("FILL-{i}")});
        let body = signed(&p, &alice);
        let mut r = agent
            .post(&format!("{}/api/v1/entries", w.server.url))
            .header("Content-Type", "application/json")
            .header("Authorization", &format!("Bearer {}", w.admin))
            .send(&body[..])
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{}", r.body_mut().read_to_string().unwrap());
    }
    std::thread::sleep(Duration::from_millis(700));
    let log_size = get_size(&w.server.url);
    eprintln!("filled the log to {log_size} entries in {:.1?}", t.elapsed());
    let (mock, upstream) = start_mock(8, 50);
    let config = node_config(
        &w,
        &d.join("node-b"),
        &[100, 101, 102, 103],
        &format!(
            "listen = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n{}",
            caller_table("bench", TOKEN, &[], &["prod/credit/scoring"])
        ),
    );
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let (gw, events) = spawn_node("serve", &config);
    let gw_url = wait_for(&events, 30, "listening", |v| v.get("listening").is_some())["listening"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..4 {
        wait_for(&events, 60, "Serving", |v| v["state"] == "Serving");
    }
    let startup = started.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let pid = gw.0.id();
    // MODELGATE_BENCH_NODE_NICE=N (diagnosis): run every thread of the gateway node at
    // nice N, to see how much of its tail is waiting for a CPU on a shared machine.
    if let Ok(n) = std::env::var("MODELGATE_BENCH_NODE_NICE") {
        for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
            let ok = Command::new("renice")
                .args(["-n", &n, "-p"])
                .arg(t.file_name())
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "renice -n {n} of thread {:?} failed", t.file_name());
        }
        println!("   (every thread of the gateway node runs at nice {n})");
    }
    println!(
        "B. gateway node, 4 models, log of {log_size} entries: all Serving {:.0} ms after start (full verified sync + 4 lifecycles); idle RSS {:.1} MiB after 5 s (peak so far {:.1} MiB)",
        startup.as_secs_f64() * 1000.0,
        status_kib(pid, "VmRSS:") as f64 / 1024.0,
        status_kib(pid, "VmHWM:") as f64 / 1024.0
    );

    // C. Under load.
    let body = json!({"model": "m100", "messages": [{"role": "user", "content": "score applicant 42"}]}).to_string();
    let nginx = support::nginx_proxy(&d.join("nginx"), &upstream);
    let mut targets: Vec<(&str, String)> = vec![("direct", upstream.clone())];
    match &nginx {
        Ok((_, url)) => targets.push(("nginx", url.clone())),
        Err(e) => println!("C. nginx: not measured ({e})"),
    }
    targets.push(("modelgate", gw_url.clone()));
    let wrk_ok = Command::new("wrk").arg("--version").output().is_ok();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Three interleaved rounds; each figure is the median of its three.
    const ROUNDS: usize = 3;
    let mut sat: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    // The proxy's own CPU per call at saturation and at 5,000/s (none for direct), from /proc.
    let mut cpu_per_call: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut cpu_at_5k: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let nginx_pid = nginx.as_ref().ok().map(|(n, _)| n.0.id());
    let mut lat: Vec<[Samples; 2]> = (0..targets.len()).map(|_| Default::default()).collect();
    let mut rss_at_5k = 0;
    // Per histogram and rate: the node's own latency histograms, summed over the rounds.
    const HISTOGRAMS: [(&str, &str); 3] = [
        (
            "modelgate_lineage_append_seconds",
            "durable lineage appends (request records)",
        ),
        (
            "modelgate_gateway_before_forward_seconds",
            "arrival to forwarding (checks, decision, durable record)",
        ),
        (
            "modelgate_gateway_upstream_seconds",
            "forwarding to the upstream's response head",
        ),
    ];
    let mut histograms: Vec<[Vec<(String, u64)>; 2]> = HISTOGRAMS.iter().map(|_| Default::default()).collect();
    // Per rate, each call's time inside the node (handler entry to the answer's last
    // byte, upstream included), from the node's own completion records.
    let mut inside: [Vec<f64>; 2] = Default::default();
    // Per target and rate, the p99 of how late the generator sent its calls, per round.
    let mut lags: Vec<[Vec<f64>; 2]> = (0..targets.len()).map(|_| Default::default()).collect();
    let lineage_db = config.parent().unwrap().join("data/lineage.db");
    for round in 0..ROUNDS {
        for (t, (name, url)) in targets.iter().enumerate() {
            let first_node_round = *name == "modelgate" && round == 0;
            // MODELGATE_BENCH_PERF=FILE: profile the node during its first saturation run.
            let perf = perf_if("MODELGATE_BENCH_PERF", first_node_round, Some(pid), PROFILE, secs);
            let pids = match *name {
                "modelgate" => vec![pid],
                "nginx" => nginx_pid.map(support::with_children).unwrap_or_default(),
                _ => vec![],
            };
            if wrk_ok {
                let cpu0 = cpu_secs(&pids);
                let rps = wrk(url, &body, secs);
                if !pids.is_empty() {
                    cpu_per_call[t].push((cpu_secs(&pids) - cpu0) / (rps * secs as f64) * 1e6);
                }
                sat[t].push(rps);
            }
            if let Some(mut p) = perf {
                let _ = p.wait();
            }
            for (r, rate) in [1_000u32, 5_000].into_iter().enumerate() {
                // Steady state, not the aftermath of the saturation run before it:
                // two seconds at the rate first, not counted (for every target alike).
                rt.block_on(open_loop(url, &body, rate, WARM_UP_SECS));
                let snapshot = || {
                    let text = metrics_text(&gw_url);
                    HISTOGRAMS.iter().map(|(h, _)| buckets(&text, h)).collect::<Vec<_>>()
                };
                let before = (*name == "modelgate").then(snapshot);
                let lineage_from = (*name == "modelgate").then(|| lineage_size(&lineage_db));
                // Diagnosis of the node's first measured 5,000/s run:
                let at_5k = first_node_round && rate == 5_000;
                let diagnosis = [
                    // its system calls slower than 2 ms (`perf trace`);
                    perf_if(
                        "MODELGATE_BENCH_SLOW_SYSCALLS",
                        at_5k,
                        Some(pid),
                        &["trace", "--duration", "2"],
                        secs,
                    ),
                    // the whole machine's scheduler events (`perf sched latency -i FILE`:
                    // wake-to-run delays);
                    perf_if("MODELGATE_BENCH_SCHED", at_5k, None, &["sched", "record"], secs),
                    // a profile of the node, where its CPU per call is highest.
                    perf_if("MODELGATE_BENCH_PERF_5K", at_5k, Some(pid), PROFILE, secs),
                ];
                let cpu0 = cpu_secs(&pids);
                let (p50, p99, errors, lag) = rt.block_on(open_loop(url, &body, rate, secs));
                if !pids.is_empty() && rate == 5_000 {
                    cpu_at_5k[t].push((cpu_secs(&pids) - cpu0) / (f64::from(rate) * secs as f64) * 1e6);
                }
                lags[t][r].push(lag);
                for mut p in diagnosis.into_iter().flatten() {
                    let _ = p.wait();
                }
                if let Some(from) = lineage_from {
                    inside[r].extend(completion_latencies(&lineage_db, from));
                }
                if let Some(before) = before {
                    // Where a call's time goes, by the node's own histograms.
                    for (k, after) in snapshot().iter().enumerate() {
                        for (i, ((le, a), (_, b))) in after.iter().zip(&before[k]).enumerate() {
                            match histograms[k][r].get_mut(i) {
                                Some(acc) => acc.1 += a - b,
                                None => histograms[k][r].push((le.clone(), a - b)),
                            }
                        }
                    }
                }
                if *name == "modelgate" && rate == 5_000 {
                    rss_at_5k = rss_at_5k.max(status_kib(pid, "VmHWM:"));
                }
                lat[t][r].0.push(p50);
                lat[t][r].1.push(p99);
                lat[t][r].2 += errors;
            }
        }
    }
    let results: Vec<TargetResult> = targets
        .iter()
        .enumerate()
        .map(|(t, (name, _))| {
            let rates = [1_000u32, 5_000]
                .iter()
                .enumerate()
                .map(|(r, rate)| {
                    let (p50s, p99s, errors) = &mut lat[t][r];
                    (*rate, pct(p50s, 0.5), pct(p99s, 0.5), *errors)
                })
                .collect();
            let cpu = (!cpu_per_call[t].is_empty()).then(|| pct(&mut cpu_per_call[t], 0.5));
            (name.to_string(), wrk_ok.then(|| pct(&mut sat[t], 0.5)), rates, cpu)
        })
        .collect();
    let direct = results[0].clone();
    println!("C. gateway under load (medians of {ROUNDS} interleaved rounds of {secs} s; latency in ms from each call's scheduled time):");
    println!("   target     | saturation (wrk -c64) | proxy CPU/call | 1k/s p50 | 1k/s p99 | 5k/s p50 | 5k/s p99 | errors | added p50/p99 at 5k/s");
    for (name, sat, rates, cpu) in &results {
        let added = (rates[1].1 - direct.2[1].1, rates[1].2 - direct.2[1].2);
        println!(
            "   {name:<10} | {:>14} req/s | {:>11} µs | {:>8.3} | {:>8.3} | {:>8.3} | {:>8.3} | {:>6} | {:+.3} / {:+.3}",
            sat.map_or("n/a".to_owned(), |x| format!("{x:.0}")),
            cpu.map_or("—".to_owned(), |x| format!("{x:.1}")),
            rates[0].1,
            rates[0].2,
            rates[1].1,
            rates[1].2,
            rates[0].3 + rates[1].3,
            added.0,
            added.1
        );
    }
    if let (Some(n), Some(m)) = (
        results.iter().find(|r| r.0 == "nginx").and_then(|r| r.1),
        results.iter().find(|r| r.0 == "modelgate").and_then(|r| r.1),
    ) {
        println!("   modelgate saturation / nginx saturation = {:.2}", m / n);
    }
    for ((_, what), per_rate) in HISTOGRAMS.iter().zip(&histograms) {
        for (rate, buckets) in [1_000, 5_000].iter().zip(per_rate) {
            let total = buckets.last().map_or(0, |b| b.1).max(1);
            let shown: Vec<String> = buckets
                .iter()
                .map(|(le, n)| format!("≤{le} s {:.2}%", 100.0 * *n as f64 / total as f64))
                .collect();
            println!("   modelgate at {rate}/s: {what}, cumulative: {}", shown.join(", "));
        }
    }
    for (t, (name, _)) in targets.iter().enumerate() {
        if !cpu_at_5k[t].is_empty() {
            println!(
                "   {name}: proxy CPU per call at 5000/s (median of rounds): {:.1} µs",
                pct(&mut cpu_at_5k[t], 0.5)
            );
        }
    }
    for (t, (name, _)) in targets.iter().enumerate() {
        println!(
            "   {name}: the generator's own lateness in sending calls, p99 (median of rounds): {:.3} ms at 1k/s, {:.3} ms at 5k/s",
            pct(&mut lags[t][0], 0.5),
            pct(&mut lags[t][1], 0.5)
        );
    }
    for (rate, v) in [1_000, 5_000].iter().zip(inside.iter_mut()) {
        println!(
            "   modelgate at {rate}/s: time inside the node per call (its completion records, {} calls): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 0.999),
            pct(v, 1.0)
        );
    }
    println!(
        "   node peak RSS through the 5k/s runs: {:.1} MiB; now RssAnon {:.1} MiB, RssFile {:.1} MiB, RssShmem {:.1} MiB, threads {}",
        rss_at_5k as f64 / 1024.0,
        status_kib(pid, "RssAnon:") as f64 / 1024.0,
        status_kib(pid, "RssFile:") as f64 / 1024.0,
        status_kib(pid, "RssShmem:") as f64 / 1024.0,
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .unwrap_or("?")
            .trim()
    );
    let m = metrics_text(&gw_url);
    for l in m.lines().filter(|l| {
        l.starts_with("modelgate_lineage_append_seconds_count")
            || l.starts_with("modelgate_lineage_append_seconds_sum")
            || l.starts_with("modelgate_gateway_denials")
    }) {
        println!("   {l}");
    }
    drop(gw);
    drop(mock);
    drop(nginx);
}

/// A: each of 100 Serving models revoked in turn, timed from the submission
/// to the node's Contained event.
fn revocations(w: &World, digests: &[String]) {
    let d = w.dir.path();
    let alice = load(&d.join("alice.key"));
    let ndir = d.join("node-a");
    let config = node_config(w, &ndir, &(0..100).collect::<Vec<_>>(), "");
    let (node, events) = spawn_node("run", &config);
    let mut serving = 0;
    while serving < 100 {
        wait_for(&events, 60, "100 models Serving", |v| v["state"] == "Serving");
        serving += 1;
    }
    let mut lat = Vec::new();
    let mut submit = Vec::new();
    for (k, digest) in digests.iter().enumerate().take(100) {
        let p = json!({"type": "revocation", "version": 1, "model": digest, "reason": "bench", "ticket": format!("INC-{k}")});
        let body = signed(&p, &alice);
        let t0 = Instant::now();
        post_entry(&w.server.url, &w.admin, &body);
        submit.push(t0.elapsed().as_secs_f64() * 1000.0);
        let name = format!("m{k}");
        wait_for(&events, 10, "containment", |v| {
            v["model"] == name.as_str() && v["state"] == "Contained"
        });
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
        // Spread the revocations over the authority's publication cycle.
        std::thread::sleep(Duration::from_millis(37));
    }
    drop(node);
    let (p50, p99, max) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), pct(&mut lat, 1.0));
    println!(
        "A. revocation → node Contained, 100 revocations: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms (submission alone p50 {:.1} ms); node interval 250 ms, authority publishes a cosigned checkpoint every 500 ms",
        pct(&mut submit, 0.5)
    );
}

/// `modelgate node CMD --config CONFIG`, its JSON event lines, killed on drop.
fn spawn_node(cmd: &str, config: &Path) -> (Killed, std::sync::mpsc::Receiver<Value>) {
    // MODELGATE_BENCH_NODE_WORKERS=N (diagnosis): the node's async worker threads
    // (tokio reads TOKIO_WORKER_THREADS; the default is one per CPU).
    let workers = std::env::var("MODELGATE_BENCH_NODE_WORKERS").ok();
    let env: Vec<(&str, &str)> = workers.iter().map(|n| ("TOKIO_WORKER_THREADS", n.as_str())).collect();
    common::world::spawn_node(cmd, config, &[], &env)
}

fn metrics_text(gw_url: &str) -> String {
    agent()
        .get(&format!("{gw_url}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The cumulative buckets (upper bound, count) of histogram `name` in the node's
/// metrics `text`.
fn buckets(text: &str, name: &str) -> Vec<(String, u64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|l| {
            let (le, n) = l.split_once("\"} ")?;
            Some((le.to_owned(), n.trim().parse().ok()?))
        })
        .collect()
}

fn get_size(url: &str) -> u64 {
    get_json(&format!("{url}/api/v1/state"))["size"].as_u64().unwrap_or(0)
}

/// nginx's master, stopped with SIGTERM so that it takes its workers with it
/// (SIGKILL would leave them running, orphaned, after every benchmark run).
/// wrk at saturation: 2 threads, 64 connections; requests/s.
fn wrk(url: &str, body: &str, secs: u64) -> f64 {
    support::wrk(url, body, TOKEN, 64, secs)
}

/// Open-loop load at `rate` calls/s for `secs`: each call is scheduled in
/// advance and its latency counts from its scheduled time. Returns p50 and
/// p99 in ms, the number of failed calls, and the p99 of how late the calls left.
async fn open_loop(url: &str, body: &str, rate: u32, secs: u64) -> (f64, f64, u64, f64) {
    use hyper_util::client::legacy::Client;
    let client: Client<_, axum::body::Body> = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let uri: hyper::Uri = format!("{url}/v1/chat/completions").parse().unwrap();
    let body = bytes::Bytes::from(body.to_owned());
    let total = u64::from(rate) * secs;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let results = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    // How late each call left the generator: the generator's own stalls (it shares
    // the machine), which count against every target alike.
    let lags = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at).await;
        let (client, uri, body, results, errors, lags) = (
            client.clone(),
            uri.clone(),
            body.clone(),
            Arc::clone(&results),
            Arc::clone(&errors),
            Arc::clone(&lags),
        );
        tasks.push(tokio::spawn(async move {
            let lag = (tokio::time::Instant::now() - at).as_secs_f64() * 1000.0;
            lags.lock().unwrap().push(lag);
            let req = hyper::Request::post(uri)
                .header("content-type", "application/json")
                .header("authorization", format!("Bearer {TOKEN}"))
                .body(axum::body::Body::from(body))
                .unwrap();
            let ok = match client.request(req).await {
                Ok(resp) => {
                    let good = resp.status().is_success();
                    let mut b = resp.into_body();
                    loop {
                        match std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut b), cx))
                            .await
                        {
                            Some(Ok(_)) => {}
                            Some(Err(_)) => break false,
                            None => break good,
                        }
                    }
                }
                Err(_) => false,
            };
            let ms = (tokio::time::Instant::now() - at).as_secs_f64() * 1000.0;
            if ok {
                results.lock().unwrap().push(ms);
            } else {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut v = std::mem::take(&mut *results.lock().unwrap());
    let mut l = std::mem::take(&mut *lags.lock().unwrap());
    (
        pct(&mut v, 0.5),
        pct(&mut v, 0.99),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        pct(&mut l, 0.99),
    )
}
