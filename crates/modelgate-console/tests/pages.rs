//! The console against a scripted world, in-process: an authority with a
//! rotated trust root, a model whose name, ticket and policy text are
//! hostile markup, approvals, an exception, a revocation, two policy
//! versions, an enrolled node sending heartbeats. Every page answers with
//! the CSP, shows what the state holds, and shows hostile values as text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use modelgate_authority::service::Outcome;
use modelgate_authority::Authority;
use modelgate_governance::{
    to_canonical, ApprovalEntry, EntryPayload as _, Envelope, ExceptionEntry, ModelEntry, NodeEnrollmentEntry,
    PolicySetEntry, RevocationEntry, RiskTier,
};
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(2)>";

struct World {
    _dir: tempfile::TempDir,
    authority: Arc<Authority>,
    app: axum::Router,
    rt: tokio::runtime::Runtime,
    digest: String,
    node_key: SignerKey,
}

fn submit(a: &Authority, entry: Vec<u8>) -> u64 {
    match a.submit(entry).unwrap().blocking_recv().unwrap() {
        Outcome::Accepted { index, .. } => index,
        Outcome::Refused(e) => panic!("refused: {} {}", e.rule, e.detail),
        Outcome::Failed(m) | Outcome::SignerUnavailable(m) => panic!("failed: {m}"),
        Outcome::NotSequencer => panic!("not the sequencer"),
    }
}

fn b64(k: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

fn world(prefix: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let adir = dir.path().join("a");
    let report = modelgate_authority::init(&adir, "console.example/gov").unwrap();
    let authority = Authority::open(&adir).unwrap();
    let root = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&report.root_key).unwrap()).unwrap();
    let k = |s: u8| SigningKey::from_bytes(&[s; 32]);
    let (alice, bob, pipeline, padmin, nadmin) = (k(10), k(11), k(20), k(30), k(40));
    let model_key = modelgate_oms::PrivateKey::P256(p256::ecdsa::SigningKey::from_bytes(&[70; 32].into()).unwrap());
    let model_pem = model_key.public_key().to_pem().unwrap();
    let mut v = serde_json::to_value(&authority.state().trust_root.as_ref().unwrap().doc).unwrap();
    v["root_version"] = json!(2);
    for (id, role, key, model_keys) in [
        ("alice", "approver", &alice, vec![]),
        ("bob", "approver", &bob, vec![]),
        ("pipeline", "model-signer", &pipeline, vec![model_pem]),
        ("padmin", "policy-admin", &padmin, vec![]),
        ("nadmin", "node-admin", &nadmin, vec![]),
    ] {
        v["principals"][id] = json!({"roles": [role], "keys": [b64(key)], "model_keys": model_keys});
    }
    submit(
        &authority,
        Envelope::sign(&to_canonical(&v).unwrap(), &[&root]).unwrap(),
    );

    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), "w").unwrap();
    let opts = modelgate_oms::HashOptions {
        method: modelgate_oms::Method::Files,
        hash: modelgate_oms::HashAlgorithm::Sha256,
        allow_symlinks: false,
        ignore: vec![],
        threads: Some(1),
    };
    let manifest = modelgate_oms::hash_model(&model, &opts, None).unwrap();
    let bundle = modelgate_oms::sign_manifest(&manifest, &modelgate_oms::Signer::Key(model_key)).unwrap();
    let digest = hex::encode(manifest.root_digest());
    submit(
        &authority,
        ModelEntry::new(SCRIPT, IMG, &bundle).sign(&[&pipeline]).unwrap(),
    );
    let approval = |ticket: &str| {
        ApprovalEntry::new(&digest, vec!["prod/*".into()], 0, 4_000_000_000, RiskTier::High, ticket)
            .sign(&[&alice, &bob])
            .unwrap()
    };
    submit(&authority, approval(&format!("CHG-1 {IMG}")));
    submit(
        &authority,
        ExceptionEntry::new(
            &digest,
            vec!["staging/*".into()],
            4_000_000_000,
            RiskTier::Low,
            "RISK-9",
            SCRIPT,
        )
        .sign(&[&alice])
        .unwrap(),
    );
    let p1 = "@id(\"all\") permit(principal, action, resource);";
    let first = submit(&authority, PolicySetEntry::new("v1", p1, "").sign(&[&padmin]).unwrap());
    let first_id = authority.state().policy.as_ref().unwrap().id.clone();
    let _ = first;
    let p2 = format!(
        "// {SCRIPT}\n@id(\"prod-only\") permit(principal, action, resource) when {{ context.scope like \"prod/*\" }};"
    );
    submit(
        &authority,
        PolicySetEntry::new("v2", &p2, &first_id).sign(&[&padmin]).unwrap(),
    );
    let node_key = SignerKey::from_seed("node-1/lineage", KeyType::Ed25519, &[50; 32]).unwrap();
    submit(
        &authority,
        NodeEnrollmentEntry::new("node-1", &node_key.verifier().to_string(), vec!["prod/*".into()])
            .sign(&[&nadmin])
            .unwrap(),
    );
    submit(
        &authority,
        RevocationEntry::new(&digest, &format!("drift {IMG}"), "INC-7")
            .sign(&[&alice])
            .unwrap(),
    );
    authority.refresh_checkpoint().unwrap();

    let console = modelgate_console::Console::new(Arc::clone(&authority), prefix);
    let routes = modelgate_console::router(console);
    let routes = if prefix.is_empty() {
        routes
    } else {
        axum::Router::new().nest(prefix, routes)
    };
    let app = modelgate_authority::router(Arc::clone(&authority)).merge(routes);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    World {
        _dir: dir,
        authority,
        app,
        rt,
        digest,
        node_key,
    }
}

impl World {
    fn get(&self, path: &str) -> (u16, axum::http::HeaderMap, String) {
        let req = Request::get(path).body(Body::empty()).unwrap();
        self.rt.block_on(async {
            let r = self.app.clone().oneshot(req).await.unwrap();
            let (parts, body) = r.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
            (
                parts.status.as_u16(),
                parts.headers,
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
    }

    fn page(&self, path: &str) -> String {
        let (st, h, body) = self.get(path);
        assert_eq!(st, 200, "{path}: {body}");
        assert_eq!(
            h["content-security-policy"].to_str().unwrap(),
            modelgate_console::CSP,
            "{path}"
        );
        assert!(!modelgate_console::CSP.contains("unsafe"), "the CSP allows unsafe-*");
        // Our own script tag is the only one, and no hostile markup is live.
        assert_eq!(body.matches("<script").count(), 1, "{path}: {body}");
        assert!(!body.contains("<img"), "{path}: {body}");
        assert!(
            !body.contains("onerror=alert(2)>"),
            "{path}: hostile attribute unescaped"
        );
        body
    }

    fn heartbeat(&self, time: u64, models: Value) -> u16 {
        let hb = modelgate_governance::heartbeat::sign_heartbeat(
            &self.node_key,
            "node-1",
            time,
            &json!({"models": models, "checkpoint_size": 9, "staleness_seconds": 1, "lineage_size": 12,
                    "counters": {"requests": time % 1000, "denied:ScopeNotApproved": 2}}),
        )
        .unwrap();
        let req = Request::post("/api/v1/nodes/node-1/heartbeat")
            .header("content-type", "text/plain")
            .body(Body::from(hb))
            .unwrap();
        self.rt
            .block_on(async { self.app.clone().oneshot(req).await.unwrap().status().as_u16() })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn every_page_shows_the_state_with_hostile_values_as_text() {
    let w = world("");
    let overview = w.page("/");
    assert!(overview.contains("console.example/gov"), "{overview}");
    assert!(overview.contains("id=\"log-size\">9 entries"), "{overview}");
    assert!(overview.contains("version 2"), "{overview}");
    assert!(
        overview.contains("node-admin") || overview.contains("node-enrollment"),
        "{overview}"
    );

    let models = w.page("/models");
    assert!(models.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{models}");
    assert!(models.contains("Revoked"), "{models}");
    assert!(models.contains("pipeline"), "{models}");
    let none = w.page("/models?q=zzz&page=7");
    assert!(none.contains("1 registered models, 0 matching."), "{none}");
    let by_digest = w.page(&format!("/models?q={}", &w.digest[..12]));
    assert!(by_digest.contains("1 matching; 1–1 shown"), "{by_digest}");

    let model = w.page(&format!("/models/{}", w.digest));
    for want in [
        "alice, bob",
        "high",
        "prod/*",
        "CHG-1 &quot;&gt;&lt;img",
        "staging/*",
        "RISK-9",
        "INC-7",
        "drift",
    ] {
        assert!(model.contains(want), "model page lacks {want}: {model}");
    }
    let (st, _, _) = w.get("/models/00ff");
    assert_eq!(st, 404);

    let policies = w.page("/policies");
    assert!(policies.contains("Version 2: v2 (in force)"), "{policies}");
    assert!(policies.contains("Changes from version 1"), "{policies}");
    assert!(policies.contains("<ins>+ // &lt;script&gt;"), "{policies}");
    assert!(policies.contains("<del>- @id(&quot;all&quot;)"), "{policies}");
    assert!(policies.contains("padmin"), "{policies}");

    let tr = w.page("/trust-root");
    assert!(tr.contains("Version 2 (in force)") && tr.contains("Version 1"), "{tr}");
    assert!(tr.contains("root-1") && tr.contains("nadmin"), "{tr}");

    let log = w.page("/entries");
    for kind in [
        "trust-root",
        "model",
        "approval",
        "exception",
        "policy-set",
        "node-enrollment",
        "revocation",
    ] {
        assert!(log.contains(&format!("<td>{kind}</td>")), "log lacks {kind}: {log}");
    }
    let e = w.page("/entries/3");
    assert!(e.contains("/api/v1/tlog-proof/3"), "{e}");
    assert!(e.contains("alice, bob"), "{e}");
    assert_eq!(w.get("/entries/9").0, 404);
    assert_eq!(w.get("/entries/x").0, 400);
    let (st, h, _) = w.get("/find?q=3");
    assert_eq!((st, h["location"].to_str().unwrap()), (303, "/entries/3"));
    let (st, h, _) = w.get(&format!("/find?q={}", w.digest));
    assert_eq!(st, 303);
    assert_eq!(h["location"].to_str().unwrap(), format!("/models/{}", w.digest));
    assert_eq!(w.get("/find?q=nothing").0, 404);
    // The API is untouched beside the console.
    assert_eq!(w.get("/api/v1/state").0, 200);
    assert_eq!(w.get("/log/checkpoint").0, 200);
}

#[test]
fn a_containment_in_a_heartbeat_is_on_the_dashboard_at_once() {
    let w = world("");
    let health = w.page("/health");
    assert!(health.contains("data-node=\"node-1\""), "{health}");
    assert!(health.contains("never"), "{health}");
    let t = now();
    assert_eq!(w.heartbeat(t, json!({SCRIPT: {"state": "Serving", "digest": w.digest, "lifecycle_step": "AuditVerified", "lifecycle_step_number": 10}})), 204);
    let v: Value = serde_json::from_str(&w.get("/health.json").2).unwrap();
    assert_eq!(v["nodes"][0]["status"], "healthy", "{v}");
    let started = std::time::Instant::now();
    assert_eq!(w.heartbeat(t + 11, json!({SCRIPT: {"state": "Contained", "reason": "UnauthorizedModification", "lifecycle_step": "IntegrityVerification", "lifecycle_step_number": 3}})), 204);
    let v: Value = serde_json::from_str(&w.get("/health.json").2).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_eq!(v["nodes"][0]["status"], "containing", "{v}");
    assert_eq!(v["nodes"][0]["models"][0]["reason"], "UnauthorizedModification");
    assert_eq!(v["nodes"][0]["history"].as_array().unwrap().len(), 2, "{v}");
    let health = w.page("/health");
    assert!(health.contains("UnauthorizedModification"), "{health}");
    assert!(health.contains("&lt;script&gt;alert(1)&lt;/script&gt;: "), "{health}");
    let overview = w.page("/");
    assert!(overview.contains("id=\"nodes-containing\">1"), "{overview}");
}

#[test]
fn behind_a_prefix_every_link_keeps_it() {
    let w = world("/governance");
    let body = w.page("/governance/models");
    let hrefs: Vec<&str> = body
        .split("href=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .collect();
    assert!(hrefs.len() > 8, "{hrefs:?}");
    for h in hrefs {
        assert!(
            h.starts_with("/governance/") || h == "#main",
            "a link outside the prefix: {h}"
        );
    }
    assert!(body.contains("src=\"/governance/assets/console.js\""));
    let (st, h, js) = w.get("/governance/assets/console.js");
    assert_eq!(st, 200);
    assert!(h["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(!js.contains("innerHTML"), "the script writes markup");
    assert_eq!(w.get("/governance/assets/console.css").0, 200);
    assert_eq!(w.get("/governance/health.json").0, 200);
    let _ = &w.authority;
}

/// Every byte percent-encoded: any string survives the query string.
fn encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn the_lineage_explorer_takes_any_text_in_any_field_and_escapes_it() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let w = world("");
    let mut runner = TestRunner::new(Config {
        cases: 128,
        ..Config::default()
    });
    let fields = [
        "id", "model", "node", "caller", "scope", "decision", "code", "since", "until", "order", "page",
    ];
    runner
        .run(
            &(0..fields.len(), any::<String>(), "<xq[a-z]{3,8}>"),
            |(f, text, tag)| {
                let text = format!("{text}{tag}é");
                let path = format!("/lineage?{}={}", fields[f], encode(&text));
                let (st, _, body) = w.get(&path);
                prop_assert!(st == 200 || st == 400, "{path}: {st}: {body}");
                prop_assert!(!body.contains(&tag), "{path}: {tag} unescaped");
                let (st, _, body) = w.get(&format!("/lineage/{}/{}", encode(&text), encode(&text)));
                prop_assert!(st < 500, "{st}: {body}");
                Ok(())
            },
        )
        .unwrap();
}
