//! `decide` latency with 10,000 approved models and a 50-policy Cedar set,
//! uncached and cached, and `fold` throughput. Run with
//! `cargo bench -p modelgate-governance --bench governance`.
//!
//! First a percentile pass (each call timed on its own; p50/p99 printed as
//! a Markdown table), then criterion's own estimates. Baselines measured in
//! the same run: Cedar's evaluation alone (what `decide` adds around it),
//! and a plain `HashMap` lookup of the same request (what the cache adds).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use common::*;
use criterion::{criterion_group, Criterion, Throughput};
use modelgate_governance::policy::{compile, evaluate, evaluate_reference, PolicyInput};
use modelgate_governance::*;

const MODELS: usize = 10_000;
const SAMPLES: usize = 50_000;

fn policies() -> String {
    let mut s = String::from("@id(\"permit-infer\") permit(principal, action == Action::\"infer\", resource);\n");
    for i in 0..49 {
        let cond = match i % 4 {
            0 => format!("context.scope like \"blocked/{i}/*\""),
            1 => format!("resource.name == \"retired-{i}\""),
            2 => format!("principal in Group::\"suspended-{i}\""),
            _ => format!("principal.hasTag(\"clearance\") && principal.getTag(\"clearance\") == \"revoked-{i}\""),
        };
        s.push_str(&format!(
            "@id(\"forbid-{i}\") forbid(principal, action, resource) when {{ {cond} }};\n"
        ));
    }
    s
}

/// The same set plus `n` forbids the slicer cannot settle (a disjunction),
/// so Cedar has to run on them for every request.
fn policies_with_unsliceable(n: usize) -> String {
    let mut s = policies();
    for i in 0..n {
        s.push_str(&format!(
            "@id(\"either-{i}\") forbid(principal, action, resource) when {{ context.scope like \"frozen/{i}/*\" || resource.name == \"frozen-{i}\" }};\n"
        ));
    }
    s
}

struct Setup {
    state: State,
    requests: Vec<DecisionRequest>,
    log: Vec<Vec<u8>>,
}

fn setup() -> Setup {
    let w = World::new();
    let mut log = vec![w.genesis(), w.policy(&policies()), w.enroll("node-1", &["prod/*"])];
    let mut digests = Vec::with_capacity(MODELS);
    let t = Instant::now();
    for i in 0..MODELS {
        let (m, d) = w.model(&format!("bench-{i}"), 70, &w.pipeline);
        log.push(m);
        log.push(w.approval(&d, &["prod/*"], (0, 1 << 40), "low", &format!("CHG-{i}"), &[&w.alice]));
        digests.push(d);
    }
    eprintln!("built {} entries in {:?}", log.len(), t.elapsed());
    let state = fold(&log[0], log.iter().map(Vec::as_slice)).unwrap();
    let requests = (0..SAMPLES)
        .map(|i| DecisionRequest {
            model: digests[(i * 7919) % MODELS].clone(),
            scope: format!("prod/app-{}/inference", i % 50),
            node: "node-1".into(),
            principal: format!("svc-{}", i % 200),
            groups: vec![format!("team-{}", i % 10)],
            attributes: vec![("clearance".into(), "standard".into())],
        })
        .collect();
    Setup { state, requests, log }
}

fn pct(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0;
    (at(0.50), at(0.99))
}

fn percentiles(s: &Setup) {
    let now = 1_800_000_000;
    let mut uncached = Vec::with_capacity(SAMPLES);
    for r in &s.requests {
        let t = Instant::now();
        let d = decide(&s.state, r, now);
        uncached.push(t.elapsed().as_nanos() as u64);
        assert!(d.allow, "{d:?}");
    }
    // The policy evaluation alone, sliced and not, on the bench's set and on
    // the set with 5 policies the slicer must leave to Cedar.
    let time_policies = |text: &str, f: fn(&modelgate_governance::policy::Policies, &PolicyInput<'_>) -> _| {
        let compiled = compile(text).unwrap();
        let mut v = Vec::with_capacity(SAMPLES);
        let mut left = 0;
        for r in &s.requests {
            let m = &s.state.models[&r.model];
            let input = PolicyInput {
                principal: &r.principal,
                groups: &r.groups,
                attributes: &r.attributes,
                model: &m.digest,
                model_name: &m.name,
                model_version: &m.version,
                risk_tier: "low",
                scope: &r.scope,
                node: &r.node,
                via_exception: false,
            };
            left += compiled.left_to_cedar(&input);
            let t = Instant::now();
            black_box(f(&compiled, &input));
            v.push(t.elapsed().as_nanos() as u64);
        }
        (v, left as f64 / SAMPLES as f64)
    };
    let (cedar, _) = time_policies(&policies(), evaluate_reference);
    let (sliced, left) = time_policies(&policies(), evaluate);
    let (cedar5, _) = time_policies(&policies_with_unsliceable(5), evaluate_reference);
    let (sliced5, left5) = time_policies(&policies_with_unsliceable(5), evaluate);
    let mut cache = DecisionCache::new(1 << 20);
    for r in &s.requests {
        cache.decide(&s.state, r, now);
    }
    let mut cached = Vec::with_capacity(SAMPLES);
    for r in &s.requests {
        let t = Instant::now();
        black_box(cache.decide(&s.state, r, now));
        cached.push(t.elapsed().as_nanos() as u64);
    }
    let map: HashMap<&DecisionRequest, u64> = s.requests.iter().map(|r| (r, 1)).collect();
    let mut lookups = Vec::with_capacity(SAMPLES);
    for r in &s.requests {
        let t = Instant::now();
        black_box(map.get(r));
        lookups.push(t.elapsed().as_nanos() as u64);
    }
    println!("| case ({SAMPLES} calls, {MODELS} approved models, 50 policies) | p50 µs | p99 µs |");
    println!("|---|---|---|");
    for (name, v) in [
        ("decide, uncached", uncached),
        ("baseline: Cedar alone on the whole set (no slicing)", cedar),
        (
            &*format!("policy evaluation, sliced ({left:.1} policies left to Cedar per call)"),
            sliced,
        ),
        ("Cedar alone, set + 5 unsliceable policies", cedar5),
        (
            &*format!("policy evaluation, sliced, set + 5 unsliceable ({left5:.1} left to Cedar per call)"),
            sliced5,
        ),
        ("decide, cached", cached),
        ("baseline: HashMap lookup of the request", lookups),
    ] {
        let (p50, p99) = pct(v);
        println!("| {name} | {p50:.2} | {p99:.2} |");
    }
    let t = Instant::now();
    let st = fold(&s.log[0], s.log.iter().map(Vec::as_slice)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "\nfold: {} entries ({MODELS} models with OMS verification, {MODELS} approvals) in {secs:.2} s = {:.0} entries/s",
        s.log.len(),
        s.log.len() as f64 / secs
    );
    let t = Instant::now();
    black_box(st.digest());
    println!("state digest of the folded state: {:?}", t.elapsed());
}

fn criterion_benches(c: &mut Criterion) {
    let s = setup_once();
    let now = 1_800_000_000;
    let mut g = c.benchmark_group("decide");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("uncached", |b| {
        b.iter(|| {
            i = (i + 1) % s.requests.len();
            black_box(decide(&s.state, &s.requests[i], now))
        })
    });
    let mut cache = DecisionCache::new(1 << 20);
    g.bench_function("cached", |b| {
        b.iter(|| {
            i = (i + 1) % s.requests.len();
            black_box(cache.decide(&s.state, &s.requests[i], now))
        })
    });
    g.finish();
    // Approvals only: Ed25519 verification and bookkeeping, no OMS.
    let approvals: Vec<&[u8]> = s
        .log
        .iter()
        .skip(3)
        .skip(1)
        .step_by(2)
        .take(2000)
        .map(Vec::as_slice)
        .collect();
    let prefix: Vec<&[u8]> = s.log.iter().take(3 + 2 * 2000).map(Vec::as_slice).collect();
    let mut g = c.benchmark_group("fold");
    g.sample_size(10);
    g.throughput(Throughput::Elements(prefix.len() as u64));
    g.bench_function("2000 models + 2000 approvals", |b| {
        b.iter(|| fold(&s.log[0], prefix.iter().copied()).unwrap())
    });
    let base = fold(&s.log[0], prefix.iter().copied()).unwrap();
    g.throughput(Throughput::Elements(1));
    g.bench_function("check one approval", |b| {
        let mut k = 0;
        b.iter(|| {
            k = (k + 1) % approvals.len();
            // Already applied, so check() refuses it as a duplicate after
            // doing all the signature and rule work.
            black_box(base.check(approvals[k]).is_err())
        })
    });
    g.finish();
}

fn setup_once() -> &'static Setup {
    static S: std::sync::OnceLock<Setup> = std::sync::OnceLock::new();
    S.get_or_init(setup)
}

criterion_group!(benches, criterion_benches);

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        percentiles(setup_once());
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
