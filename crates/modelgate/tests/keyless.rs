//! Keyless Sigstore bundles, against the real reference (`model-signing`
//! 1.1.1 with `sigstore` 4.5.1, `verify sigstore --trust_config`, offline),
//! from the private test Sigstore instance `tests/sigstore/mint.py` (a
//! Fulcio-like CA, a CT log, Rekor-v1-like and Rekor-v2-like logs, a
//! timestamp authority and their trusted root), in each of its profiles:
//! Rekor v1 with a SET, the same with an RFC 3161 timestamp (what the
//! public-good instance writes), and Rekor v2 with a timestamp.
//! Every mutation the minter makes must be refused by modelgate; the
//! reference must agree, except where TESTING.md says why we are stricter.
//! `scripts/test.sh` sets MODELGATE_REFERENCE_PYTHON; under CI a missing
//! reference fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const IDENTITY: &str = "signer@example.com";
const ISSUER: &str = "https://accounts.example.com";
/// The minter's profiles.
const PROFILES: [&str; 3] = ["v1", "v1-tsa", "v2"];
/// Mutations (profile/name) the reference (sigstore-python 4.5.1) accepts
/// and modelgate refuses, each explained in TESTING.md.
const STRICTER: [&str; 16] = [
    "v1/proof-tree-size",
    "v1/sct-log-unknown",
    "v1/root-ca-window-ended",
    "v1/root-tlog-window-ended",
    "v1-tsa/tsa-imprint",
    "v1-tsa/tsa-untrusted",
    "v1-tsa/tsa-status",
    "v1-tsa/tsa-window-ended",
    "v1-tsa/tsa-content-digest",
    "v2/log-index",
    "v2/proof-tree-size",
    "v2/log-id",
    "v2/sct-log-unknown",
    "v2/root-ca-window-ended",
    "v2/root-tlog-window-ended",
    "v2/tsa-attr-content-type",
];

fn python() -> Option<PathBuf> {
    common::installed_tool("MODELGATE_REFERENCE_PYTHON", "model-signing 1.1.1")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("couldn't run {cmd:?}: {e}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mg(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_modelgate")).args(args))
}

fn minter() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sigstore/mint.py")
}

/// A model, signed with a key (the payload the keyless bundles re-sign).
fn model(dir: &Path) -> (PathBuf, PathBuf) {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::write(m.join("weights.bin"), vec![7u8; 70_000]).unwrap();
    std::fs::write(m.join("config.json"), b"{\"layers\": 2}\n").unwrap();
    let key = dir.join("k");
    assert!(mg(&["keygen", "--out", s(&key)]).status.success());
    let oms = dir.join("key-signed.sig");
    let o = mg(&[
        "sign",
        s(&m),
        "--key",
        &format!("{}.key", s(&key)),
        "--signature",
        s(&oms),
    ]);
    assert!(o.status.success(), "{o:?}");
    (m, oms)
}

fn mint(py: &Path, oms: &Path, out: &Path, profile: &str, mutation: Option<&str>) {
    let mut cmd = Command::new(py);
    cmd.arg(minter()).args([
        "--profile",
        profile,
        "--oms",
        s(oms),
        "--identity",
        IDENTITY,
        "--issuer",
        ISSUER,
        "--out",
        s(out),
    ]);
    if let Some(m) = mutation {
        cmd.args(["--mutate", m]);
    }
    let o = run(&mut cmd);
    assert!(
        o.status.success(),
        "mint {mutation:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Whether the reference verifies `sig` for `model` with the minted trust config.
fn reference_accepts(py: &Path, model: &Path, sig: &Path, minted: &Path) -> (bool, String) {
    let o = run(Command::new(py)
        .args(["-m", "model_signing", "verify", "sigstore", s(model)])
        .args([
            "--signature",
            s(sig),
            "--identity",
            IDENTITY,
            "--identity_provider",
            ISSUER,
            "--trust_config",
            s(&minted.join("trust_config.json")),
        ]));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), said)
}

fn modelgate_verify(model: &Path, sig: &Path, root: &Path, identity: &[&str]) -> Output {
    let mut args = vec!["verify", s(model), "--signature", s(sig), "--trust-root", s(root)];
    args.extend_from_slice(identity);
    args.extend_from_slice(&["--identity-provider", ISSUER]);
    mg(&args)
}

#[test]
fn a_keyless_bundle_verifies_offline_with_the_reference_and_with_modelgate() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (model, oms) = model(dir.path());
    for profile in PROFILES {
        let minted = dir.path().join(profile);
        mint(&py, &oms, &minted, profile, None);
        let sig = minted.join("model.sig");
        let (ok, said) = reference_accepts(&py, &model, &sig, &minted);
        assert!(ok, "{profile}: the reference refused the minted bundle: {said}");
        for root in ["trusted_root.json", "trust_config.json"] {
            let o = modelgate_verify(&model, &sig, &minted.join(root), &["--identity", IDENTITY]);
            assert!(
                o.status.success(),
                "{profile} {root}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
    let minted = dir.path().join("v1");
    let sig = minted.join("model.sig");
    let o = modelgate_verify(
        &model,
        &sig,
        &minted.join("trusted_root.json"),
        &["--identity-regexp", ".*@example\\.com"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // Who signed must be who is named; the issuer must be the one named.
    for (identity, check) in [
        (vec!["--identity", "other@example.com"], "keyless-identity"),
        (vec!["--identity-regexp", "signer"], "keyless-identity"),
    ] {
        let o = modelgate_verify(&model, &sig, &minted.join("trusted_root.json"), &identity);
        assert_eq!(o.status.code(), Some(1), "{identity:?}");
        assert!(String::from_utf8_lossy(&o.stderr).contains(check), "{o:?}");
    }
    let o = mg(&[
        "verify",
        s(&model),
        "--signature",
        s(&sig),
        "--trust-root",
        s(&minted.join("trusted_root.json")),
        "--identity",
        IDENTITY,
        "--identity-provider",
        "https://elsewhere.example.com",
    ]);
    assert_eq!(o.status.code(), Some(1));
    // The embedded public-good root does not know the test instance.
    let o = mg(&[
        "verify",
        s(&model),
        "--signature",
        s(&sig),
        "--identity",
        IDENTITY,
        "--identity-provider",
        ISSUER,
    ]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in the trusted root"));
    // A changed model byte is still a changed model.
    std::fs::write(model.join("weights.bin"), vec![8u8; 70_000]).unwrap();
    let o = modelgate_verify(
        &model,
        &sig,
        &minted.join("trusted_root.json"),
        &["--identity", IDENTITY],
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn every_mutation_is_refused_and_the_reference_agrees_but_where_documented() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (model, oms) = model(dir.path());
    let mut mutations: Vec<(&str, String)> = Vec::new();
    for profile in PROFILES {
        let list = run(Command::new(&py).arg(minter()).args(["--profile", profile, "--list"]));
        assert!(list.status.success());
        let names = String::from_utf8(list.stdout).unwrap();
        mutations.extend(names.lines().map(|m| (profile, m.to_owned())));
    }
    assert!(mutations.len() >= 300, "{} mutations", mutations.len());
    // Two workers (the machine's cores): each mutation is minted, then
    // verified by modelgate and by the reference.
    let half = mutations.len() / 2;
    let accepted_by_reference = |chunk: &[(&str, String)]| -> Vec<String> {
        let mut accepted = Vec::new();
        for (profile, m) in chunk {
            let m = &format!("{profile}/{m}");
            let minted = dir.path().join(m);
            mint(&py, &oms, &minted, profile, m.split_once('/').map(|x| x.1));
            let sig = minted.join("model.sig");
            let o = modelgate_verify(
                &model,
                &sig,
                &minted.join("trusted_root.json"),
                &["--identity", IDENTITY],
            );
            let said = String::from_utf8_lossy(&o.stderr);
            assert_eq!(
                o.status.code(),
                Some(1),
                "{m}: modelgate must refuse it as a verification failure: {said}"
            );
            assert!(said.contains("keyless-"), "{m}: names no check: {said}");
            if reference_accepts(&py, &model, &sig, &minted).0 {
                accepted.push(m.to_owned());
            }
        }
        accepted
    };
    let (a, b) = std::thread::scope(|t| {
        let first = t.spawn(|| accepted_by_reference(&mutations[..half]));
        let second = accepted_by_reference(&mutations[half..]);
        (first.join().unwrap(), second)
    });
    let disagreements: Vec<String> = a.into_iter().chain(b).collect();
    assert_eq!(disagreements, STRICTER, "the mutations only the reference accepts");
    eprintln!(
        "{} mutations: modelgate refused all; the reference accepted {disagreements:?}",
        mutations.len()
    );
}

/// The keyless fixture governed end to end: its identity is a model signer
/// of the trust root (under the trust root's own Sigstore root), the model
/// is registered, approved, served through the gateway; a changed byte
/// contains it, the restored bytes serve again, and a revocation refuses it. No reference tool or network is needed: the fixture was
/// minted, and verified by the reference, when it was made.
#[test]
fn a_keyless_model_is_registered_approved_served_and_contained() {
    use common::world::{approved_node, call, caller_table, chat, keygen, start_gateway, token, wait_for, World};
    use common::{mg_line, ok, serve};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("authority");
    let server = serve(&data);
    let url = server.url.clone();
    let (root_token, admin) = (token(&data, "root"), token(&data, "admin"));
    for k in ["alice", "signer", "padmin", "nadmin"] {
        keygen(d, k, "ed25519");
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../modelgate-oms/tests/data/keyless");
    let p = |n: &str| s(&d.join(n)).to_owned();
    let edits = [
        format!(
            "--authority {url} --principal alice --role approver --key {}",
            p("alice.pub")
        ),
        format!("--principal signer --role model-signer --key {}", p("signer.pub")),
        format!("--principal padmin --role policy-admin --key {}", p("padmin.pub")),
        format!("--principal nadmin --role node-admin --key {}", p("nadmin.pub")),
        format!(
            "--add-keyless-signer signer --issuer {ISSUER} --identity {IDENTITY} --sigstore-root {}",
            s(&fixture.join("trusted_root.json"))
        ),
    ];
    for (i, e) in edits.iter().enumerate() {
        let from = if i == 0 {
            String::new()
        } else {
            format!("--current {} --amend ", p(&format!("v{i}.json")))
        };
        ok(&mg_line(&format!(
            "trust edit {from}{e} --out {}",
            p(&format!("v{}.json", i + 1))
        )));
    }
    let root_key = data.join("offline-root-keys/root-1.key");
    ok(&mg_line(&format!(
        "trust sign {} --key {} --out {}",
        p("v5.json"),
        s(&root_key),
        p("v2.dsse.json")
    )));
    ok(&mg_line(&format!(
        "submit {} --authority {url} --token {root_token}",
        p("v2.dsse.json")
    )));

    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["weights.bin", "config.json"] {
        std::fs::copy(fixture.join("model").join(f), model.join(f)).unwrap();
    }
    std::fs::copy(fixture.join("keyless.sig"), model.join("model.sig")).unwrap();
    let digest = ok(&mg_line(&format!("digest {}", s(&model)))).trim().to_owned();
    let o = mg_line(&format!(
        "model register {} --name credit --model-version 1.0 --key {} --authority {url} --token {admin}",
        s(&model),
        p("signer.key")
    ));
    assert!(ok(&o).contains("accepted at index 2"), "{o:?}");
    let registered = common::world::get_json(&format!("{url}/api/v1/models/{digest}"));
    assert_eq!(
        registered["model"]["signers"],
        serde_json::json!(["signer"]),
        "{registered}"
    );
    let keyless = &registered["model"]["keyless"];
    assert_eq!(
        (keyless["identity"].as_str(), keyless["issuer"].as_str()),
        (Some(IDENTITY), Some(ISSUER))
    );
    assert_eq!(keyless["log_index"], 6, "{registered}");
    // The console names the keyless signer, its issuer and its Rekor entry.
    let page = common::world::get_text(&format!("{url}/models/{digest}"));
    for shown in ["Keyless signer", IDENTITY, ISSUER, "Rekor log index 6"] {
        assert!(page.contains(shown), "the model page does not show {shown:?}");
    }
    // And as a person sees it, in Chromium with the console's CSP enforced.
    let (browser, chromium) = common::browser_tools();
    let o = run(Command::new("node")
        .arg(browser.join("page.mjs"))
        .arg(format!("{url}/models/{digest}"))
        .args(["Keyless signer", IDENTITY, ISSUER, "Rekor log index 6"])
        .env("CHROMIUM", &chromium));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && said.contains("every browser check passed"),
        "{said}"
    );

    let w = World {
        dir,
        data,
        server,
        admin,
        digest,
    };
    let extra = "anchor_interval_seconds = 1\nlineage_replication_interval_seconds = 1\n";
    let callers = caller_table("svc", "svc-token", &[], &["prod/credit/scoring"]);
    let config = approved_node(&w, &format!("{extra}{callers}"));
    let g = start_gateway(&config);
    wait_for(&g.events, 30, "Serving", |v| v["state"] == "Serving");
    let (st, h, _) = call(&g.url, Some("svc-token"), None, &chat(false));
    assert_eq!(st, 200);
    // The call's full-chain proof, offline with the pinned trust root only:
    // the registration link re-verifies the keyless signature under the
    // Sigstore root the trust root carries.
    let id = h["x-modelgate-lineage-id"].to_str().unwrap().to_owned();
    let proof_url = format!("{url}/api/v1/nodes/node-1/lineage/{id}/proof");
    let (proof, _) = common::world::eventually(20, "the call's full proof", || {
        let mut r = common::world::agent().get(&proof_url).call().ok()?;
        (r.status().as_u16() == 200).then(|| r.body_mut().read_to_string().unwrap())
    });
    let pf = w.dir.path().join("call.proof.json");
    std::fs::write(&pf, &proof).unwrap();
    let pinned = w.data.join("trust-root.dsse.json");
    let out = ok(&mg(&["lineage", "verify", s(&pf), "--trust-root", s(&pinned)]));
    assert!(out.contains("its OMS bundle signed by signer"), "{out}");
    // The saved proof viewer passes every step before the registration and
    // names the one it leaves to the CLI, rather than pass or guess it.
    let mut resp = common::world::agent()
        .get(&format!("{url}/proof/viewer.html"))
        .call()
        .unwrap();
    let viewer = w.dir.path().join("modelgate-proof-viewer.html");
    std::fs::write(&viewer, resp.body_mut().read_to_string().unwrap()).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let cases = serde_json::json!([{
        "kind": "lineage",
        "proof": b64.encode(&proof),
        "trust_root": b64.encode(std::fs::read(&pinned).unwrap()),
        "full": false,
        "expect_valid": false,
    }]);
    let (cases_file, out_file) = (w.dir.path().join("cases.json"), w.dir.path().join("verdicts.json"));
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    let o = run(Command::new("node")
        .arg(browser.join("verdicts.mjs"))
        .args([s(&viewer), s(&cases_file), s(&out_file)])
        .env("CHROMIUM", &chromium));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let verdicts: serde_json::Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    let reason = verdicts[0]["reason"].as_str().unwrap_or_default();
    assert_eq!(verdicts[0]["valid"], false, "{verdicts}");
    assert!(
        reason.contains("signed keyless") && reason.contains("modelgate lineage verify"),
        "the viewer must name the step it leaves to the CLI: {reason}"
    );
    let weights = w.dir.path().join("model/weights.bin");
    std::fs::write(&weights, b"tiny weights for the keyless fixturE\n").unwrap();
    let v = wait_for(&g.events, 30, "Contained", |v| v["state"] == "Contained");
    assert_eq!(v["reason"], "UnauthorizedModification", "{v}");
    assert_ne!(call(&g.url, Some("svc-token"), None, &chat(false)).0, 200);
    // Restored: the node verifies the keyless bundle again, offline, and serves.
    std::fs::copy(fixture.join("model/weights.bin"), &weights).unwrap();
    wait_for(&g.events, 30, "Serving again", |v| v["state"] == "Serving");
    common::world::eventually(20, "calls served again", || {
        (call(&g.url, Some("svc-token"), None, &chat(false)).0 == 200).then_some(())
    });
    // Revoked like any model: the decision refuses it by name.
    common::world::revoke(&w, "drift", "INC-3");
    let (code, _) = common::world::eventually(10, "revocation", || {
        let (st, _, b) = call(&g.url, Some("svc-token"), None, &chat(false));
        (st != 200).then(|| (st, b["error"]["code"].as_str().unwrap_or("").to_owned()))
    });
    assert_eq!(code, (403, "Revoked".to_owned()));
}
