//! A governance log made entirely with keys on SoftHSM2 tokens (Debian's
//! `softhsm2` and OpenSC's `pkcs11-tool`, installed by scripts/test.sh),
//! with real processes: `authority init` takes its log key, its cosigner
//! and two root keys (2 of 2, each on its own custodian's token) as
//! `pkcs11:` URIs and writes nothing private; trust root v2 is edited with
//! public keys read from the tokens and signed by both custodians' tokens
//! (one alone is refused); a model is signed and registered with token
//! keys; eight concurrent writers submit approvals signed by a token key.
//! Then the tokens are pulled out under the same eight writers: the
//! authority answers 503 `signer-unavailable` with Retry-After, appends
//! nothing, goes on serving reads, and signs again when they are put back;
//! every acknowledged entry has its own index, and `log audit` passes. A
//! node whose lineage key is on a token serves calls, refuses them with
//! `AuditDiscontinuity` while the token is gone, and serves again when it
//! is back. A witness whose key is on a token cosigns, answers 503 with
//! Retry-After while it is gone, and records nothing meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::world::{call, caller_table, chat, eventually, start_gateway, submit_entry as submit, token};
use common::{mg, mg_line, ok, s, stderr};
use modelgate_testkit::softhsm::{SoftHsm, MODULE};

const ED: &str = "EC:edwards25519";
const CALLER: &str = "scoring-token";

#[test]
fn a_governance_log_made_with_token_keys_audits_and_survives_pulled_tokens() {
    let d = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(&d.path().join("hsm"), "4321");
    for (t, objects) in [
        ("authority", &["log", "cosigner"][..]),
        ("custodian-1", &["root"][..]),
        ("custodian-2", &["root"][..]),
        ("governance", &["alice", "signer", "padmin", "nadmin"][..]),
        ("node-1", &["lineage"][..]),
    ] {
        hsm.add_token(t);
        for o in objects {
            hsm.keygen(t, o, ED);
        }
    }
    hsm.keygen("governance", "signer-model", "EC:prime256v1");
    hsm.add_token("witness");
    hsm.keygen("witness", "cosigner", ED);
    // The module reads its configuration when loaded; this test is the
    // only one in its binary, and every process it starts inherits these.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    std::env::set_var("MODELGATE_PKCS11_MODULE", MODULE);
    let u = |t: &str, o: &str| hsm.uri(t, o);

    // The authority: nothing private is written.
    let data = d.path().join("authority");
    let vkey = ok(&mg(&[
        "authority",
        "init",
        "--data",
        s(&data),
        "--origin",
        "test.example/governance",
        "--log-key",
        &u("authority", "log"),
        "--cosigner-key",
        &u("authority", "cosigner"),
        "--root-key",
        &u("custodian-1", "root"),
        "--root-key",
        &u("custodian-2", "root"),
        "--root-threshold",
        "2",
    ]))
    .trim()
    .to_owned();
    assert_eq!(
        std::fs::read_dir(data.join("offline-root-keys")).unwrap().count(),
        0,
        "no root key file"
    );
    for f in ["authority.skey", "authority-cosigner.skey"] {
        let text = std::fs::read_to_string(data.join(f)).unwrap();
        assert!(text.starts_with("PKCS11+KEY+test.example/governance+"), "{f}: {text}");
        assert!(!text.contains("PRIVATE+KEY"), "{f}: {text}");
    }
    let server = common::serve(&data);
    let url = server.url.clone();
    let root = token(&data, "root");
    let admin = token(&data, "admin");

    governed_by_tokens(&hsm, d.path(), &url, &root, &admin);

    // Eight writers, approvals signed by alice's key on its token.
    let alice = modelgate_signer::open_token(&u("governance", "alice"), None).unwrap();
    let digest = ok(&mg(&["digest", s(&d.path().join("model"))])).trim().to_owned();
    let approval = |ticket: &str| {
        let v = serde_json::json!({"type": "approval", "version": 1, "model": digest, "scopes": ["prod/*"],
            "valid_from": 0, "valid_until": 4_000_000_000u64, "risk_tier": "low", "ticket": ticket});
        modelgate_governance::Envelope::sign(&modelgate_governance::to_canonical(&v).unwrap(), &[alice.as_ref()])
            .unwrap()
    };
    let acknowledged = Mutex::new(Vec::new());
    std::thread::scope(|sc| {
        for t in 0..8 {
            let (approval, acknowledged, url, admin) = (&approval, &acknowledged, &url, &admin);
            sc.spawn(move || {
                for k in 0..20 {
                    let (st, _, body) = submit(url, admin, &approval(&format!("A-{t}-{k}")));
                    assert_eq!(st, 201, "{body}");
                    acknowledged.lock().unwrap().push(body["index"].as_u64().unwrap());
                }
            });
        }
    });

    // The tokens pulled out under the same writers, and put back (their
    // entries signed first: alice's token goes too).
    let pulled = AtomicBool::new(false);
    let refused = AtomicBool::new(false);
    let second: Vec<Vec<Vec<u8>>> = (0..8)
        .map(|t| (0..10).map(|k| approval(&format!("B-{t}-{k}"))).collect())
        .collect();
    std::thread::scope(|sc| {
        for entries in &second {
            let (acknowledged, url, admin, refused, pulled) = (&acknowledged, &url, &admin, &refused, &pulled);
            sc.spawn(move || {
                for (k, entry) in entries.iter().enumerate() {
                    // Some before the tokens go, the rest after.
                    while k == 3 && !pulled.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        let (st, h, body) = submit(url, admin, entry);
                        if st == 201 {
                            acknowledged.lock().unwrap().push(body["index"].as_u64().unwrap());
                            break;
                        }
                        assert_eq!(
                            (st, body["error"]["code"].as_str()),
                            (503, Some("signer-unavailable")),
                            "{body}"
                        );
                        assert!(h.get("retry-after").is_some(), "503 without Retry-After");
                        refused.store(true, Ordering::SeqCst);
                        assert!(Instant::now() < deadline, "still refused after the tokens came back");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(150));
        hsm.remove();
        pulled.store(true, Ordering::SeqCst);
        eventually(20, "a write refused while the tokens are out", || {
            refused.load(Ordering::SeqCst).then_some(())
        });
        let n = common::world::checkpoint_size(&url);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(
            common::world::checkpoint_size(&url),
            n,
            "nothing is appended while the log key is away"
        );
        hsm.restore();
    });
    assert!(pulled.load(Ordering::SeqCst));
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(acknowledged.len(), 240);
    let distinct: BTreeSet<u64> = acknowledged.iter().copied().collect();
    assert_eq!(distinct.len(), 240, "an index acknowledged twice");
    let size = common::world::checkpoint_size(&url);
    assert_eq!(size, 3 + 240, "trust roots v1 and v2, the model, the approvals");
    assert!(distinct.iter().all(|i| (3..size).contains(i)));
    let out = ok(&mg(&["log", "audit", s(&data.join("governance.db")), "--vkey", &vkey]));
    assert!(
        out.contains("store: intact") && out.contains(&format!("entries: {size}")),
        "{out}"
    );

    node_on_a_token(&hsm, d.path(), &url, &admin, &data);
    witness_on_a_token(&hsm, d.path(), &url, &vkey);
    drop(server);
}

/// A witness whose key is on its token: it cosigns the authority's
/// checkpoint; with the token out it answers 503 with Retry-After and
/// records nothing (the same request, from size 0, is cosigned once the
/// token is back).
fn witness_on_a_token(hsm: &SoftHsm, d: &std::path::Path, url: &str, log_vkey: &str) {
    let w = d.join("witness");
    let wkey = ok(&mg(&[
        "witness",
        "init",
        "--data",
        s(&w),
        "--name",
        "witness.example/w1",
        "--key",
        &hsm.uri("witness", "cosigner"),
    ]))
    .trim()
    .to_owned();
    let line = std::fs::read_to_string(w.join("witness.key")).unwrap();
    assert!(line.starts_with("PKCS11+KEY+witness.example/w1+"), "{line}");
    let witness = common::spawn_json_server(&[
        "witness",
        "serve",
        "--data",
        s(&w),
        "--listen",
        "127.0.0.1:0",
        "--log",
        log_vkey,
    ]);
    let checkpoint = common::world::get_text(&format!("{url}/log/checkpoint"));
    let body = format!("old 0\n\n{checkpoint}");
    let post = || {
        let mut r = common::world::agent()
            .post(&format!("{}/add-checkpoint", witness.url))
            .send(body.as_bytes())
            .unwrap();
        let retry = r.headers().get("retry-after").is_some();
        (
            r.status().as_u16(),
            retry,
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    hsm.remove();
    let (st, retry, text) = post();
    assert_eq!((st, retry), (503, true), "{text}");
    assert!(text.contains("pkcs11:token=witness;object=cosigner"), "{text}");
    hsm.restore();
    let (st, text) = eventually(30, "a cosignature once the token is back", || {
        let (st, _, text) = post();
        (st != 503).then_some((st, text))
    })
    .0;
    assert_eq!(st, 200, "nothing was recorded while the token was out: {text}");
    let name = wkey.split('+').next().unwrap();
    assert!(text.starts_with(&format!("\u{2014} {name} ")), "{text}");
}

/// Trust root v2 (alice approver, a model signer, a policy admin, a node
/// admin; their public keys read from the governance token), signed by both
/// custodians; the model signed and registered with token keys.
fn governed_by_tokens(hsm: &SoftHsm, d: &std::path::Path, url: &str, root: &str, admin: &str) {
    let u = |t: &str, o: &str| hsm.uri(t, o);
    let p = |n: &str| d.join(n).display().to_string();
    let mut current: Option<String> = None;
    for (principal, role, extra) in [
        ("alice", "approver", String::new()),
        (
            "signer",
            "model-signer",
            format!(" --model-key {}", u("governance", "signer-model")),
        ),
        ("padmin", "policy-admin", String::new()),
        ("nadmin", "node-admin", String::new()),
    ] {
        let from = match &current {
            None => format!("--authority {url}"),
            Some(f) => format!("--current {f} --amend"),
        };
        let out = p(&format!("v2-{principal}.json"));
        ok(&mg_line(&format!(
            "trust edit {from} --out {out} --principal {principal} --role {role} --key {}{extra}",
            u("governance", principal)
        )));
        current = Some(out);
    }
    let v2 = current.unwrap();
    // One custodian of two: refused by the threshold.
    ok(&mg_line(&format!(
        "trust sign {v2} --key {} --out {}",
        u("custodian-1", "root"),
        p("v2-one.dsse.json")
    )));
    let o = mg_line(&format!(
        "submit {} --authority {url} --token {root}",
        p("v2-one.dsse.json")
    ));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("trust-root-threshold"), "{}", stderr(&o));
    ok(&mg_line(&format!(
        "trust sign {v2} --key {} --key {} --out {}",
        u("custodian-1", "root"),
        u("custodian-2", "root"),
        p("v2.dsse.json")
    )));
    assert!(ok(&mg_line(&format!(
        "submit {} --authority {url} --token {root}",
        p("v2.dsse.json")
    )))
    .contains("accepted at index 1"));
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), "weights").unwrap();
    ok(&mg(&["sign", s(&model), "--key", &u("governance", "signer-model")]));
    assert!(ok(&mg_line(&format!(
        "model register {} --name credit --model-version 1.0 --key {} --authority {url} --token {admin}",
        s(&model),
        u("governance", "signer")
    )))
    .contains("accepted at index 2"));
}

/// A node whose lineage key is on its token: enrolled, approved, serving;
/// refusing calls while the token is out; serving again once it is back.
fn node_on_a_token(hsm: &SoftHsm, d: &std::path::Path, url: &str, admin: &str, data: &std::path::Path) {
    let u = |t: &str, o: &str| hsm.uri(t, o);
    let digest = ok(&mg(&["digest", s(&d.join("model"))])).trim().to_owned();
    let config = d.join("node.toml");
    std::fs::write(
        &config,
        format!(
            "node = \"node-1\"\nauthority = \"{url}\"\ntrust_root = \"{}\"\nkey = \"{}\"\nscopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = 30\ndata_dir = \"node-data\"\n{}\n[models.credit]\ndir = \"model\"\nbundle = \"model/model.sig\"\n",
            s(&data.join("trust-root.dsse.json")),
            u("node-1", "lineage"),
            caller_table("scoring", CALLER, &[], &["prod/credit/scoring"])
        ),
    )
    .unwrap();
    let o = mg(&["node", "init", "--config", s(&config)]);
    let vkey = ok(&o).trim().to_owned();
    assert!(stderr(&o).contains("on its token"), "{}", stderr(&o));
    assert!(!d.join("node.skey").exists());
    ok(&mg_line(&format!(
        "node enroll node-1 --node-key {vkey} --scope prod/* --key {} --authority {url} --token {admin}",
        u("governance", "nadmin")
    )));
    ok(&mg_line(&format!(
        "approve {digest} --scope prod/credit/* --until +1d --tier low --ticket CHG-9 --key {} --authority {url} --token {admin}",
        u("governance", "alice")
    )));
    std::fs::write(d.join("all.cedar"), "permit(principal, action, resource);").unwrap();
    ok(&mg_line(&format!(
        "policy publish {} --key {} --authority {url} --token {admin}",
        s(&d.join("all.cedar")),
        u("governance", "padmin")
    )));
    let g = start_gateway(&config);
    common::world::wait_for(&g.events, 30, "Serving", |v| v["state"] == "Serving");
    let (st, _, body) = call(&g.url, Some(CALLER), None, &chat(false));
    assert_eq!(st, 200, "{body}");
    hsm.remove();
    let (st, _, body) = call(&g.url, Some(CALLER), None, &chat(false));
    assert_eq!(st, 503, "a call served with its lineage unsigned: {body}");
    assert_eq!(body["error"]["code"], "AuditDiscontinuity", "{body}");
    hsm.restore();
    eventually(30, "calls served again once the token is back", || {
        let (st, _, _) = call(&g.url, Some(CALLER), None, &chat(false));
        (st == 200).then_some(())
    });
}
