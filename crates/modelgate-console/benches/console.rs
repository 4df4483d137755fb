//! Console pages under a large governance state: server time per page
//! (p50, p99), bytes per page with its assets, and the process's resident
//! memory with the console in use. Not a test: it prints figures.
//!
//! The world: 10,000 registered models (each its own OMS bundle), one
//! approval each, 100 enrolled nodes with a heartbeat each (five models in
//! each), one policy set, and approvals on top up to 100,000 log entries.
//! Pages are asked in-process through the router (no socket), so the time
//! is the server's: the page's build and its serialisation. The baseline,
//! in the same run, is the authority's JSON API over the same state
//! (`/api/v1/models`, `/api/v1/state`).
//!
//! `cargo bench -p modelgate-console --bench console`
//! (MODELGATE_BENCH_MODELS, default 10,000; MODELGATE_BENCH_ENTRIES, default
//! 100,000; MODELGATE_BENCH_REQUESTS per page, default 200;
//! MODELGATE_BENCH_KEEP=1 keeps the authority's data directory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use modelgate_authority::service::Outcome;
use modelgate_authority::Authority;
use modelgate_governance::{
    to_canonical, ApprovalEntry, EntryPayload as _, Envelope, ModelEntry, NodeEnrollmentEntry, PolicySetEntry, RiskTier,
};
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::json;
use tower::ServiceExt as _;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Submit many entries with up to 4,000 in flight (the writer commits them
/// in groups); panics on a refusal.
fn submit_all(a: &Authority, entries: impl Iterator<Item = Vec<u8>>) {
    let mut pending = std::collections::VecDeque::new();
    for e in entries {
        pending.push_back(a.submit(e).unwrap());
        if pending.len() >= 4_000 {
            wait(pending.pop_front().unwrap());
        }
    }
    for rx in pending {
        wait(rx);
    }
}

fn wait(rx: tokio::sync::oneshot::Receiver<Outcome>) {
    match rx.blocking_recv().unwrap() {
        Outcome::Accepted { .. } => {}
        Outcome::Refused(e) => panic!("refused: {} {}", e.rule, e.detail),
        Outcome::Failed(m) | Outcome::SignerUnavailable(m) => panic!("failed: {m}"),
        Outcome::NotSequencer => panic!("not the sequencer"),
    }
}

fn b64(k: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e3
}

fn main() {
    let models = env("MODELGATE_BENCH_MODELS", 10_000);
    let entries = env("MODELGATE_BENCH_ENTRIES", 100_000);
    let requests = env("MODELGATE_BENCH_REQUESTS", 200);
    let dir = tempfile::tempdir_in(std::env::var("MODELGATE_BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into())).unwrap();
    let adir = dir.path().join("a");
    let report = modelgate_authority::init(&adir, "bench.example/gov").unwrap();
    let authority = Authority::open(&adir).unwrap();
    let rss_before = rss_kib();
    let built = Instant::now();

    let root = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&report.root_key).unwrap()).unwrap();
    let k = |s: u8| SigningKey::from_bytes(&[s; 32]);
    let (alice, pipeline, padmin, nadmin) = (k(10), k(20), k(30), k(40));
    let model_key = p256::ecdsa::SigningKey::from_bytes(&[70; 32].into()).unwrap();
    let oms_key = modelgate_oms::PrivateKey::P256(model_key.clone());
    let mut v = serde_json::to_value(&authority.state().trust_root.as_ref().unwrap().doc).unwrap();
    v["root_version"] = json!(2);
    for (id, role, key, model_keys) in [
        ("alice", "approver", &alice, vec![]),
        (
            "pipeline",
            "model-signer",
            &pipeline,
            vec![oms_key.public_key().to_pem().unwrap()],
        ),
        ("padmin", "policy-admin", &padmin, vec![]),
        ("nadmin", "node-admin", &nadmin, vec![]),
    ] {
        v["principals"][id] = json!({"roles": [role], "keys": [b64(key)], "model_keys": model_keys});
    }
    submit_all(
        &authority,
        std::iter::once(Envelope::sign(&to_canonical(&v).unwrap(), &[&root]).unwrap()),
    );

    // 10,000 models, each a one-file model with its own bundle.
    let files = dir.path().join("models");
    std::fs::create_dir_all(&files).unwrap();
    let opts = modelgate_oms::HashOptions {
        method: modelgate_oms::Method::Files,
        hash: modelgate_oms::HashAlgorithm::Sha256,
        allow_symlinks: false,
        ignore: vec![],
        threads: Some(1),
    };
    let mut digests = Vec::new();
    let mut regs = Vec::new();
    for m in 0..models {
        let f = files.join(format!("m{m}.bin"));
        std::fs::write(&f, format!("weights {m}")).unwrap();
        let manifest = modelgate_oms::hash_model(&f, &opts, None).unwrap();
        let bundle = modelgate_oms::sign_manifest(
            &manifest,
            &modelgate_oms::Signer::Key(modelgate_oms::PrivateKey::P256(model_key.clone())),
        )
        .unwrap();
        digests.push(hex::encode(manifest.root_digest()));
        regs.push(
            ModelEntry::new(&format!("model-{m}"), "1.0", &bundle)
                .sign(&[&pipeline])
                .unwrap(),
        );
    }
    submit_all(&authority, regs.into_iter());
    submit_all(
        &authority,
        std::iter::once(
            PolicySetEntry::new("bench", "@id(\"all\") permit(principal, action, resource);", "")
                .sign(&[&padmin])
                .unwrap(),
        ),
    );
    let node_keys: Vec<SignerKey> = (0..100u8)
        .map(|n| SignerKey::from_seed(&format!("node-{n}/lineage"), KeyType::Ed25519, &[n; 32]).unwrap())
        .collect();
    submit_all(
        &authority,
        node_keys.iter().enumerate().map(|(n, key)| {
            NodeEnrollmentEntry::new(&format!("node-{n}"), &key.verifier().to_string(), vec!["prod/*".into()])
                .sign(&[&nadmin])
                .unwrap()
        }),
    );
    let size = authority.state().size;
    let approvals = entries.saturating_sub(size);
    submit_all(
        &authority,
        (0..approvals).map(|i| {
            let d = &digests[(i % models) as usize];
            ApprovalEntry::new(
                d,
                vec!["prod/*".into()],
                0,
                4_000_000_000,
                RiskTier::Low,
                &format!("CHG-{i}"),
            )
            .sign(&[&alice])
            .unwrap()
        }),
    );
    authority.refresh_checkpoint().unwrap();
    let size = authority.state().size;
    eprintln!(
        "world: {size} entries, {models} models, 100 nodes, built in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let rss_world = rss_kib();
    let console = modelgate_console::Console::new(Arc::clone(&authority), "");
    let app =
        modelgate_authority::router(Arc::clone(&authority)).merge(modelgate_console::router(Arc::clone(&console)));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let get = |path: &str| -> (u16, usize, Duration) {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let started = Instant::now();
        let (status, n) = rt.block_on(async {
            let r = app.clone().oneshot(req).await.unwrap();
            let status = r.status().as_u16();
            let b = axum::body::to_bytes(r.into_body(), 1 << 30).await.unwrap();
            (status, b.len())
        });
        (status, n, started.elapsed())
    };
    // Heartbeats: each node reports five models Serving (all from one
    // "address" here, so the per-client bound on unauthenticated writes is lifted).
    authority.unauthenticated.set_rate(1e6);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (n, key) in node_keys.iter().enumerate() {
        let ms: serde_json::Map<String, serde_json::Value> = (0..5)
            .map(|j| {
                let m = (n * 5 + j) % models as usize;
                (format!("model-{m}"), json!({"state": "Serving", "digest": digests[m], "lifecycle_step": "AuditVerified", "lifecycle_step_number": 10}))
            })
            .collect();
        let hb = modelgate_governance::heartbeat::sign_heartbeat(
            key,
            &format!("node-{n}"),
            t,
            &json!({"models": ms, "checkpoint_size": size, "staleness_seconds": 1, "lineage_size": 1000, "counters": {"requests": 5000}}),
        )
        .unwrap();
        let req = Request::post(format!("/api/v1/nodes/node-{n}/heartbeat"))
            .header("content-type", "text/plain")
            .body(Body::from(hb))
            .unwrap();
        let st = rt.block_on(async { app.clone().oneshot(req).await.unwrap().status().as_u16() });
        assert_eq!(st, 204);
    }
    // The index: built once, as the refresher would after start.
    let indexed = Instant::now();
    while console.index.lock().unwrap().size < size {
        console.refresh();
    }
    eprintln!(
        "index of {size} entries built in {:.2} s",
        indexed.elapsed().as_secs_f64()
    );

    let digest = digests[0].clone();
    let pages: Vec<(&str, String)> = vec![
        ("baseline: /api/v1/state (JSON)", "/api/v1/state".into()),
        ("baseline: /api/v1/models (JSON)", "/api/v1/models".into()),
        ("/ overview", "/".into()),
        ("/models", "/models".into()),
        ("/models/{digest}", format!("/models/{digest}")),
        ("/policies", "/policies".into()),
        ("/trust-root", "/trust-root".into()),
        ("/entries (newest 50)", "/entries".into()),
        ("/entries?from=50000", "/entries?from=50000".into()),
        ("/entries/{index}", "/entries/60000".into()),
        ("/health", "/health".into()),
        ("/health.json", "/health.json".into()),
    ];
    let (_, css, _) = get("/assets/console.css");
    let (_, js, _) = get("/assets/console.js");
    println!("| page | p50 ms | p99 ms | bytes (page) | bytes with assets |");
    println!("|---|---|---|---|---|");
    for (name, path) in &pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..requests {
            let (st, n, d) = get(path);
            assert_eq!(st, 200, "{path}");
            bytes = n;
            times.push(d);
        }
        let p50 = pct(&mut times, 0.5);
        let p99 = pct(&mut times, 0.99);
        let with = if path.starts_with("/api") || path.ends_with(".json") {
            "—".to_owned()
        } else {
            (bytes + css + js).to_string()
        };
        println!("| {name} | {p50:.3} | {p99:.3} | {bytes} | {with} |");
    }
    println!(
        "resident memory: {} MiB at open, {} MiB once the world was built through this process, {} MiB after the index and every page",
        rss_before / 1024,
        rss_world / 1024,
        rss_kib() / 1024
    );
    if std::env::var_os("MODELGATE_BENCH_KEEP").is_some() {
        // For measuring a real `authority serve` on this log afterwards.
        authority.shutdown();
        println!("kept the authority's data in {}", adir.display());
        let _ = dir.keep();
    }
}
