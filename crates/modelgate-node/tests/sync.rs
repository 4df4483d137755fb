//! Sync against real authorities (in-process, over real HTTP): a fresh node
//! follows the log; a rollback, a fork (a second authority holding the same
//! keys), a stale view, a lying state digest, tampered entries and an
//! unreachable authority are each refused with their containment reason; a
//! node restarted with its persisted checkpoint keeps refusing the fork.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use modelgate_authority::Authority;
use modelgate_governance::{to_canonical, ContainmentReason, Envelope};
use modelgate_node::FetchError;
use modelgate_node::{Fetch, Syncer};
use serde_json::{json, Value};

struct Running {
    authority: Arc<Authority>,
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn start(data: &Path) -> Running {
    let authority = Authority::open(data).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let a = Arc::clone(&authority);
    rt.spawn(async move { modelgate_authority::serve(a, listener, std::future::pending()).await });
    Running {
        authority,
        url,
        _rt: rt,
    }
}

struct Http(String);

impl Fetch for Http {
    fn get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        let url = format!("{}{path}", self.0);
        let transport = |e: &dyn std::fmt::Display| FetchError::Transport {
            url: url.clone(),
            detail: e.to_string(),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let mut r = agent.get(&url).call().map_err(|e| transport(&e))?;
        if r.status().as_u16() != 200 {
            return Err(FetchError::Status {
                url: url.clone(),
                status: r.status().as_u16(),
            });
        }
        r.body_mut().read_to_vec().map_err(|e| transport(&e))
    }
}

/// A fetcher that rewrites what the authority says.
struct Lying<F: Fn(&str, Vec<u8>) -> Vec<u8>>(Http, F);

impl<F: Fn(&str, Vec<u8>) -> Vec<u8>> Fetch for Lying<F> {
    fn get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        Ok((self.1)(path, self.0.get(path)?))
    }
}

struct Down;
impl Fetch for Down {
    fn get(&self, _: &str) -> Result<Vec<u8>, FetchError> {
        Err(FetchError::Transport {
            url: "http://down".into(),
            detail: "connection refused".into(),
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Submit trust root v2 adding `who` as an approver, signed with the offline root key.
fn add_approver(r: &Running, data: &Path, who: &str) -> u64 {
    let doc = r.authority.state().trust_root.as_ref().unwrap().doc.clone();
    let mut v: Value = serde_json::to_value(&doc).unwrap();
    let version = v["root_version"].as_u64().unwrap();
    v["root_version"] = json!(version + 1);
    let seed = who.bytes().fold(7u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    use base64::Engine as _;
    v["principals"][who] = json!({"roles": ["approver"], "keys": [base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())], "model_keys": []});
    let root = ed25519_dalek::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string(data.join("offline-root-keys/root-1.key")).unwrap(),
    )
    .unwrap();
    let entry = Envelope::sign(&to_canonical(&v).unwrap(), &[&root]).unwrap();
    match r.authority.submit(entry).unwrap().blocking_recv().unwrap() {
        modelgate_authority::service::Outcome::Accepted { index, .. } => index,
        other => panic!("{other:?}"),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[test]
fn a_node_follows_the_log_and_refuses_every_lie() {
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    modelgate_authority::init(&a_dir, "sync.example/gov").unwrap();
    // A second authority with the very same keys: the fork attacker.
    let b_dir = dir.path().join("b");
    copy_dir(&a_dir, &b_dir);
    let pinned = std::fs::read(a_dir.join("trust-root.dsse.json")).unwrap();
    let a = start(&a_dir);
    let b = start(&b_dir);
    let http = Http(a.url.clone());

    let mut node = Syncer::new(&pinned, 30, None).unwrap();
    let v = node.sync(&http, now()).unwrap();
    assert_eq!(v.checkpoint.size, 1);
    let old_note = http.get("/log/checkpoint").unwrap();

    assert_eq!(add_approver(&a, &a_dir, "alice"), 1);
    assert_eq!(add_approver(&a, &a_dir, "bob-the-approver"), 2);
    let v = node.sync(&http, now()).unwrap();
    assert_eq!(v.checkpoint.size, 3);
    assert_eq!(v.state.trust_root().unwrap().doc.root_version, 3);
    let trusted = v.trusted();

    // Rollback: an older, validly signed (and still fresh) checkpoint.
    let rollback = Lying(Http(a.url.clone()), |path: &str, body: Vec<u8>| {
        if path == "/log/checkpoint" {
            old_note.clone()
        } else {
            body
        }
    });
    assert_eq!(
        node.sync(&rollback, now()).unwrap_err().reason,
        ContainmentReason::CoordinationInconsistent
    );

    // Fork: authority B holds the same keys but logged something else.
    add_approver(&b, &b_dir, "mallory");
    add_approver(&b, &b_dir, "mallory-two");
    add_approver(&b, &b_dir, "mallory-three");
    let e = node.sync(&Http(b.url.clone()), now()).unwrap_err();
    assert_eq!(e.reason, ContainmentReason::CoordinationInconsistent, "{e}");
    assert!(e.detail.contains("fork"), "{e}");
    // ... and a restarted node (only the persisted checkpoint) still refuses it.
    let mut restarted = Syncer::new(&pinned, 30, Some(trusted.clone())).unwrap();
    assert_eq!(
        restarted.sync(&Http(b.url.clone()), now()).unwrap_err().reason,
        ContainmentReason::CoordinationInconsistent
    );
    // While the honest authority is accepted after the restart.
    restarted.sync(&http, now()).unwrap();
    // A node whose persisted state does not match its own replay of the
    // same entries (changed rules, a corrupted file) refuses to go on, even
    // after the log has grown past the persisted size.
    let mut diverged = trusted.clone();
    diverged.state_digest = "11".repeat(32);
    add_approver(&a, &a_dir, "dave");
    let e = Syncer::new(&pinned, 30, Some(diverged))
        .unwrap()
        .sync(&http, now())
        .unwrap_err();
    assert_eq!(e.reason, ContainmentReason::StateDivergence, "{e}");
    assert!(e.detail.contains("persisted size 3"), "{e}");

    // Stale: the authority's cosignature is older than max_staleness.
    assert_eq!(
        node.sync(&http, now() + 120).unwrap_err().reason,
        ContainmentReason::SyncInterrupted
    );
    // Unreachable.
    assert_eq!(
        node.sync(&Down, now()).unwrap_err().reason,
        ContainmentReason::SyncInterrupted
    );

    add_approver(&a, &a_dir, "carol");
    // The authority publishes a different state digest.
    let lie = Lying(Http(a.url.clone()), |path: &str, body: Vec<u8>| {
        if path.starts_with("/api/v1/state") {
            let mut v: Value = serde_json::from_slice(&body).unwrap();
            v["digest"] = json!("00".repeat(32));
            serde_json::to_vec(&v).unwrap()
        } else {
            body
        }
    });
    assert_eq!(
        node.sync(&lie, now()).unwrap_err().reason,
        ContainmentReason::GovernanceMismatch
    );
    // Entries altered in transit: they no longer rebuild the signed root.
    let tamper = Lying(Http(a.url.clone()), |path: &str, mut body: Vec<u8>| {
        if path.starts_with("/log/tile/entries/") {
            let n = body.len();
            body[n - 5] ^= 1;
        }
        body
    });
    let e = node.sync(&tamper, now()).unwrap_err();
    assert!(
        matches!(
            e.reason,
            ContainmentReason::CoordinationInconsistent | ContainmentReason::SignatureInvalid
        ),
        "{e}"
    );
    // None of that moved the view; the honest sync still works.
    assert_eq!(node.view().unwrap().checkpoint.size, 3);
    assert_eq!(node.sync(&http, now()).unwrap().checkpoint.size, 5);
}
