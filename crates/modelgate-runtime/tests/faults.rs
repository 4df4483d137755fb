//! The running node in-process, driven through its seams with faults
//! injected: a real authority (in this process, over loopback HTTP) behind
//! an `AuthorityClient` that can lie, stall or switch to a forked log; a
//! real lineage log behind a `LineageLog` that can refuse writes; a `Clock`
//! that jumps. The gateway's router is called directly (no socket). Each
//! fault must contain the model, or deny the call, with its reason and the
//! EG-MODEL-001 check that failed; and each one passing must let it serve
//! again only through the whole lifecycle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
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
use modelgate_node::config::NodeConfig;
use modelgate_node::FetchError;
use modelgate_runtime::lineage::{Receipt, Then};
use modelgate_runtime::{
    AuthorityClient, Clock, Event, HttpAuthority, LineageError, LineageLog, ModelStatus, Parts, Runtime, Shared,
    StoreLineage,
};
use modelgate_tlog::{Hash, KeyType, SignerKey};
use serde_json::{json, Value};
use tower::ServiceExt as _;

const TOKEN: &str = "svc-token";
const OTHER: &str = "other-token";
const AUDITOR: &str = "auditor-token";

/// An authority served on a loopback port.
struct Served {
    authority: Arc<Authority>,
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn serve(dir: &Path) -> Served {
    let authority = Authority::open(dir).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let a = Arc::clone(&authority);
    rt.spawn(async move { modelgate_authority::serve(a, listener, std::future::pending()).await });
    Served {
        authority,
        url,
        _rt: rt,
    }
}

fn submit(a: &Authority, entry: &[u8]) -> u64 {
    match a.submit(entry.to_vec()).unwrap().blocking_recv().unwrap() {
        Outcome::Accepted { index, .. } => index,
        other => panic!("refused: {other:?}"),
    }
}

/// What the authority client does.
const HONEST: u8 = 0;
/// Every checkpoint served has one bit of its root flipped.
const LIE: u8 = 1;
/// Every read hangs until released.
const STALL: u8 = 2;
/// Reads go to the other authority (same keys, a different history).
const FORK: u8 = 3;

struct FaultyAuthority {
    honest: HttpAuthority,
    fork: HttpAuthority,
    mode: AtomicU8,
    released: (Mutex<bool>, Condvar),
}

impl FaultyAuthority {
    fn set(&self, mode: u8) {
        *self.released.0.lock().unwrap() = mode != STALL;
        self.mode.store(mode, Ordering::SeqCst);
        self.released.1.notify_all();
    }
}

impl AuthorityClient for FaultyAuthority {
    fn get(&self, path: &str, limit: u64) -> Result<(u16, Vec<u8>), FetchError> {
        match self.mode.load(Ordering::SeqCst) {
            LIE => {
                let (status, mut body) = self.honest.get(path, limit)?;
                if path == "/log/checkpoint" {
                    // Line 3 is the root hash (base64): change one character.
                    let text = String::from_utf8(body).unwrap();
                    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
                    let c = if lines[2].starts_with('A') { "B" } else { "A" };
                    lines[2].replace_range(0..1, c);
                    body = lines.join("\n").into_bytes();
                }
                Ok((status, body))
            }
            STALL => {
                let g = self.released.0.lock().unwrap();
                let _g = self
                    .released
                    .1
                    .wait_timeout_while(g, Duration::from_secs(60), |r| !*r)
                    .unwrap();
                self.honest.get(path, limit)
            }
            FORK => self.fork.get(path, limit),
            _ => self.honest.get(path, limit),
        }
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<(u16, Vec<u8>), FetchError> {
        self.honest.post(path, content_type, body)
    }

    fn url(&self, path: &str) -> String {
        self.honest.url(path)
    }
}

/// The real lineage log, with writes that can be refused.
struct FaultyLineage {
    inner: StoreLineage,
    refuse: AtomicBool,
}

impl FaultyLineage {
    fn refused(&self) -> Option<LineageError> {
        self.refuse
            .load(Ordering::SeqCst)
            .then(|| LineageError::Write("injected: no space left on device".into()))
    }
}

impl LineageLog for FaultyLineage {
    fn append(&self, record: Vec<u8>) -> Result<Receipt, LineageError> {
        match self.refused() {
            Some(e) => Err(e),
            None => self.inner.append(record),
        }
    }
    fn append_then(&self, record: Vec<u8>, then: Then) -> Result<(), LineageError> {
        match self.refused() {
            Some(e) => Err(e),
            None => self.inner.append_then(record, then),
        }
    }
    fn size(&self) -> Result<u64, LineageError> {
        self.inner.size()
    }
    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, LineageError> {
        self.inner.entries(start, end)
    }
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, LineageError> {
        self.inner.latest_checkpoint()
    }
    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, LineageError> {
        self.inner.checkpoint(size)
    }
    fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LineageError> {
        self.inner.inclusion_proof(index, size)
    }
    fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LineageError> {
        self.inner.consistency_proof(from, to)
    }
    fn root(&self, size: u64) -> Result<Hash, LineageError> {
        self.inner.root(size)
    }
    fn audit(&self) -> Result<u64, LineageError> {
        self.inner.audit()
    }
}

/// The system clock shifted by an offset the test sets.
#[derive(Default)]
struct JumpingClock(AtomicI64);

impl Clock for JumpingClock {
    fn now(&self) -> u64 {
        let real = modelgate_runtime::SystemClock.now() as i64;
        (real + self.0.load(Ordering::SeqCst)) as u64
    }
}

struct World {
    _dir: tempfile::TempDir,
    a: Served,
    b: Served,
    alice: SigningKey,
    digest: String,
    authority: Arc<FaultyAuthority>,
    lineage: Arc<FaultyLineage>,
    clock: Arc<JumpingClock>,
    shared: Arc<Shared>,
    events: Arc<Mutex<Vec<Event>>>,
    app: axum::Router,
    rt: tokio::runtime::Runtime,
    _mock: modelgate_testkit::MockServer,
}

fn b64(k: &SigningKey) -> String {
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

fn sign_model(dir: &Path, key: modelgate_oms::PrivateKey) -> (Vec<u8>, String) {
    let opts = modelgate_oms::HashOptions {
        method: modelgate_oms::Method::Files,
        hash: modelgate_oms::HashAlgorithm::Sha256,
        allow_symlinks: false,
        ignore: vec![],
        threads: Some(1),
    };
    let manifest = modelgate_oms::hash_model(dir, &opts, None).unwrap();
    let bundle = modelgate_oms::sign_manifest(&manifest, &modelgate_oms::Signer::Key(key)).unwrap();
    (bundle, hex::encode(manifest.root_digest()))
}

/// Two authorities with the same keys and the same first six entries (the
/// second one's data directory is a copy of the first's, made before either
/// opened), a signed and approved model, and a node serving it through the
/// gateway with the faulty seams.
fn world() -> World {
    world_with(5)
}

/// [`world`], the node configured with `max_staleness` (the trust root signs 30 s).
fn world_with(max_staleness: u64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let (adir, bdir) = (dir.path().join("a"), dir.path().join("b"));
    let report = modelgate_authority::init(&adir, "faults.example/gov").unwrap();
    copy_dir(&adir, &bdir);
    let (a, b) = (serve(&adir), serve(&bdir));

    let root = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&report.root_key).unwrap()).unwrap();
    let k = |s: u8| SigningKey::from_bytes(&[s; 32]);
    let (alice, pipeline, padmin, nadmin) = (k(10), k(20), k(30), k(40));
    let model_key = modelgate_oms::PrivateKey::P256(p256::ecdsa::SigningKey::from_bytes(&[70; 32].into()).unwrap());
    let model_pem = model_key.public_key().to_pem().unwrap();
    let doc = a.authority.state().trust_root.as_ref().unwrap().doc.clone();
    let mut v = serde_json::to_value(&doc).unwrap();
    v["root_version"] = json!(2);
    for (id, role, key, model_keys) in [
        ("alice", "approver", &alice, vec![]),
        ("pipeline", "model-signer", &pipeline, vec![model_pem]),
        ("padmin", "policy-admin", &padmin, vec![]),
        ("nadmin", "node-admin", &nadmin, vec![]),
    ] {
        v["principals"][id] = json!({"roles": [role], "keys": [b64(key)], "model_keys": model_keys});
    }
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 4096]).unwrap();
    let (bundle, digest) = sign_model(&model, model_key);
    let bundle_path = dir.path().join("model.sig");
    std::fs::write(&bundle_path, &bundle).unwrap();
    let node_key = SignerKey::from_seed("node-1/lineage", KeyType::Ed25519, &[50; 32]).unwrap();
    let entries = [
        Envelope::sign(&to_canonical(&v).unwrap(), &[&root]).unwrap(),
        ModelEntry::new("credit", "1", &bundle).sign(&[&pipeline]).unwrap(),
        PolicySetEntry::new("p", "permit(principal, action, resource);", "")
            .sign(&[&padmin])
            .unwrap(),
        NodeEnrollmentEntry::new("node-1", &node_key.verifier().to_string(), vec!["prod/*".into()])
            .sign(&[&nadmin])
            .unwrap(),
        approval(&alice, &digest, "CHG-1"),
    ];
    for e in &entries {
        submit(&a.authority, e);
        submit(&b.authority, e);
    }

    let mock = modelgate_testkit::MockServer::start(modelgate_testkit::Mock {
        chunks: 2,
        delay: Duration::from_millis(1),
    })
    .unwrap();
    let ndir = dir.path().join("node");
    std::fs::create_dir_all(&ndir).unwrap();
    std::fs::write(ndir.join("node.skey"), format!("{}\n", node_key.to_private_string())).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN.as_bytes()));
    std::fs::write(
        ndir.join("node.toml"),
        format!(
            "node = \"node-1\"\nauthority = \"{}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\n\
             max_staleness_seconds = {max_staleness}\ndata_dir = \"data\"\nanchor_interval_seconds = 1\nupstream = \"{}\"\n\
             status_access = \"token\"\nmetrics_access = \"token\"\n\n\
             [models.credit]\ndir = \"{}\"\nbundle = \"{}\"\n\n\
             [callers.svc]\ntoken_sha256 = \"{sha}\"\nscopes = [\"prod/credit/scoring\"]\n\n\
             [callers.other]\ntoken_sha256 = \"{}\"\nscopes = [\"prod/credit/scoring\"]\n\n\
             [callers.auditor]\ntoken_sha256 = \"{}\"\nscopes = []\nlineage = \"all\"\nmonitor = true\n",
            a.url,
            report.trust_root.display(),
            mock.url(),
            model.display(),
            bundle_path.display(),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(OTHER.as_bytes())),
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(AUDITOR.as_bytes())),
        ),
    )
    .unwrap();
    let config = NodeConfig::load(&ndir.join("node.toml"), std::iter::empty()).unwrap();
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let lineage = Arc::new(FaultyLineage {
        inner: StoreLineage::open(&config.data_dir.join("lineage.db"), &node_key).unwrap(),
        refuse: AtomicBool::new(false),
    });
    let authority = Arc::new(FaultyAuthority {
        honest: HttpAuthority::new(&a.url),
        fork: HttpAuthority::new(&b.url),
        mode: AtomicU8::new(HONEST),
        released: (Mutex::new(true), Condvar::new()),
    });
    let clock = Arc::new(JumpingClock::default());
    let parts = Parts {
        pinned: std::fs::read(&report.trust_root).unwrap(),
        config,
        key: node_key,
        authority: Arc::clone(&authority) as Arc<dyn AuthorityClient>,
        lineage: Ok(Arc::clone(&lineage) as Arc<dyn LineageLog>),
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
    };
    let runtime = Runtime::new(parts, Duration::from_millis(25)).unwrap();
    let shared = runtime.shared();
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let seen = Arc::clone(&events);
    runtime.spawn(move |e| seen.lock().unwrap().push(e.clone())).unwrap();
    let gw = Arc::new(modelgate_runtime::gateway::gateway(Arc::clone(&shared)).unwrap());
    let app = modelgate_runtime::gateway::router(gw);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = World {
        _dir: dir,
        a,
        b,
        alice,
        digest,
        authority,
        lineage,
        clock,
        shared,
        events,
        app,
        rt,
        _mock: mock,
    };
    w.wait_for("Serving", |s| matches!(s, ModelStatus::Serving { .. }));
    w
}

fn approval(alice: &SigningKey, digest: &str, ticket: &str) -> Vec<u8> {
    ApprovalEntry::new(
        digest,
        vec!["prod/credit/*".into()],
        0,
        4_000_000_000,
        RiskTier::Low,
        ticket,
    )
    .sign(&[alice])
    .unwrap()
}

fn copy_dir(from: &Path, to: &PathBuf) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

impl World {
    fn model(&self) -> ModelStatus {
        self.shared.snapshot().models["credit"].clone()
    }

    fn wait_for(&self, what: &str, ok: impl Fn(&ModelStatus) -> bool) -> ModelStatus {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.model();
            if ok(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "never {what}; the model is {s:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn contained(&self, reason: &str) -> modelgate_runtime::Why {
        match self.wait_for(
            reason,
            |s| matches!(s, ModelStatus::Contained(w) if w.reason.code() == reason),
        ) {
            ModelStatus::Contained(w) => w,
            _ => unreachable!(),
        }
    }

    /// A chat call through the router: status, headers, body, and how long it took.
    fn call(&self) -> (u16, axum::http::HeaderMap, Value, Duration) {
        self.call_with(json!({"model": "credit", "messages": [{"role": "user", "content": "hi"}]}).to_string())
    }

    fn call_with(&self, body: String) -> (u16, axum::http::HeaderMap, Value, Duration) {
        self.call_as(Some(TOKEN), body)
    }

    /// A GET through the router with an optional bearer token: status and body.
    fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).unwrap();
        self.rt.block_on(async {
            let r = self.app.clone().oneshot(req).await.unwrap();
            let (parts, body) = r.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 22).await.unwrap();
            (parts.status.as_u16(), String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    fn call_as(&self, token: Option<&str>, body: String) -> (u16, axum::http::HeaderMap, Value, Duration) {
        let mut req = Request::post("/v1/chat/completions");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let started = Instant::now();
        let (status, headers, body) = self.rt.block_on(async {
            let r = self.app.clone().oneshot(req).await.unwrap();
            let (parts, body) = r.into_parts();
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            (parts.status.as_u16(), parts.headers, bytes)
        });
        let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, headers, v, started.elapsed())
    }

    /// The call is refused with `status`, `code` and `check`.
    fn refused(&self, status: u16, code: &str, check: &str) -> Value {
        let (st, h, b, _) = self.call();
        assert_eq!(
            (st, b["error"]["code"].as_str(), b["error"]["check"].as_str()),
            (status, Some(code), Some(check)),
            "{b}"
        );
        assert_eq!(h["x-modelgate-check"], check);
        b
    }

    fn serves(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (st, h, b, _) = self.call();
            if st == 200 {
                assert!(h.contains_key("x-modelgate-lineage-id"));
                return;
            }
            assert!(Instant::now() < deadline, "never served again: {st} {b}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn event(&self, reason: &str) -> Event {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self
                .events
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|e| e.reason.map(|r| r.code()) == Some(reason))
            {
                return e.clone();
            }
            assert!(Instant::now() < deadline, "no {reason} event");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn an_authority_that_lies_about_its_checkpoint_contains_the_model() {
    let w = world();
    w.serves();
    w.authority.set(LIE);
    let why = w.contained("SignatureInvalid");
    assert_eq!(why.check.code(), "CryptographicVerificationValidation");
    w.refused(503, "SignatureInvalid", "CryptographicVerificationValidation");
    let e = w.event("SignatureInvalid");
    assert_eq!(e.check.map(|c| c.code()), Some("CryptographicVerificationValidation"));
    // The authority heard of it, with the check, from the node's own signed report.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.a.authority.state().nodes["node-1"]
        .last_report
        .as_ref()
        .map(|r| r.reason.code())
        != Some("SignatureInvalid")
    {
        assert!(Instant::now() < deadline, "no containment report reached the authority");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = w.a.authority.state().nodes["node-1"].last_report.clone().unwrap();
    assert_eq!(r.check.code(), "CryptographicVerificationValidation");
    w.authority.set(HONEST);
    w.serves();
}

#[test]
fn an_authority_that_forks_its_log_is_caught_and_never_trusted_again() {
    let w = world();
    w.serves();
    // The two histories part: one more approval on each side, not the same one.
    submit(&w.a.authority, &approval(&w.alice, &w.digest, "CHG-A"));
    submit(&w.b.authority, &approval(&w.alice, &w.digest, "CHG-B"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.shared.snapshot().view.as_ref().map(|v| v.checkpoint.size) != Some(7) {
        assert!(Instant::now() < deadline, "the node never synced to size 7");
        std::thread::sleep(Duration::from_millis(20));
    }
    w.authority.set(FORK);
    let why = w.contained("CoordinationInconsistent");
    assert_eq!(why.check.code(), "DistributedRuntimeConsistency");
    assert!(why.detail.contains("fork"), "{}", why.detail);
    w.refused(503, "CoordinationInconsistent", "DistributedRuntimeConsistency");
    // Back on the honest authority nothing was lost: it serves again.
    w.authority.set(HONEST);
    w.serves();
    // And the fork is still refused: the node trusts what it verified, not who answers.
    w.authority.set(FORK);
    w.contained("CoordinationInconsistent");
}

#[test]
fn a_stalled_authority_ages_the_view_without_holding_up_a_call() {
    let w = world();
    w.serves();
    w.authority.set(STALL);
    // The loop is stuck in a read; 10 s pass on the node's clock (the
    // node's bound is 5 s).
    std::thread::sleep(Duration::from_millis(100));
    w.clock.0.store(10, Ordering::SeqCst);
    let (st, _, b, took) = w.call();
    assert_eq!(
        (st, b["error"]["code"].as_str(), b["error"]["check"].as_str()),
        (503, Some("SyncInterrupted"), Some("GovernancePolicySynchronization")),
        "{b}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the call waited for the stalled loop: {took:?}"
    );
    w.clock.0.store(0, Ordering::SeqCst);
    w.authority.set(HONEST);
    w.serves();
}

#[test]
fn a_clock_that_jumps_forward_or_back_does_not_keep_a_view_fresh() {
    let w = world();
    w.serves();
    // Forward: the view is older than the bound at once.
    w.clock.0.store(120, Ordering::SeqCst);
    w.refused(503, "SyncInterrupted", "GovernancePolicySynchronization");
    let why = w.contained("SyncInterrupted");
    assert_eq!(why.check.code(), "GovernancePolicySynchronization");
    w.clock.0.store(0, Ordering::SeqCst);
    w.serves();
    // Back an hour: every fresh checkpoint now looks like it is from the
    // future and no sync succeeds. The last view must not stay fresh for
    // ever: by the monotonic clock it ages out within the bound (5 s here).
    w.clock.0.store(-3600, Ordering::SeqCst);
    let started = Instant::now();
    let why = w.contained("SyncInterrupted");
    assert!(why.detail.contains("future"), "{}", why.detail);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "contained only after {:?} (bound 5 s)",
        started.elapsed()
    );
    w.refused(503, "SyncInterrupted", "GovernancePolicySynchronization");
    w.clock.0.store(0, Ordering::SeqCst);
    w.serves();
}

#[test]
fn a_lineage_log_that_refuses_a_write_denies_the_call_and_contains_the_model() {
    let w = world();
    w.serves();
    w.lineage.refuse.store(true, Ordering::SeqCst);
    let (st, h, b, _) = w.call();
    assert_eq!(
        (st, b["error"]["code"].as_str(), b["error"]["check"].as_str()),
        (503, Some("AuditDiscontinuity"), Some("ExecutionLineageContinuity")),
        "{b}"
    );
    // No record, no call: nothing was forwarded, and no lineage id is claimed.
    assert!(!h.contains_key("x-modelgate-lineage-id"));
    // The loop re-checks at once and stops the lifecycle where the record is written.
    let why = w.contained("AuditDiscontinuity");
    assert_eq!(
        (why.check.code(), why.step.map(|s| s.code())),
        ("ImmutableAuditSynchronization", Some("Persisting"))
    );
    let status = modelgate_runtime::gateway::status_json(&w.shared);
    assert_eq!(status["models"]["credit"]["lifecycle_step"], "Persisting", "{status}");
    assert_eq!(status["models"]["credit"]["lifecycle_step_number"], 9, "{status}");
    w.lineage.refuse.store(false, Ordering::SeqCst);
    w.serves();
    // The stopped lifecycle could not be recorded while writes failed; the
    // recovered one is, with all ten steps.
    let size = w.lineage.size().unwrap();
    let records = w.lineage.entries(0, size).unwrap();
    let last_lifecycle: Value = records
        .iter()
        .rev()
        .map(|r| serde_json::from_slice::<Value>(r).unwrap())
        .find(|r| r["type"] == "lifecycle")
        .unwrap();
    assert_eq!(
        last_lifecycle["transitions"].as_array().unwrap().len(),
        8,
        "{last_lifecycle}"
    );
}

#[test]
fn the_trust_roots_signed_freshness_bound_holds_when_the_node_would_allow_more() {
    // The node allows 60 s; the trust root signs 30 s. 35 s later the view
    // is too old, whatever the node's configuration says.
    let w = world_with(60);
    w.serves();
    w.clock.0.store(35, Ordering::SeqCst);
    w.refused(503, "SyncInterrupted", "GovernancePolicySynchronization");
    let why = w.contained("SyncInterrupted");
    assert!(why.detail.contains("max 30"), "{}", why.detail);
    w.clock.0.store(0, Ordering::SeqCst);
    w.serves();
}

#[test]
fn a_revoked_model_is_refused_as_revoked_not_as_an_unverifiable_transition() {
    let w = world();
    w.serves();
    let revocation = modelgate_governance::RevocationEntry::new(&w.digest, "drift", "INC-1")
        .sign(&[&w.alice])
        .unwrap();
    submit(&w.a.authority, &revocation);
    let why = w.contained("UnverifiableTransition");
    assert_eq!(why.decision.map(|d| d.as_str()), Some("Revoked"));
    // Once contained, and on every call after: 403 Revoked, not 503.
    for _ in 0..3 {
        w.refused(403, "Revoked", "ModelScopeContinuity");
    }
    let status = modelgate_runtime::gateway::status_json(&w.shared);
    assert_eq!(status["models"]["credit"]["decision"], "Revoked", "{status}");
}

#[test]
fn a_body_that_is_not_a_call_is_refused_and_recorded() {
    let w = world();
    w.serves();
    let (st, h, b, _) = w.call_with("{not json".into());
    assert_eq!((st, b["error"]["code"].as_str()), (400, Some("invalid_request")), "{b}");
    let id: u64 = h["x-modelgate-lineage-id"].to_str().unwrap().parse().unwrap();
    let record: Value = serde_json::from_slice(&w.lineage.entries(id, id + 1).unwrap()[0]).unwrap();
    assert_eq!(
        (record["type"].as_str(), record["code"].as_str()),
        (Some("denial"), Some("invalid_request"))
    );
    assert_eq!(record["principal"], "svc");
    assert!(
        record["request_sha256"].as_str().is_some_and(|s| s.len() == 64),
        "{record}"
    );
}

#[test]
fn a_call_for_a_model_with_a_huge_name_is_refused_and_recorded_with_the_name_cut() {
    let w = world();
    w.serves();
    let name = "é".repeat(35_000); // 70,000 bytes, two per character
    let (st, h, b, _) = w.call_with(json!({"model": name, "messages": []}).to_string());
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (404, Some("model_not_found")),
        "{}",
        &b.to_string()[..200]
    );
    let id: u64 = h["x-modelgate-lineage-id"].to_str().unwrap().parse().unwrap();
    let record: Value = serde_json::from_slice(&w.lineage.entries(id, id + 1).unwrap()[0]).unwrap();
    let kept = record["model"].as_str().unwrap();
    assert!(
        kept.len() <= modelgate_runtime::gateway::RECORDED_MODEL_MAX && name.starts_with(kept),
        "{}",
        kept.len()
    );
    assert_eq!(record["model_bytes"], 70_000, "the record says the name was cut");
    assert_eq!(record["code"], "model_not_found");
}

#[test]
fn a_call_without_a_token_is_refused_on_its_head_and_its_body_never_read() {
    let w = world();
    w.serves();
    let (st, h, _, _) = w.call_as(None, "x".repeat(1 << 20));
    assert_eq!(st, 401);
    let id: u64 = h["x-modelgate-lineage-id"].to_str().unwrap().parse().unwrap();
    let record: Value = serde_json::from_slice(&w.lineage.entries(id, id + 1).unwrap()[0]).unwrap();
    assert_eq!(record["code"], "invalid_api_key");
    assert!(
        record.get("request_sha256").is_none(),
        "a body never read has no digest: {record}"
    );
}

#[test]
fn lineage_is_read_with_a_callers_token_and_only_of_its_own_calls() {
    let w = world();
    w.serves();
    let (st, h, _, _) = w.call();
    assert_eq!(st, 200);
    let id = h["x-modelgate-lineage-id"].to_str().unwrap().to_owned();
    let path = format!("/lineage/{id}");
    // No token, or a token of no caller: 401, and nothing of the record.
    for token in [None, Some("not-a-caller")] {
        let (st, body) = w.get(&path, token);
        assert_eq!(st, 401, "{body}");
        assert!(!body.contains("svc") && !body.contains(&w.digest), "{body}");
    }
    // Another caller: 403, its own calls only.
    let (st, body) = w.get(&path, Some(OTHER));
    assert_eq!(st, 403, "{body}");
    assert!(
        body.contains("not one of its calls") && !body.contains(&w.digest),
        "{body}"
    );
    // The caller itself, and an auditor with lineage = "all".
    for token in [TOKEN, AUDITOR] {
        let (st, body) = w.get(&path, Some(token));
        assert!(st == 200 || st == 202, "{st} {body}");
        assert!(body.contains("\"principal\":\"svc\""), "{body}");
    }
    // A refusal without a token belongs to no caller: the auditor alone reads it.
    let (st, h, _, _) = w.call_as(None, json!({"model": "credit"}).to_string());
    assert_eq!(st, 401);
    let anon = format!("/lineage/{}", h["x-modelgate-lineage-id"].to_str().unwrap());
    assert_eq!(w.get(&anon, Some(TOKEN)).0, 403);
    assert_eq!(w.get(&anon, Some(AUDITOR)).0, 200);
    // The auditor has no scope: it reads, it never calls.
    let (st, _, b, _) = w.call_as(Some(AUDITOR), json!({"model": "credit"}).to_string());
    assert_eq!(
        (st, b["error"]["code"].as_str()),
        (403, Some("ScopeNotPermitted")),
        "{b}"
    );
}

#[test]
fn status_and_metrics_set_to_token_need_a_monitor_caller() {
    let w = world();
    w.serves();
    for path in ["/status", "/metrics"] {
        assert_eq!(w.get(path, None).0, 401, "{path} without a token");
        let (st, body) = w.get(path, Some(TOKEN));
        assert_eq!(st, 403, "{path} with a caller that is no monitor: {body}");
        assert!(body.contains("monitor = true"), "{body}");
        let (st, body) = w.get(path, Some(AUDITOR));
        assert_eq!(st, 200, "{path}: {body}");
    }
    // /healthz and /readyz stay open.
    assert_eq!(w.get("/healthz", None).0, 200);
    assert_eq!(w.get("/readyz", None).0, 200);
}

#[test]
fn refusals_without_a_token_are_recorded_up_to_a_bound_then_only_counted() {
    let w = world();
    w.serves();
    let before = w.lineage.size().unwrap();
    let mut recorded = 0;
    for _ in 0..200 {
        let (st, h, _, _) = w.call_as(Some("guess"), json!({"model": "credit"}).to_string());
        assert_eq!(st, 401);
        recorded += usize::from(h.contains_key("x-modelgate-lineage-id"));
    }
    // Other records (the earlier call's completion) may land meanwhile: count the refusals'.
    let after = w.lineage.size().unwrap();
    let written = w
        .lineage
        .entries(before, after)
        .unwrap()
        .iter()
        .filter(|r| serde_json::from_slice::<Value>(r).is_ok_and(|v| v["code"] == "invalid_api_key"))
        .count();
    assert_eq!(written, recorded, "a record without its id, or an id without a record");
    // The burst (40) and what refilled meanwhile (10/s); far from 200.
    assert!((40..100).contains(&recorded), "{recorded} of 200 recorded");
    let (_, metrics) = w.get("/metrics", Some(AUDITOR));
    let unrecorded = metrics
        .lines()
        .find_map(|l| l.strip_prefix("modelgate_gateway_unrecorded_denials_total "))
        .unwrap();
    assert_eq!(unrecorded.parse::<usize>().unwrap(), 200 - recorded, "{metrics}");
    // A caller with a valid token is recorded whatever the bucket says.
    let (st, h, _, _) = w.call();
    assert_eq!(st, 200);
    assert!(h.contains_key("x-modelgate-lineage-id"));
}
