//! The lifecycle with real checks: a signed, registered, approved model
//! reaches Serving through all ten steps; a changed model file, a bundle no
//! trusted key signed, a stale view, a revoked model and a failing lineage
//! log each contain it with their reason; recovery restarts from step one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_node::digest_cache::{CachedResource, DigestCache, FileId, VerifiedFile};
use modelgate_node::integrity::IntegrityOptions;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use modelgate_governance::{fold, to_canonical, ContainmentReason, Envelope, State};
use modelgate_node::lifecycle::*;
use modelgate_node::View;
use modelgate_oms::{HashAlgorithm, HashOptions, Method, PrivateKey, Signer};
use modelgate_tlog::{leaf_hash, Checkpoint, CompactTree, KeyType, SignerKey};
use serde_json::{json, Value};

const NOW: u64 = 1_800_000_000;

fn sign(v: &Value, keys: &[&SigningKey]) -> Vec<u8> {
    let keys: Vec<&dyn modelgate_governance::Signer> = keys.iter().map(|k| *k as _).collect();
    Envelope::sign(&to_canonical(v).unwrap(), &keys).unwrap()
}

fn model_key(seed: u8) -> PrivateKey {
    PrivateKey::P256(p256::ecdsa::SigningKey::from_bytes(&[seed; 32].into()).unwrap())
}

fn sign_model(dir: &Path, seed: u8) -> String {
    let opts = HashOptions {
        method: Method::Files,
        hash: HashAlgorithm::Sha256,
        allow_symlinks: false,
        ignore: vec![],
        threads: Some(1),
    };
    let manifest = modelgate_oms::hash_model(dir, &opts, None).unwrap();
    let bundle = modelgate_oms::sign_manifest(&manifest, &Signer::Key(model_key(seed))).unwrap();
    std::fs::write(dir.with_extension("sig"), &bundle).unwrap();
    manifest.root_digest().iter().map(|b| format!("{b:02x}")).collect()
}

struct World {
    _dir: tempfile::TempDir,
    spec: ModelSpec,
    entries: Vec<Vec<u8>>,
    alice: SigningKey,
    digest: String,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("weights.bin"), "weights").unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    let digest = sign_model(&model, 70);
    let k = |s: u8| SigningKey::from_bytes(&[s; 32]);
    let (root, alice, pipeline, padmin, nadmin) = (k(1), k(10), k(20), k(30), k(40));
    let b = |key: &SigningKey| B64.encode(key.verifying_key().as_bytes());
    let log = SignerKey::from_seed("a.example/gov", KeyType::Ed25519, &[60; 32]).unwrap();
    let cos = SignerKey::from_seed("a.example/gov", KeyType::CosignatureV1, &[61; 32]).unwrap();
    let node = SignerKey::from_seed("node-1.example/lineage", KeyType::Ed25519, &[50; 32]).unwrap();
    let doc = json!({
        "type": "trust-root", "version": 1, "root_version": 1,
        "principals": {
            "root": {"roles": ["root"], "keys": [b(&root)], "model_keys": []},
            "alice": {"roles": ["approver"], "keys": [b(&alice)], "model_keys": []},
            "pipeline": {"roles": ["model-signer"], "keys": [b(&pipeline)], "model_keys": [model_key(70).public_key().to_pem().unwrap()]},
            "padmin": {"roles": ["policy-admin"], "keys": [b(&padmin)], "model_keys": []},
            "nadmin": {"roles": ["node-admin"], "keys": [b(&nadmin)], "model_keys": []}
        },
        "thresholds": {"root": 1, "model": 1, "approval": {"low": 1, "medium": 1, "high": 1, "critical": 1}, "revocation": 1, "exception": 1, "policy": 1, "enrollment": 1},
        "authority": {"log": log.verifier().to_string(), "cosigner": cos.verifier().to_string()},
        "witnesses": [], "witness_quorum": 0,
        "freshness": {"max_staleness_seconds": 30, "anchor_max_age_seconds": 60}
    });
    let bundle = std::fs::read(model.with_extension("sig")).unwrap();
    let entries = vec![
        sign(&doc, &[&root]),
        sign(
            &json!({"type": "model", "version": 1, "model_name": "credit", "model_version": "1", "bundle": B64.encode(bundle)}),
            &[&pipeline],
        ),
        sign(
            &json!({"type": "policy-set", "version": 2, "name": "p", "policies": "permit(principal, action, resource);", "replaces": ""}),
            &[&padmin],
        ),
        sign(
            &json!({"type": "node-enrollment", "version": 1, "node": "node-1", "key": node.verifier().to_string(), "scopes": ["prod/*"]}),
            &[&nadmin],
        ),
        sign(
            &json!({"type": "approval", "version": 1, "model": digest, "scopes": ["prod/credit/*"], "valid_from": 0, "valid_until": NOW + 86_400, "risk_tier": "low", "ticket": "CHG-1"}),
            &[&alice],
        ),
    ];
    let spec = ModelSpec {
        name: "credit".into(),
        dir: model.clone(),
        bundle: model.with_extension("sig"),
        scope: "prod/credit/scoring".into(),
        node: "node-1".into(),
    };
    World {
        _dir: dir,
        spec,
        entries,
        alice,
        digest,
    }
}

fn view(entries: &[Vec<u8>], authority_time: u64) -> View {
    let state: State = fold(&entries[0], entries.iter().map(Vec::as_slice)).unwrap();
    let mut tree = CompactTree::new();
    for e in entries {
        tree.append(leaf_hash(e), |_, _, _| {});
    }
    let checkpoint = Checkpoint {
        origin: "a.example/gov".into(),
        size: tree.size(),
        root: tree.root(),
        extensions: vec![],
    };
    View {
        checkpoint,
        authority_time,
        state: std::sync::Arc::new(state),
        tree,
        note: std::sync::Arc::new(Vec::new()),
    }
}

type Contained = Box<Lifecycle<modelgate_node::lifecycle::Contained>>;

/// Run all ten steps; the first containment is returned as Err.
fn run(spec: &ModelSpec, v: Option<&View>, lineage_ok: bool) -> Result<Lifecycle<Serving>, Contained> {
    let (m, v) = Lifecycle::new(spec.clone(), NOW)
        .validate(NOW)?
        .inspect_coordination(v, NOW, 30)?;
    let m = m.verify_integrity(NOW)?.verify_signature(v, NOW)?;
    let lineage = if lineage_ok {
        Ok(0)
    } else {
        Err("lineage log: disk full".to_owned())
    };
    let m = m.validate_telemetry(lineage, NOW)?;
    let (m, digest, basis) = m.evaluate(v, NOW)?;
    let m = m
        .approve(NOW)
        .persist(Ok::<u64, String>(1), NOW)?
        .verify_audit(Ok::<u64, String>(2), NOW)?;
    Ok(m.serve(digest, basis, v.checkpoint.size, NOW))
}

#[test]
fn a_governed_model_reaches_serving_through_all_ten_steps() {
    let w = world();
    let v = view(&w.entries, NOW - 1);
    let serving = run(&w.spec, Some(&v), true).unwrap();
    assert_eq!(serving.serving().digest, w.digest);
    let steps: Vec<&str> = serving.transitions().iter().map(|t| t.step).collect();
    assert_eq!(
        steps,
        [
            "Initializing",
            "Validating",
            "CoordinationInspection",
            "IntegrityVerification",
            "SignatureVerification",
            "TelemetryValidation",
            "EnforcementEvaluation",
            "Approved",
            "Persisting",
            "AuditVerified",
            "Serving"
        ]
    );
    // Containment while serving, and recovery through the whole lifecycle again.
    let contained = serving.contain(
        ContainmentReason::SyncInterrupted,
        "authority unreachable".into(),
        NOW + 60,
    );
    let again = contained.restart(NOW + 61);
    assert_eq!(again.transitions().len(), 13);
}

fn reason(r: Result<Lifecycle<Serving>, Contained>) -> ContainmentReason {
    match r {
        Ok(_) => panic!("served"),
        Err(c) => c.contained().reason,
    }
}

#[test]
fn each_failed_check_contains_with_its_reason() {
    let w = world();
    let v = view(&w.entries, NOW - 1);
    // No view, or a stale one.
    assert_eq!(reason(run(&w.spec, None, true)), ContainmentReason::SyncInterrupted);
    assert_eq!(
        reason(run(&w.spec, Some(&view(&w.entries, NOW - 31)), true)),
        ContainmentReason::SyncInterrupted
    );
    // The lineage log cannot be written.
    assert_eq!(
        reason(run(&w.spec, Some(&v), false)),
        ContainmentReason::AuditDiscontinuity
    );
    // Revoked after approval: the decision no longer allows it.
    let mut revoked = w.entries.clone();
    revoked.push(sign(
        &json!({"type": "revocation", "version": 1, "model": w.digest, "reason": "drift", "ticket": "INC-1"}),
        &[&w.alice],
    ));
    assert_eq!(
        reason(run(&w.spec, Some(&view(&revoked, NOW - 1)), true)),
        ContainmentReason::UnverifiableTransition
    );
    // A model file changed by one byte.
    std::fs::write(w.spec.dir.join("weights.bin"), "weightz").unwrap();
    let c = run(&w.spec, Some(&v), true).err().unwrap();
    assert_eq!(c.contained().reason, ContainmentReason::UnauthorizedModification);
    assert!(c.contained().detail.contains("weights.bin"), "{}", c.contained().detail);
    // Re-signed by a key the trust root does not know (files match again).
    sign_model(&w.spec.dir, 99);
    assert_eq!(
        reason(run(&w.spec, Some(&v), true)),
        ContainmentReason::SignatureInvalid
    );
    // The signature file is gone.
    std::fs::remove_file(&w.spec.bundle).unwrap();
    assert_eq!(
        reason(run(&w.spec, Some(&v), true)),
        ContainmentReason::SignatureInvalid
    );
}

/// The integrity step alone with `cache`: what it said, or why it contained.
fn integrity(w: &World, cache: &DigestCache) -> Result<String, (ContainmentReason, String)> {
    let v = view(&w.entries, NOW - 1);
    let (m, _) = Lifecycle::new(w.spec.clone(), NOW)
        .validate(NOW)
        .unwrap()
        .inspect_coordination(Some(&v), NOW, 30)
        .unwrap();
    let o = IntegrityOptions {
        cache: Some(cache),
        trust_cache: true,
        ..IntegrityOptions::default()
    };
    match m.verify_integrity_with(NOW, o) {
        Ok(m) => Ok(m.transitions().last().unwrap().detail.clone()),
        Err(c) => Err((c.contained().reason, c.contained().detail.clone())),
    }
}

fn vouched(detail: &str) -> usize {
    detail
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{detail}"))
}

fn touch(path: &Path, when: &str) {
    let o = std::process::Command::new("touch")
        .args(["-d", when, path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn the_verified_digest_cache_vouches_only_for_files_not_written_since() {
    let w = world();
    let data = w._dir.path().join("node-data");
    let open = || DigestCache::open(&data).unwrap();
    let (cache, discarded) = open();
    assert!(discarded.is_none());
    // First verification: every file read, then recorded.
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 0);
    // A restart: both files vouched for, nothing read.
    let (cache, _) = open();
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 2);
    let weights = w.spec.dir.join("weights.bin");
    let contained = |what: &str| {
        let (cache, _) = open();
        let (reason, detail) = integrity(&w, &cache).expect_err(what);
        assert_eq!(reason, ContainmentReason::UnauthorizedModification, "{what}: {detail}");
        assert!(detail.contains("weights.bin"), "{what}: {detail}");
    };
    // Changed with the mtime put back: ctime moved, so it is read again.
    touch(&weights, "2020-01-01 00:00:00");
    let (cache, _) = open();
    assert_eq!(
        vouched(&integrity(&w, &cache).unwrap()),
        1,
        "a touched file is read again"
    );
    std::fs::write(&weights, "weightz").unwrap();
    touch(&weights, "2020-01-01 00:00:00");
    contained("content changed, mtime restored");
    std::fs::write(&weights, "weights").unwrap();
    let (cache, _) = open();
    integrity(&w, &cache).unwrap();
    // Replaced by rename (another inode), same size and mtime.
    let other = w.spec.dir.join("weights.new");
    std::fs::write(&other, "weightz").unwrap();
    touch(&other, "2020-01-01 00:00:00");
    touch(&weights, "2020-01-01 00:00:00");
    std::fs::rename(&other, &weights).unwrap();
    contained("replaced by rename");
    std::fs::write(&weights, "weights").unwrap();
    let (cache, _) = open();
    integrity(&w, &cache).unwrap();
    // Truncated and rewritten to the same size, in place.
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&weights)
            .unwrap();
        f.write_all(b"weighty").unwrap();
    }
    contained("same-size truncate and rewrite");
    std::fs::write(&weights, "weights").unwrap();
    let (cache, _) = open();
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 1);
    // The cache edited: discarded whole, every file read again.
    let file = data.join("digest-cache.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("\"size\":7", "\"size\":8", 1)).unwrap();
    let (cache, discarded) = open();
    assert!(discarded.unwrap().contains("not authenticated"));
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 0);
    // Another node's cache (another key) swapped in: discarded.
    let elsewhere = w._dir.path().join("other-node");
    let (theirs, _) = DigestCache::open(&elsewhere).unwrap();
    integrity(&w, &theirs).unwrap();
    std::fs::copy(elsewhere.join("digest-cache.json"), &file).unwrap();
    let (cache, discarded) = open();
    assert!(discarded.is_some(), "a cache under another key was accepted");
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 0);
    // Deleted: everything read again, and recorded again.
    std::fs::remove_file(&file).unwrap();
    let (cache, discarded) = open();
    assert!(discarded.is_none());
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 0);
    let (cache, _) = open();
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 2);
}

/// A change the file's identity does not show (root can make one: the clock
/// set back, or the block device written beneath the file system) is stood
/// in for by a cache entry forged with the node's own key: the new bytes'
/// identity with the old bytes' digests. The check before serving trusts
/// it; the background full re-verification reads every byte, contains, and
/// leaves nothing of the cache trusted for the model.
#[test]
fn the_full_re_verification_reads_every_byte_and_forgets_a_cache_that_lied() {
    let w = world();
    let data = w._dir.path().join("node-data");
    let (cache, _) = DigestCache::open(&data).unwrap();
    integrity(&w, &cache).unwrap();
    let weights = w.spec.dir.join("weights.bin");
    // What the cache holds for weights.bin, from its (readable) body.
    let text = std::fs::read_to_string(data.join("digest-cache.json")).unwrap();
    let body: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let entry = &body["entries"][weights.to_str().unwrap()];
    let method = entry["method"].as_str().unwrap().to_owned();
    let old: Vec<CachedResource> = serde_json::from_value(entry["resources"].clone()).unwrap();
    std::fs::write(&weights, "weightz").unwrap();
    let files: Vec<VerifiedFile> = std::fs::read_dir(&w.spec.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != w.spec.bundle)
        .map(|path| {
            let rel = path.file_name().unwrap().to_str().unwrap().to_owned();
            let resources = if path == weights {
                old.clone()
            } else {
                serde_json::from_value(body["entries"][path.to_str().unwrap()]["resources"].clone()).unwrap()
            };
            assert!(!resources.is_empty(), "{rel} was not recorded");
            VerifiedFile {
                id: FileId::of(&path).unwrap(),
                path,
                fs_verity: None,
                resources,
            }
        })
        .collect();
    cache.record(&w.spec.dir, &method, files).unwrap();
    // Before serving, the check trusts the (lying) cache: nothing is read.
    assert_eq!(vouched(&integrity(&w, &cache).unwrap()), 2);
    // The full re-verification, paced, reads every byte and contains.
    let progress = modelgate_oms::HashProgress::paced(1 << 20);
    let full = IntegrityOptions {
        cache: Some(&cache),
        trust_cache: false,
        fs_verity: false,
        progress: Some(&progress),
    };
    let (reason, detail) = modelgate_node::integrity::verify(&w.spec, full).unwrap_err();
    assert_eq!(reason, ContainmentReason::UnauthorizedModification, "{detail}");
    assert!(detail.contains("weights.bin"), "{detail}");
    assert!(
        progress.done.load(std::sync::atomic::Ordering::Relaxed) >= 7,
        "the full re-verification did not read the files"
    );
    // The cache is forgotten for the model: the next check reads it all and contains.
    let (cache, _) = DigestCache::open(&data).unwrap();
    let (reason, _) = integrity(&w, &cache).unwrap_err();
    assert_eq!(reason, ContainmentReason::UnauthorizedModification);
    // A cancelled run stops and says so.
    let stopped = modelgate_oms::HashProgress::paced(1);
    stopped.cancel();
    let o = IntegrityOptions {
        progress: Some(&stopped),
        ..IntegrityOptions::default()
    };
    let (_, detail) = modelgate_node::integrity::verify(&w.spec, o).unwrap_err();
    assert!(detail.contains("cancelled"), "{detail}");
}

/// Where the kernel cannot seal (no CONFIG_FS_VERITY, or a file system
/// without the feature), asking for fs-verity says why, and the check goes
/// on with the verified-digest cache exactly as without it.
#[test]
fn fs_verity_where_the_kernel_cannot_seal_says_why_and_falls_back_to_the_cache() {
    let w = world();
    let weights = w.spec.dir.join("weights.bin");
    let can_seal = modelgate_node::fs_verity::measure(&weights).is_ok();
    let data = w._dir.path().join("node-data");
    let (cache, _) = DigestCache::open(&data).unwrap();
    let check = || {
        let o = IntegrityOptions {
            cache: Some(&cache),
            trust_cache: true,
            fs_verity: true,
            progress: None,
        };
        modelgate_node::integrity::verify(&w.spec, o).unwrap()
    };
    let first = check();
    let again = check();
    assert_eq!((again.vouched, again.read), (2, 0), "a restart reads nothing");
    if can_seal {
        // A temporary directory on a file system that seals: both files are.
        assert_eq!((first.read, first.sealed, first.unsealed), (2, 2, None));
        assert_eq!(again.sealed, 2);
    } else {
        assert_eq!((first.read, first.sealed), (2, 0));
        let why = first.unsealed.unwrap();
        assert!(why.contains("does not support fs-verity"), "{why}");
        assert_eq!(again.sealed, 0, "the identity cache is used instead");
    }
}
