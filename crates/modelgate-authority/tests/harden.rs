//! The authority as an attacker and a bad disk would try it, in-process over
//! real TCP: reads after appends, a stuck write, concurrent token creation,
//! cross-site and unauthenticated write floods, slow clients, restarts from
//! a snapshot (and from a tampered one).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use modelgate_authority::{data, tokens, Authority, TokenRole};
use modelgate_governance::{to_canonical, Envelope};
use serde_json::{json, Value};

struct Running {
    url: String,
    authority: Arc<Authority>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(dir: &Path) -> Self {
        Self::start_with(dir, modelgate_http::Limits::default())
    }

    fn start_with(dir: &Path, limits: modelgate_http::Limits) -> Self {
        let authority = Authority::open(dir).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let a = Arc::clone(&authority);
        // Two async workers, as on the two-core machines we run on: a
        // handler that blocks one of them is visible.
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let a2 = Arc::clone(&a);
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let app = modelgate_authority::router(a2);
                modelgate_http::serve(listener, app, limits, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            });
            a.shutdown();
        });
        let addr = addr_rx.recv().unwrap();
        Self {
            url: format!("http://{addr}"),
            authority,
            stop: Some(tx),
            server: Some(server),
        }
    }

    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            let _ = h.join();
        }
    }
}

/// A test that fails still stops its server (and closes its files, so a
/// filesystem mounted for it can be unmounted).
impl Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent().get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
}

fn post(
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: &[u8],
    origin: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut req = agent()
        .post(&format!("{url}/api/v1/entries"))
        .header("Content-Type", content_type);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    if let Some(o) = origin {
        req = req.header("Origin", o);
    }
    let mut r = req.send(body).unwrap();
    let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        retry,
    )
}

struct World {
    dir: tempfile::TempDir,
    root: SigningKey,
    admin: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let report = data::init(&data_dir, "test.example/governance").unwrap();
    let root = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&report.root_key).unwrap()).unwrap();
    let admin = tokens::create(&data::DataDir::new(&data_dir).tokens(), TokenRole::Admin, "test").unwrap();
    World { dir, root, admin }
}

impl World {
    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

/// The next trust-root version, signed by the root key: an entry any test
/// can append as often as it likes.
fn rotation(a: &Authority, root: &SigningKey) -> Vec<u8> {
    let doc = a.state().trust_root.as_ref().unwrap().doc.clone();
    let mut v = serde_json::to_value(&doc).unwrap();
    v["root_version"] = json!(doc.root_version + 1);
    Envelope::sign(&to_canonical(&v).unwrap(), &[root]).unwrap()
}

fn append_rotation(r: &Running, w: &World) -> u64 {
    let entry = rotation(&r.authority, &w.root);
    let (status, v, _) = post(&r.url, Some(&w.admin), "application/json", &entry, None);
    assert_eq!(status, 201, "{v}");
    v["index"].as_u64().unwrap()
}

#[test]
fn reads_see_every_durable_entry_whatever_handle_serves_them() {
    let w = world();
    let r = Running::start(&w.data());
    // Open pooled read handles at size 1.
    assert_eq!(get(&format!("{}/api/v1/entries/0", r.url)).0, 200);
    assert_eq!(get(&format!("{}/log/tile/entries/000.p/1", r.url)).0, 200);
    for _ in 0..50 {
        append_rotation(&r, &w);
    }
    let mut failures = vec![];
    for i in 0..51u64 {
        let (status, body) = get(&format!("{}/api/v1/entries/{i}", r.url));
        if status != 200 {
            failures.push(format!("entry {i}: {status} {body}"));
        }
        let (status, body) = get(&format!("{}/api/v1/state?size={}", r.url, i + 1));
        if status != 200 || serde_json::from_str::<Value>(&body).unwrap()["size"] != i + 1 {
            failures.push(format!("state at {}: {status} {body}", i + 1));
        }
        let (status, body) = get(&format!("{}/api/v1/proof/inclusion?index={i}", r.url));
        if status != 200 {
            failures.push(format!("inclusion of {i}: {status} {body}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    r.stop();
}

#[test]
fn a_stuck_write_stops_neither_reads_nor_health_and_writes_resume() {
    let w = world();
    let r = Running::start(&w.data());
    append_rotation(&r, &w);
    // Another process holds the database's write lock: the writer's next
    // commit waits in SQLite (up to its 5 s busy timeout), as on a disk
    // whose fsync does not return.
    let blocker = rusqlite::Connection::open(data::DataDir::new(&w.data()).store()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let entry = rotation(&r.authority, &w.root);
    let (url, admin) = (r.url.clone(), w.admin.clone());
    let stuck = std::thread::spawn(move || post(&url, Some(&admin), "application/json", &entry, None));
    // Two clients polling the state the whole time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pollers: Vec<_> = (0..2)
        .map(|_| {
            let (url, stop) = (r.url.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    assert_eq!(get(&format!("{url}/api/v1/state")).0, 200);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        for path in [
            "/healthz",
            "/log/checkpoint",
            "/metrics",
            "/api/v1/state",
            "/api/v1/models",
        ] {
            let t = Instant::now();
            let (status, _) = get(&format!("{}{path}", r.url));
            slowest = slowest.max(t.elapsed());
            assert_eq!(status, 200, "{path} during a stuck write");
        }
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a read took {slowest:?} during a stuck write"
    );
    let (status, body) = get(&format!("{}/readyz", r.url));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("writer-stalled"), "{body}");
    // The write gives up (nothing appended) with 503 and Retry-After.
    let (status, v, retry) = stuck.join().unwrap();
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("store-unavailable")),
        "{v}"
    );
    assert_eq!(retry.as_deref(), Some("1"));
    let (status, body) = get(&format!("{}/readyz", r.url));
    assert!(status == 503 && body.contains("writer-failing"), "{status} {body}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for p in pollers {
        p.join().unwrap();
    }
    // The disk is back: the same write succeeds, at the next index.
    blocker.execute_batch("ROLLBACK;").unwrap();
    assert_eq!(append_rotation(&r, &w), 2);
    assert_eq!(get(&format!("{}/readyz", r.url)).0, 200);
    r.stop();
}

#[test]
fn concurrent_token_creation_loses_no_token() {
    let w = world();
    let path = data::DataDir::new(&w.data()).tokens();
    let created: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                s.spawn(move || {
                    (0..8)
                        .map(|i| tokens::create(&path, TokenRole::Node, &format!("t{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(created.len(), 64);
    let check = tokens::Tokens::new(&path);
    let known = created.iter().filter(|t| check.check(t).unwrap().is_some()).count();
    assert_eq!(known, 64, "tokens printed but not usable");
}

#[test]
fn writes_refuse_cross_site_requests_and_unauthenticated_floods() {
    let w = world();
    let r = Running::start(&w.data());
    let entry = rotation(&r.authority, &w.root);
    // A browser's "simple" request: text/plain or a form, no preflight.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (status, v, _) = post(&r.url, Some(&w.admin), ct, &entry, None);
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (415, Some("content-type")),
            "{ct}: {v}"
        );
    }
    // A page on another origin, even with the right content type.
    let (status, v, _) = post(
        &r.url,
        Some(&w.admin),
        "application/json",
        &entry,
        Some("https://evil.example"),
    );
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("cross-origin")),
        "{v}"
    );
    // Its own origin is fine.
    let own = r.url.clone();
    let (status, v, _) = post(&r.url, Some(&w.admin), "application/json", &entry, Some(&own));
    assert_eq!(status, 201, "{v}");
    // A flood of unauthenticated node-signed entries (any key: the fold
    // refuses them, but each costs the writer) is cut off per client.
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let report = Envelope::sign(
        &to_canonical(
            &json!({"type": "containment-report", "version": 3, "node": "nobody", "sequence": 1,
                              "models": [], "reason": "SyncInterrupted", "check": "GovernancePolicySynchronization",
                              "step": null, "detail": "", "recovered": true, "time": 1}),
        )
        .unwrap(),
        &[&stranger],
    )
    .unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after = None;
    for _ in 0..100 {
        let (status, _, retry) = post(&r.url, None, "application/json", &report, None);
        *statuses.entry(status).or_insert(0) += 1;
        if status == 429 {
            retry_after = retry;
        }
    }
    assert!(statuses.get(&429).copied().unwrap_or(0) >= 50, "{statuses:?}");
    assert!(retry_after.is_some());
    // A token holder is not limited by it.
    let entry = rotation(&r.authority, &w.root);
    let (status, v, _) = post(&r.url, Some(&w.admin), "application/json", &entry, None);
    assert_eq!(status, 201, "{v}");
    r.stop();
}

#[test]
fn slow_and_idle_clients_are_cut_off() {
    use std::io::{Read, Write};
    let w = world();
    let limits = modelgate_http::Limits {
        header_read: Duration::from_millis(500),
        ..modelgate_http::Limits::default()
    };
    let r = Running::start_with(&w.data(), limits);
    let addr = r.url.trim_start_matches("http://").to_owned();
    // Connections that send nothing, or half a request head, or finish one
    // request and then idle: all closed by the server.
    let mut silent: Vec<_> = (0..20).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let mut partial = std::net::TcpStream::connect(&addr).unwrap();
    partial.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 17];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200 OK\r\n");
    let t = Instant::now();
    for s in silent.iter_mut().chain([&mut partial, &mut idle]) {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = vec![0u8; 4096];
        // Read to the end: the server closes (EOF) well before our 5 s.
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => panic!("the connection stayed open: {e}"),
            }
        }
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // And the server still serves.
    assert_eq!(get(&format!("{}/healthz", r.url)).0, 200);
    r.stop();
}

#[test]
fn a_restart_refolds_only_after_the_snapshot_and_never_trusts_a_bad_one() {
    let w = world();
    let r = Running::start(&w.data());
    for _ in 0..5 {
        append_rotation(&r, &w);
    }
    let digest = r.authority.state().digest();
    r.stop();
    let snapshot = data::DataDir::new(&w.data()).snapshot();
    assert!(snapshot.exists(), "shutdown writes a snapshot");

    let r = Running::start(&w.data());
    assert_eq!(
        (r.authority.startup.snapshot_size, r.authority.startup.folded),
        (Some(6), 0)
    );
    assert_eq!(r.authority.state().digest(), digest);
    // Past sizes from before the restart are refolded from the log.
    let (status, body) = get(&format!("{}/api/v1/state?size=3", r.url));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (status, v["size"].as_u64(), v["trust_root_version"].as_u64()),
        (200, Some(3), Some(3)),
        "{body}"
    );
    r.stop();

    // A snapshot changed on disk (another root version in it, its signed
    // hash left as it was) is refused, and the log refolded.
    let text = std::fs::read_to_string(&snapshot).unwrap();
    assert!(text.contains("\"root_version\":6"));
    std::fs::write(&snapshot, text.replace("\"root_version\":6", "\"root_version\":7")).unwrap();
    let a = Authority::open(&w.data()).unwrap();
    assert_eq!((a.startup.snapshot_size, a.startup.folded), (None, 6));
    assert!(
        a.startup.snapshot_refused.as_deref().unwrap().contains("signed hash"),
        "{:?}",
        a.startup
    );
    assert_eq!(a.state().digest(), digest);
    a.shutdown();

    // A snapshot from another log (signed with another key) is refused too.
    let other = world();
    let o = Authority::open(&other.data()).unwrap();
    o.shutdown();
    std::fs::copy(data::DataDir::new(&other.data()).snapshot(), &snapshot).unwrap();
    let a = Authority::open(&w.data()).unwrap();
    assert_eq!(a.startup.snapshot_size, None);
    assert!(
        a.startup.snapshot_refused.as_deref().unwrap().contains("signature"),
        "{:?}",
        a.startup
    );
    assert_eq!(a.state().digest(), digest);
    a.shutdown();
}

/// A small filesystem of our own (tmpfs, as root), so the disk can really
/// fill up under the running authority. (A read-only disk takes the same
/// path — any failed durable write — but cannot be staged here: the kernel
/// refuses to remount read-only while SQLite holds its files open for
/// writing.) `None` where mounting is not allowed, outside CI (under CI the
/// test must run).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match o {
            Ok(o) if o.status.success() => Some(Self { dir }),
            other if std::env::var_os("CI").is_some() => panic!("mounting a tmpfs failed under CI: {other:?}"),
            other => {
                eprintln!("SKIPPED: mounting a tmpfs needs root ({other:?})");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.dir.path()).output();
    }
}

#[test]
fn a_full_disk_answers_503_and_writes_resume_when_it_has_room_again() {
    let Some(disk) = SmallDisk::mount(8 << 20) else { return };
    let data = disk.dir.path().join("data");
    let report = data::init(&data, "test.example/governance").unwrap();
    let root = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&report.root_key).unwrap()).unwrap();
    let admin = tokens::create(&data::DataDir::new(&data).tokens(), TokenRole::Admin, "test").unwrap();
    let r = Running::start(&data);
    let submit = |r: &Running| {
        let entry = rotation(&r.authority, &root);
        post(&r.url, Some(&admin), "application/json", &entry, None)
    };
    assert_eq!(submit(&r).0, 201);
    // Fill the disk: a file as large as it will take.
    let filler = disk.dir.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let mut refused = 0;
    for _ in 0..3 {
        let (status, v, retry) = submit(&r);
        if status == 201 {
            continue; // a page SQLite still had room for
        }
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (503, Some("store-unavailable")),
            "{v}"
        );
        assert_eq!(retry.as_deref(), Some("1"));
        refused += 1;
    }
    assert!(refused > 0, "the full disk refused nothing");
    let (status, body) = get(&format!("{}/readyz", r.url));
    assert!(status == 503 && body.contains("writer-failing"), "{status} {body}");
    assert_eq!(get(&format!("{}/healthz", r.url)).0, 200);
    // Space again: writes resume, at the next index.
    std::fs::remove_file(&filler).unwrap();
    let size = r.authority.size();
    let (status, v, _) = submit(&r);
    assert_eq!((status, v["index"].as_u64()), (201, Some(size)), "{v}");
    assert_eq!(get(&format!("{}/readyz", r.url)).0, 200);
    r.stop();
    // Nothing acknowledged was lost: reopened (its tree checked against the
    // latest checkpoint), the log holds every acknowledged entry.
    let a = Authority::open(&data).unwrap();
    assert_eq!(a.state().size, size + 1);
    a.shutdown();
}

/// A 500 says which part failed (its code) and nothing of the internals:
/// no path, no SQL, no library message — those go to the authority's log.
#[test]
fn an_internal_error_answers_500_without_internal_detail() {
    let w = world();
    let r = Running::start(&w.data());
    // No read yet, so no pooled read handle: the next read opens the file,
    // which is now not a database at all.
    let store = data::DataDir::new(&w.data()).store();
    std::fs::rename(&store, store.with_extension("moved")).unwrap();
    std::fs::write(&store, b"not a database, and long enough to be read as a header ....").unwrap();
    let (status, body) = get(&format!("{}/api/v1/entries/0", r.url));
    assert_eq!(status, 500, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "store", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    for leak in ["governance.db", "/tmp", "database", "sqlite", "SQLite"] {
        assert!(!message.contains(leak), "the 500 says {message:?}");
    }
    r.stop();
}
