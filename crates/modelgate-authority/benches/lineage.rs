//! The replicated lineage at scale, in-process:
//!
//! - ingest: RECORDS gateway-shaped records (10 nodes, 100 callers, 50
//!   models, 20 scopes, 5% denials, 30 days of time) shipped in batches of
//!   5,000 under each node's signed checkpoint, through `Lineage::ingest`
//!   (mirror append, fsync, index); records per second and CPU per record;
//! - search: the explorer's queries over them (by lineage id, caller, model
//!   name, digest prefix, node and a day, denials by reason, scope, no
//!   filter, a deep page), each run QUERIES times: p50 and p99. The baseline,
//!   in the same run, is a lookup of one record by its primary key in the
//!   same index (the floor any search pays).
//!
//! `cargo bench -p modelgate-authority --bench lineage`
//! (MODELGATE_BENCH_RECORDS, default 1,000,000; MODELGATE_BENCH_QUERIES,
//! default 200).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_authority::lineage::{Lineage, LineageBatch, Search};
use modelgate_tlog::{leaf_hash, Checkpoint, KeyType, MemoryTree, SignerKey};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time of this thread, from the scheduler's own account.
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(s.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0))
}

const NODES: u64 = 10;
const START: u64 = 1_790_000_000;
const SPAN: u64 = 30 * 86_400;

fn digest(m: u64) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!("model-{m}").as_bytes()))
}

/// Record `i` of node `n` (time grows with `i`).
fn record(n: u64, i: u64, total_per_node: u64) -> Vec<u8> {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n;
    let time = START + i * SPAN / total_per_node.max(1);
    let m = h % 50;
    let denied = h.is_multiple_of(20);
    let base = serde_json::json!({
        "endpoint": "chat",
        "principal": format!("caller-{}", (h >> 8) % 100),
        "scope": format!("prod/unit-{}/svc", (h >> 16) % 20),
        "request_sha256": hex::encode(leaf_hash(&i.to_le_bytes())),
        "model": format!("model-{m}"),
        "digest": digest(m),
        "governance": {"size": 1000, "root": "00", "state_digest": "00"},
        "type": if denied { "denial" } else { "request" },
        "time": time,
        "node": format!("node-{n}"),
    });
    let mut v = base;
    if denied {
        v["code"] = serde_json::json!(["ScopeNotApproved", "PolicyDeny", "Revoked"][(h % 3) as usize]);
        v["status"] = serde_json::json!(403);
    } else {
        v["approval"] = serde_json::json!(hex::encode(leaf_hash(&m.to_le_bytes())));
        v["policies"] = serde_json::json!(["permit-approved"]);
        v["trace_id"] = serde_json::json!(hex::encode(&leaf_hash(&h.to_le_bytes())[..16]));
    }
    serde_json::to_vec(&v).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let total = env("MODELGATE_BENCH_RECORDS", 1_000_000);
    let queries = env("MODELGATE_BENCH_QUERIES", 200) as usize;
    let dir = tempfile::tempdir().unwrap();
    let lineage = Lineage::open(&dir.path().join("lineage")).unwrap();
    let per_node = total / NODES;
    let keys: Vec<SignerKey> = (0..NODES)
        .map(|n| SignerKey::from_seed(&format!("node-{n}/lineage"), KeyType::Ed25519, &[n as u8 + 1; 32]).unwrap())
        .collect();
    let vkeys: Vec<String> = keys.iter().map(|k| k.verifier().to_string()).collect();
    // Each node's own tree, for its checkpoints and consistency proofs.
    let mut trees: Vec<MemoryTree> = (0..NODES).map(|_| MemoryTree::new()).collect();

    // Ingest, node after node in batches of 5,000 (interleaved by batch).
    let started = Instant::now();
    let mut cpu = Duration::ZERO;
    let batch = 5_000u64;
    let mut from = 0;
    while from < per_node {
        let to = (from + batch).min(per_node);
        for n in 0..NODES {
            let records: Vec<Vec<u8>> = (from..to).map(|i| record(n, i, per_node)).collect();
            let t = &mut trees[n as usize];
            for r in &records {
                t.append(leaf_hash(r));
            }
            let note = Checkpoint {
                origin: keys[n as usize].name().to_owned(),
                size: to,
                root: t.root(),
                extensions: vec![],
            }
            .sign(&keys[n as usize])
            .unwrap()
            .to_bytes();
            let proof = if from == 0 {
                vec![]
            } else {
                modelgate_tlog::consistency_proof(from, to, &*t).unwrap()
            };
            let b = LineageBatch {
                from,
                records: records.iter().map(|r| B64.encode(r)).collect(),
                checkpoint: String::from_utf8(note).unwrap(),
                consistency: proof.iter().map(|h| B64.encode(h)).collect(),
            };
            let c0 = thread_cpu();
            lineage
                .ingest(&format!("node-{n}"), &vkeys[n as usize], None, &b, 0)
                .unwrap();
            cpu += thread_cpu() - c0;
        }
        from = to;
        if from % 50_000 == 0 {
            eprintln!("ingested {} records", from * NODES);
        }
    }
    let wall = started.elapsed();
    let n = per_node * NODES;
    println!(
        "ingest: {n} records in {:.1} s: {:.0} records/s, {:.1} µs CPU per record (ingest thread)",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / n as f64
    );
    assert_eq!(lineage.indexed().unwrap(), n);

    let q = |f: &dyn Fn(&mut Search)| {
        let mut s = Search::default();
        f(&mut s);
        s
    };
    let cases: Vec<(&str, Search, u64)> = vec![
        (
            "one record by lineage id and node",
            q(&|s| {
                s.id = Some(per_node / 2);
                s.node = Some("node-3".into());
            }),
            0,
        ),
        ("by caller", q(&|s| s.caller = Some("caller-42".into())), 0),
        ("by model name", q(&|s| s.model = Some("model-7".into())), 0),
        (
            "by digest prefix (12 hex)",
            q(&|s| s.model = Some(digest(7)[..12].to_owned())),
            0,
        ),
        (
            "by node and one day",
            q(&|s| {
                s.node = Some("node-5".into());
                s.since = Some(START + 10 * 86_400);
                s.until = Some(START + 11 * 86_400);
            }),
            0,
        ),
        (
            "denials by reason",
            q(&|s| {
                s.decision = Some("deny".into());
                s.code = Some("Revoked".into());
            }),
            0,
        ),
        (
            "by scope, oldest first",
            q(&|s| {
                s.scope = Some("prod/unit-3/svc".into());
                s.oldest_first = true;
            }),
            0,
        ),
        ("no filter, newest first", Search::default(), 0),
        ("no filter, page 200", Search::default(), 200 * 50),
        (
            "caller and model and a week",
            q(&|s| {
                s.caller = Some("caller-9".into());
                s.model = Some("model-9".into());
                s.since = Some(START);
                s.until = Some(START + 7 * 86_400);
            }),
            0,
        ),
    ];
    // Baseline: one row by its primary key (node, idx) in the same index.
    let mut base = Vec::with_capacity(queries);
    for k in 0..queries {
        let s = q(&|s| {
            s.node = Some(format!("node-{}", k as u64 % NODES));
            s.id = Some((k as u64 * 7919) % per_node);
            s.all_kinds = true;
        });
        let t = Instant::now();
        let rows = lineage.search(&s, 0, 50).unwrap();
        base.push(t.elapsed());
        assert_eq!(rows.len(), 1);
    }
    base.sort();
    let b99 = percentile(&base, 0.99);
    println!(
        "baseline (primary key): p50 {:.2} ms, p99 {:.2} ms",
        percentile(&base, 0.5).as_secs_f64() * 1e3,
        b99.as_secs_f64() * 1e3
    );
    println!("| query | rows | p50 ms | p99 ms | p99 / baseline p99 |");
    println!("|---|---|---|---|---|");
    let mut worst = Duration::ZERO;
    for (name, s, offset) in &cases {
        let mut t = Vec::with_capacity(queries);
        let mut rows = 0;
        for _ in 0..queries {
            let st = Instant::now();
            rows = lineage.search(s, *offset, 50).unwrap().len();
            t.push(st.elapsed());
        }
        t.sort();
        let p99 = percentile(&t, 0.99);
        worst = worst.max(p99);
        println!(
            "| {name} | {rows} | {:.2} | {:.2} | {:.1} |",
            percentile(&t, 0.5).as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            p99.as_secs_f64() / b99.as_secs_f64()
        );
    }
    println!("worst p99: {:.2} ms (target ≤ 100 ms)", worst.as_secs_f64() * 1e3);
}
