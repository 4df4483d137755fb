//! The authority end to end, with the real binary: init → serve → trust-root
//! rotation adding approvers and a model signer → register a signed model →
//! a two-approver approval → self-approval refused → policy → revoke →
//! audit; a second authority refused; 10,000 malformed bodies; kill -9
//! during submissions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::world::{agent, approve_and_permit, get_json, post, revoke, token, world};
use common::{exits, mg, mg_line, ok, s, serve, stderr};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use modelgate_governance::{to_canonical, Envelope};
use serde_json::{json, Value};

#[test]
fn governance_end_to_end() {
    let w = world();
    let url = &w.server.url;
    let d = w.dir.path();
    let p = |n: &str| d.join(n);
    // A high-tier approval needs two approvers: alice alone is refused ...
    let o = mg_line(&format!(
        "approve {} --scope prod/* --until +30d --tier high --ticket CHG-1 --key {} --authority {} --token {}",
        &w.digest,
        s(&p("alice.key")),
        url,
        &w.admin
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("threshold"), "{}", stderr(&o));
    // ... alice then bob on one file is accepted.
    ok(&mg_line(&format!(
        "approve {} --scope prod/* --until +30d --tier high --ticket CHG-1 --key {} --out {}",
        &w.digest,
        s(&p("alice.key")),
        s(&p("appr.json"))
    )));
    ok(&mg(&["cosign", s(&p("appr.json")), "--key", s(&p("bob.key"))]));
    assert!(ok(&mg_line(&format!(
        "submit {} --authority {} --token {}",
        s(&p("appr.json")),
        url,
        &w.admin
    )))
    .contains("accepted at index 3"));
    // The same approval again is a replay: refused.
    let o = mg(&["submit", s(&p("appr.json")), "--authority", url, "--token", &w.admin]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("duplicate"), "{}", stderr(&o));
    // The model's signer approving it: separation of duties.
    let o = mg_line(&format!(
        "approve {} --scope prod/* --until +30d --tier low --ticket CHG-2 --key {} --authority {} --token {}",
        &w.digest,
        s(&p("signer.key")),
        url,
        &w.admin
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("separation-of-duties"), "{}", stderr(&o));
    // A token whose role may not submit approvals.
    let policy_token = token(&w.data, "policy-admin");
    let o = mg_line(&format!(
        "submit {} --authority {} --token {}",
        s(&p("appr.json")),
        url,
        &policy_token
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("wrong-role"), "{}", stderr(&o));
    std::fs::write(p("p.cedar"), "@id(\"all\") permit(principal, action, resource);\n").unwrap();
    assert!(ok(&mg_line(&format!(
        "policy publish {} --key {} --authority {} --token {}",
        s(&p("p.cedar")),
        s(&p("padmin.key")),
        url,
        &policy_token
    )))
    .contains("index 4"));
    assert!(revoke(&w, "drift", "INC-1").contains("index 5"));

    let state = get_json(&format!("{url}/api/v1/state"));
    assert_eq!(
        (
            state["size"].as_u64(),
            state["revocations"].as_u64(),
            state["trust_root_version"].as_u64()
        ),
        (Some(6), Some(1), Some(2))
    );
    let m = get_json(&format!("{url}/api/v1/models/{}", w.digest));
    assert_eq!(m["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(m["revocation"]["ticket"], "INC-1");
    // The state at a past size is refolded.
    let past = get_json(&format!("{url}/api/v1/state?size=4"));
    assert_eq!(
        (past["size"].as_u64(), past["revocations"].as_u64()),
        (Some(4), Some(0))
    );

    // Verify what is served, offline, with the authority's key.
    let vkey = String::from_utf8(std::fs::read(w.data.join("authority.skey")).unwrap()).unwrap();
    let vkey = modelgate_tlog::SignerKey::parse(vkey.trim())
        .unwrap()
        .verifier()
        .to_string();
    let cp = ok(&mg(&["log", "checkpoint", "--authority", url, "--vkey", &vkey]));
    assert!(cp.starts_with("test.example/governance\n6\n"), "{cp}");
    std::fs::write(
        p("entry3.tlog-proof"),
        ok(&mg(&["log", "proof", "3", "--authority", url])),
    )
    .unwrap();
    let o = mg_line(&format!(
        "log verify-proof {} --vkey {} --entry {}",
        s(&p("entry3.tlog-proof")),
        &vkey,
        s(&p("appr.json"))
    ));
    assert!(ok(&o).contains("proof: valid"));
    // The served checkpoint carries a fresh cosignature by the authority.
    let cos_vkey = modelgate_tlog::SignerKey::parse(
        String::from_utf8(std::fs::read(w.data.join("authority-cosigner.skey")).unwrap())
            .unwrap()
            .trim(),
    )
    .unwrap()
    .verifier()
    .to_string();
    std::fs::write(p("cp"), &cp).unwrap();
    let out = ok(&mg_line(&format!(
        "log verify-checkpoint {} --vkey {} --witness {}",
        s(&p("cp")),
        &vkey,
        &cos_vkey
    )));
    assert!(out.contains("cosigned: test.example/governance at"), "{out}");
    // The audit, read-only beside the running writer.
    assert!(ok(&mg_line(&format!(
        "log audit {} --vkey {}",
        s(&w.data.join("governance.db")),
        &vkey
    )))
    .contains("entries: 6"));
    // The same over HTTP: every entry bundle and tile checked against the
    // checkpoint, the state refolded and its digest compared.
    let pinned = w.data.join("trust-root.dsse.json");
    let out = ok(&mg_line(&format!(
        "log audit --authority {url} --vkey {vkey} --trust-root {}",
        s(&pinned)
    )));
    assert!(out.contains("authority: consistent\nentries: 6\n"), "{out}");
    // A different pinned trust root: the audit says entry 0 is not it.
    let o = mg_line(&format!(
        "log audit --authority {url} --vkey {vkey} --trust-root {}",
        s(&p("v2.dsse.json"))
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not the trust root pinned"), "{}", stderr(&o));
    // Tiles: the level-0 partial tile and the entry bundle of 6.
    let mut r = agent().get(&format!("{url}/log/tile/0/000.p/6")).call().unwrap();
    assert_eq!(r.body_mut().read_to_vec().unwrap().len(), 6 * 32);
    assert_eq!(
        agent()
            .get(&format!("{url}/log/tile/0/000.p/7"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(
        agent()
            .get(&format!("{url}/log/tile/0/000"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    // A second authority on the same data dir refuses to start.
    let o = mg(&["authority", "serve", "--data", s(&w.data), "--listen", "127.0.0.1:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("locked by another writer"), "{}", stderr(&o));
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(
            agent().get(&format!("{url}{path}")).call().unwrap().status().as_u16(),
            200,
            "{path}"
        );
    }
}

fn approval(key: &ed25519_dalek::SigningKey, digest: &str, ticket: &str) -> Vec<u8> {
    let p = json!({"type": "approval", "version": 1, "model": digest, "scopes": ["prod/*"], "valid_from": 0,
                   "valid_until": 4_000_000_000u64, "risk_tier": "low", "ticket": ticket});
    Envelope::sign(&to_canonical(&p).unwrap(), &[key]).unwrap()
}

fn load(path: &Path) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_pkcs8_pem(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn ten_thousand_malformed_bodies_change_nothing() {
    let w = world();
    let url = &w.server.url;
    let alice = load(&w.dir.path().join("alice.key"));
    let good = approval(&alice, &w.digest, "CHG-good");
    let (status, v) = post(url, Some(&w.admin), &good);
    assert_eq!(status, 201, "{v}");
    let before = get_json(&format!("{url}/api/v1/state"));
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) as usize
    };
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..10_000 {
        let mut body = good.clone();
        match i % 6 {
            0 => {
                let at = next() % body.len();
                body[at] ^= 1 << (next() % 8);
            }
            1 => body.truncate(next() % body.len()),
            2 => body = (0..next() % 300).map(|_| next() as u8).collect(),
            3 => {
                let at = next() % body.len();
                body.insert(at, b' ');
            }
            4 => body = good.clone(), // a replay of an entry already in the log
            _ => {
                let at = next() % body.len();
                body[at] = b"{}[]\",:0aZ=+/\\"[next() % 14];
            }
        }
        let token = match i % 50 {
            0 => None,
            1 => Some("mgt_unknown"),
            _ => Some(w.admin.as_str()),
        };
        let (status, v) = post(url, token, &body);
        assert!((400..500).contains(&status), "body {i} got {status}: {v}");
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "body {i}: {v}"
        );
        *statuses.entry(status).or_insert(0) += 1;
    }
    // Oversized.
    let (status, v) = post(url, Some(&w.admin), &vec![b'x'; 70_000]);
    assert_eq!(status, 413, "{v}");
    let after = get_json(&format!("{url}/api/v1/state"));
    assert_eq!(before, after, "the log changed");
    assert_eq!(
        agent().get(&format!("{url}/healthz")).call().unwrap().status().as_u16(),
        200
    );
    eprintln!("statuses: {statuses:?}");
}

/// (index, entry bytes) of each acknowledged submission.
type Acked = Vec<(u64, Vec<u8>)>;

#[test]
fn kill_9_during_submissions_loses_no_acknowledged_entry() {
    let mut w = world();
    let alice = Arc::new(load(&w.dir.path().join("alice.key")));
    let url = w.server.url.clone();
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (alice, acked, stop, url, digest, admin) = (
                Arc::clone(&alice),
                Arc::clone(&acked),
                Arc::clone(&stop),
                url.clone(),
                w.digest.clone(),
                w.admin.clone(),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .into();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = approval(&alice, &digest, &format!("T{t}-{n}"));
                    let Ok(mut r) = agent
                        .post(&format!("{url}/api/v1/entries"))
                        .header("Content-Type", "application/json")
                        .header("Authorization", &format!("Bearer {admin}"))
                        .send(&body[..])
                    else {
                        break;
                    };
                    if r.status().as_u16() == 201 {
                        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                            .unwrap_or(Value::Null);
                        if let Some(i) = v["index"].as_u64() {
                            acked.lock().unwrap().push((i, body));
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // SIGKILL, no warning.
    w.server.child.kill().unwrap();
    w.server.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "only {} submissions were acknowledged before the kill",
        acked.len()
    );
    // Restart on the same data: every acknowledged entry is at its index.
    w.server = serve(&w.data);
    let store = modelgate_store::SqliteStore::open_read_only(&w.data.join("governance.db")).unwrap();
    use modelgate_store::LogStore as _;
    let size = store.size().unwrap();
    let entries = store.entries(0, size).unwrap();
    for (i, body) in &acked {
        assert_eq!(&entries[*i as usize], body, "entry {i}");
    }
    let vkey = modelgate_tlog::SignerKey::parse(std::fs::read_to_string(w.data.join("authority.skey")).unwrap().trim())
        .unwrap()
        .verifier()
        .to_string();
    assert!(ok(&mg_line(&format!(
        "log audit {} --vkey {}",
        s(&w.data.join("governance.db")),
        &vkey
    )))
    .contains("store: intact"));
    let state = get_json(&format!("{}/api/v1/state", w.server.url));
    assert_eq!(state["size"].as_u64(), Some(size));
    eprintln!(
        "{} acknowledged before the kill, {size} entries after restart",
        acked.len()
    );
}

#[test]
fn sigterm_finishes_in_flight_writes_and_exits_cleanly() {
    let mut w = world();
    let alice = Arc::new(load(&w.dir.path().join("alice.key")));
    let url = w.server.url.clone();
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (alice, acked, url, digest, admin) = (
                Arc::clone(&alice),
                Arc::clone(&acked),
                url.clone(),
                w.digest.clone(),
                w.admin.clone(),
            );
            std::thread::spawn(move || {
                for n in 0..100_000 {
                    let body = approval(&alice, &digest, &format!("S{t}-{n}"));
                    match agent()
                        .post(&format!("{url}/api/v1/entries"))
                        .header("Content-Type", "application/json")
                        .header("Authorization", &format!("Bearer {admin}"))
                        .send(&body[..])
                    {
                        Ok(mut r) if r.status().as_u16() == 201 => {
                            let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default())
                                .unwrap_or(Value::Null);
                            acked.lock().unwrap().push((v["index"].as_u64().unwrap(), body));
                        }
                        _ => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let pid = w.server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = w.server.child.wait().unwrap();
    assert!(
        status.success(),
        "the authority did not exit cleanly on SIGTERM: {status:?}"
    );
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 10, "{} acknowledged", acked.len());
    let store = modelgate_store::SqliteStore::open_read_only(&w.data.join("governance.db")).unwrap();
    use modelgate_store::LogStore as _;
    let entries = store.entries(0, store.size().unwrap()).unwrap();
    for (i, body) in &acked {
        assert_eq!(&entries[*i as usize], body, "entry {i}");
    }
    // The lock was released: the next authority starts.
    w.server = serve(&w.data);
}

#[test]
fn a_node_is_initialised_from_its_config_and_enrolled_by_a_node_admin() {
    let w = world();
    let d = w.dir.path();
    let url = &w.server.url;
    std::fs::write(
        d.join("node.toml"),
        format!(
            "node = \"node-1\"\nauthority = \"{url}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = 30\ndata_dir = \"node-data\"\n\n[models.credit]\ndir = \"model\"\nbundle = \"model/model.sig\"\n",
            s(&w.data.join("trust-root.dsse.json"))
        ),
    )
    .unwrap();
    let o = mg_line(&format!("node init --config {}", s(&d.join("node.toml"))));
    let vkey = ok(&o).trim().to_owned();
    assert!(vkey.starts_with("node-1/lineage+"), "{vkey}");
    assert!(stderr(&o).contains("modelgate node enroll node-1"), "{}", stderr(&o));
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(d.join("node.skey")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A second init does not overwrite the key.
    assert_eq!(
        mg_line(&format!("node init --config {}", s(&d.join("node.toml"))))
            .status
            .code(),
        Some(2)
    );
    let enroll = format!(
        "node enroll node-1 --node-key {vkey} --scope prod/* --key {} --authority {url} --token {}",
        s(&d.join("nadmin.key")),
        w.admin
    );
    assert!(ok(&mg_line(&enroll)).contains("accepted at index 3"));
    let nodes = get_json(&format!("{url}/api/v1/nodes"));
    assert_eq!(nodes[0]["id"], "node-1");
    assert_eq!(nodes[0]["key"], vkey.as_str());
    // Enrolled once only; and not by someone without the role.
    let o = mg_line(&enroll);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("node-duplicate"), "{}", stderr(&o));
    let o = mg_line(&enroll.replace("nadmin.key", "alice.key").replace("node-1 ", "node-2 "));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("threshold"), "{}", stderr(&o));

    // Registered but not approved, no policy: the node does not serve it.
    let status = format!("node status --config {}", s(&d.join("node.toml")));
    // A contained model is exit 1, for scripts and health checks.
    let out = exits(&mg_line(&status), 1);
    assert!(out.contains("credit: Contained UnverifiableTransition"), "{out}");
    // Approved and a policy published: Serving.
    approve_and_permit(&w);
    let out = ok(&mg_line(&status));
    assert!(out.contains(&format!("credit: Serving {}", w.digest)), "{out}");
    // One changed byte in the model: contained, naming the file.
    std::fs::write(d.join("model/weights.bin"), "weightz").unwrap();
    let v: Value = serde_json::from_str(&exits(&mg_line(&format!("{status} --json")), 1)).unwrap();
    assert_eq!(v["models"][0]["reason"], "UnauthorizedModification", "{v}");
    assert!(
        v["models"][0]["detail"].as_str().unwrap().contains("weights.bin"),
        "{v}"
    );
    assert_eq!(v["sync"]["ok"], true);
    std::fs::write(d.join("model/weights.bin"), "weights").unwrap();

    // The node reports a containment, authenticated by its key alone (no token).
    let node_key =
        modelgate_tlog::SignerKey::parse(std::fs::read_to_string(d.join("node.skey")).unwrap().trim()).unwrap();
    let containment = modelgate_governance::Containment {
        models: vec![w.digest.clone()],
        reason: modelgate_node::ContainmentReason::UnauthorizedModification,
        check: modelgate_governance::Check::RuntimeIntegrityVerification,
        step: Some(modelgate_governance::LifecycleStep::IntegrityVerification),
        detail: "weights.bin changed".into(),
        recovered: false,
    };
    let report =
        modelgate_node::report::containment_report(&node_key, "node-1", 1, containment, 1_800_000_000).unwrap();
    let (status, v) = post(url, None, &report);
    assert_eq!(status, 201, "{v}");
    let nodes = get_json(&format!("{url}/api/v1/nodes"));
    assert_eq!(nodes[0]["last_report"]["reason"], "UnauthorizedModification");
    assert_eq!(nodes[0]["last_report"]["check"], "RuntimeIntegrityVerification");
    assert_eq!(nodes[0]["last_report"]["step"], "IntegrityVerification");
    // Anyone can read it back from the log; posting it again is a replay.
    let (status, v) = post(url, None, &report);
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("replay")), "{v}");
    // The same report signed by another key is refused by the fold's rules.
    let impostor =
        modelgate_tlog::SignerKey::from_seed("node-1/lineage", modelgate_tlog::KeyType::Ed25519, &[9; 32]).unwrap();
    let forged = modelgate_node::report::containment_report(
        &impostor,
        "node-1",
        2,
        modelgate_governance::Containment {
            models: vec![],
            reason: modelgate_node::ContainmentReason::SyncInterrupted,
            check: modelgate_governance::Check::GovernancePolicySynchronization,
            step: None,
            detail: String::new(),
            recovered: true,
        },
        1,
    )
    .unwrap();
    let (status, v) = post(url, None, &forged);
    assert_eq!(status, 422, "{v}");
    // Other entry types still need a token.
    let (status, _) = post(url, None, &std::fs::read(d.join("v2.dsse.json")).unwrap());
    assert_eq!(status, 401);

    // The running node: serves, contains on a changed file, recovers through
    // the whole lifecycle when it is restored, contains on a revocation.
    let mut node = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "node",
            "run",
            "--config",
            s(&d.join("node.toml")),
            "--interval-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    let out = node.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let wait_for = |state: &str, reason: Option<&str>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no {state} event"));
            if v["state"] == state && reason.is_none_or(|r| v["reason"] == r) {
                return v;
            }
        }
    };
    wait_for("Serving", None);
    std::fs::write(d.join("model/weights.bin"), "weightz").unwrap();
    let v = wait_for("Contained", Some("UnauthorizedModification"));
    assert!(v["detail"].as_str().unwrap().contains("weights.bin"), "{v}");
    std::fs::write(d.join("model/weights.bin"), "weights").unwrap();
    wait_for("Serving", None);
    let revoked_at = std::time::Instant::now();
    revoke(&w, "drift", "INC-9");
    let v = wait_for("Contained", Some("UnverifiableTransition"));
    eprintln!("revocation contained the model after {:?}: {v}", revoked_at.elapsed());
    let _ = node.kill();
    let _ = node.wait();
    // The node reported its containments to the authority.
    let nodes = get_json(&format!("{url}/api/v1/nodes"));
    assert!(nodes[0]["reports"].as_u64().unwrap() >= 3, "{nodes}");
}

#[test]
fn an_exception_is_granted_from_the_cli_by_approvers_with_its_mandatory_expiry() {
    let w = world();
    let url = &w.server.url;
    let key = |n: &str| s(&w.dir.path().join(format!("{n}.key"))).to_owned();
    let grant = |tier: &str, signer: &str, extra: &str| {
        mg_line(&format!(
            "exception {} --scope prod/credit/* --tier {tier} --ticket RISK-7 --reason hotfix {extra} --key {} --authority {url} --token {}",
            w.digest,
            key(signer),
            w.admin
        ))
    };
    // No expiry: refused before anything is signed.
    let o = grant("low", "alice", "");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--expires"), "{}", stderr(&o));
    // An unknown tier names the valid ones.
    let o = grant("urgent", "alice", "--expires +1d");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("low, medium, high, critical"), "{}", stderr(&o));
    // Only approvers grant exceptions (the trust root's exception threshold),
    // and the model's signer may not.
    let o = grant("low", "padmin", "--expires +1d");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("threshold"), "{}", stderr(&o));
    let o = grant("low", "signer", "--expires +1d");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("separation-of-duties"), "{}", stderr(&o));
    // Granted: the model now has it, with its expiry and ticket.
    ok(&grant("low", "alice", "--expires +2d"));
    let m = get_json(&format!("{url}/api/v1/models/{}", w.digest));
    let x = &m["exceptions"][0];
    assert_eq!(
        (x["ticket"].as_str(), x["scopes"][0].as_str()),
        (Some("RISK-7"), Some("prod/credit/*")),
        "{m}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expires = x["expires"].as_u64().unwrap();
    assert!(
        (now + 2 * 86_400 - 60..=now + 2 * 86_400 + 60).contains(&expires),
        "{x}"
    );
}

#[test]
fn authority_init_makes_a_k_of_n_root_and_a_rotation_needs_k_root_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("authority");
    // Out-of-range thresholds are refused, and nothing is created.
    for (n, k) in [("3", "4"), ("3", "0"), ("0", "0"), ("17", "2")] {
        let o = mg(&[
            "authority",
            "init",
            "--data",
            s(&data),
            "--origin",
            "k.example/gov",
            "--root-keys",
            n,
            "--root-threshold",
            k,
        ]);
        assert_eq!(o.status.code(), Some(2), "{n} of {k}: {}", stderr(&o));
        assert!(!data.exists(), "{n} of {k} created the data dir");
    }
    let o = mg(&[
        "authority",
        "init",
        "--data",
        s(&data),
        "--origin",
        "k.example/gov",
        "--root-keys",
        "3",
        "--root-threshold",
        "2",
    ]);
    ok(&o);
    assert!(stderr(&o).contains("2 of 3"), "{}", stderr(&o));
    let env = Envelope::parse(&std::fs::read(data.join("trust-root.dsse.json")).unwrap()).unwrap();
    assert_eq!(env.signatures.len(), 3, "v1 is signed by every root key");
    let doc: Value = serde_json::from_slice(&env.payload).unwrap();
    assert_eq!(doc["thresholds"]["root"], 2);
    for n in 1..=3 {
        assert_eq!(doc["principals"][format!("root-{n}")]["roles"], json!(["root"]));
        assert!(data.join(format!("offline-root-keys/root-{n}.key")).exists());
    }

    let server = serve(&data);
    let url = &server.url;
    let root_token = common::world::token(&data, "root");
    common::world::keygen(d, "alice", "ed25519");
    ok(&mg_line(&format!(
        "trust edit --authority {url} --out {} --principal alice --role approver --key {}",
        s(&d.join("v2.json")),
        s(&d.join("alice.pub"))
    )));
    // One of three root keys: short of the threshold.
    ok(&mg_line(&format!(
        "trust sign {} --key {} --out {}",
        s(&d.join("v2.json")),
        s(&data.join("offline-root-keys/root-3.key")),
        s(&d.join("v2.dsse.json"))
    )));
    let o = mg_line(&format!(
        "submit {} --authority {url} --token {root_token}",
        s(&d.join("v2.dsse.json"))
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("trust-root-threshold"), "{}", stderr(&o));
    // A second custodian cosigns: two of three, accepted.
    ok(&mg(&[
        "cosign",
        s(&d.join("v2.dsse.json")),
        "--key",
        s(&data.join("offline-root-keys/root-1.key")),
    ]));
    assert!(ok(&mg_line(&format!(
        "submit {} --authority {url} --token {root_token}",
        s(&d.join("v2.dsse.json"))
    )))
    .contains("accepted at index 1"));
}

#[test]
fn the_console_is_at_the_root_or_on_a_listener_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(&dir.path().join("a"));
    let r = agent().get(&format!("{}/", server.url)).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    drop(server);

    // On its own listener: published there, and absent beside the write API.
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args([
            "authority",
            "serve",
            "--data",
            s(&dir.path().join("b")),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--console-listen", "127.0.0.1:0", "--console-prefix", "/governance"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let console = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no console line");
        if let Some(u) = line.trim().strip_prefix("console: ") {
            break u.to_owned();
        }
    };
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let api = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    assert!(console.ends_with("/governance/"), "{console}");
    let page = agent()
        .get(&format!("{console}models"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(page.contains("href=\"/governance/entries\""), "{page}");
    assert_eq!(
        agent()
            .get(&format!("{api}/governance/models"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert_eq!(agent().get(&format!("{api}/")).call().unwrap().status().as_u16(), 404);
    assert_eq!(
        agent()
            .get(&format!("{api}/api/v1/state"))
            .call()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let o = mg(&[
        "authority",
        "serve",
        "--data",
        s(&dir.path().join("c")),
        "--console-prefix",
        "governance",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        !dir.path().join("c").exists(),
        "a refused prefix initialised the data dir"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_approval_short_of_its_threshold_waits_for_cosigners_and_enters_the_log_when_met() {
    let mut w = world();
    let url = w.server.url.clone();
    let d = w.dir.path().to_owned();
    let p = |n: &str| d.join(n);
    let approve = |who: &str, out: &str, ticket: &str| {
        ok(&mg_line(&format!(
            "approve {} --scope prod/* --from 1000 --until 4000000000 --tier high --ticket {ticket} --key {} --out {}",
            &w.digest,
            s(&p(&format!("{who}.key"))),
            s(&p(out))
        )));
    };
    approve("alice", "a.json", "CHG-9");
    let said = ok(&mg_line(&format!(
        "submit {} --pending --authority {url} --token {}",
        s(&p("a.json")),
        &w.admin
    )));
    assert!(
        said.contains("signed by alice; 1 more approver(s) needed (may sign: bob)"),
        "{said}"
    );
    let pending = get_json(&format!("{url}/api/v1/pending"));
    assert_eq!(pending["pending"][0]["signed_by"], json!(["alice"]), "{pending}");
    let page = agent()
        .get(&format!("{url}/models/{}", w.digest))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(
        page.contains("Approvals waiting for cosigners") && page.contains("<td>alice</td><td>1 approver(s)</td>"),
        "{page}"
    );
    // The same copy again changes nothing; a model signer's copy is refused, not pooled.
    assert!(ok(&mg_line(&format!(
        "submit {} --pending --authority {url} --token {}",
        s(&p("a.json")),
        &w.admin
    )))
    .contains("1 more"));
    approve("signer", "s.json", "CHG-9");
    let o = mg_line(&format!(
        "submit {} --pending --authority {url} --token {}",
        s(&p("s.json")),
        &w.admin
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("separation-of-duties"), "{}", stderr(&o));

    // It survives a restart of the authority.
    w.server.child.kill().unwrap();
    w.server.child.wait().unwrap();
    w.server = serve(&w.data);
    let url = w.server.url.clone();
    assert_eq!(
        get_json(&format!("{url}/api/v1/pending"))["pending"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Bob signs his own copy of the same payload: pooled, the threshold is met, it is in the log.
    approve("bob", "b.json", "CHG-9");
    let said = ok(&mg_line(&format!(
        "submit {} --pending --authority {url} --token {}",
        s(&p("b.json")),
        &w.admin
    )));
    assert!(said.contains("threshold met: accepted at index 3"), "{said}");
    assert!(get_json(&format!("{url}/api/v1/pending"))["pending"]
        .as_array()
        .unwrap()
        .is_empty());
    let m = get_json(&format!("{url}/api/v1/models/{}", w.digest));
    assert_eq!(m["approvals"][0]["approvers"], json!(["alice", "bob"]), "{m}");
    // Without a token, or with a token that may not approve: refused.
    let (st, _) = {
        let mut r = agent()
            .post(&format!("{url}/api/v1/pending"))
            .header("Content-Type", "application/json")
            .send(&std::fs::read(p("a.json")).unwrap()[..])
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap_or_default())
    };
    assert_eq!(st, 401);
    let policy_token = token(&w.data, "policy-admin");
    let o = mg_line(&format!(
        "submit {} --pending --authority {url} --token {policy_token}",
        s(&p("a.json"))
    ));
    assert!(stderr(&o).contains("wrong-role"), "{}", stderr(&o));
}
