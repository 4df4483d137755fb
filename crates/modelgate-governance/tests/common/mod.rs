//! A governance world for tests and benchmarks: keys for every role, a
//! trust root, real OMS-signed models, and helpers that sign entries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use ed25519_dalek::SigningKey;
use modelgate_governance::*;
use modelgate_oms::{HashAlgorithm, HashOptions, Method, PrivateKey, Signer};
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const AUTHORITY: &str = "authority.example/governance";

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn b64(k: &SigningKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

pub fn model_key(seed: u8) -> PrivateKey {
    PrivateKey::P256(p256::ecdsa::SigningKey::from_bytes(&[seed; 32].into()).unwrap())
}

pub struct World {
    pub root1: SigningKey,
    pub root2: SigningKey,
    pub root3: SigningKey,
    pub alice: SigningKey,
    pub bob: SigningKey,
    pub carol: SigningKey,
    /// Approver *and* model signer: separation of duties cases.
    pub dave: SigningKey,
    pub pipeline: SigningKey,
    pub padmin: SigningKey,
    pub nadmin: SigningKey,
    pub node: SignerKey,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    pub fn new() -> Self {
        Self {
            root1: key(1),
            root2: key(2),
            root3: key(3),
            alice: key(10),
            bob: key(11),
            carol: key(12),
            dave: key(13),
            pipeline: key(20),
            padmin: key(30),
            nadmin: key(40),
            node: SignerKey::from_seed("node-1.example/lineage", KeyType::Ed25519, &[50; 32]).unwrap(),
        }
    }

    /// Trust root document version `v` with these root keys (threshold 2).
    pub fn root_doc(&self, v: u64, roots: &[&SigningKey]) -> Value {
        let log = SignerKey::from_seed(AUTHORITY, KeyType::Ed25519, &[60; 32]).unwrap();
        let cos = SignerKey::from_seed(AUTHORITY, KeyType::CosignatureV1, &[61; 32]).unwrap();
        let mut principals = serde_json::Map::new();
        for (i, r) in roots.iter().enumerate() {
            principals.insert(
                format!("root-{i}"),
                json!({"roles": ["root"], "keys": [b64(r)], "model_keys": []}),
            );
        }
        let pem = |seed: u8| model_key(seed).public_key().to_pem().unwrap();
        principals.insert(
            "alice".into(),
            json!({"roles": ["approver"], "keys": [b64(&self.alice)], "model_keys": []}),
        );
        principals.insert(
            "bob".into(),
            json!({"roles": ["approver"], "keys": [b64(&self.bob)], "model_keys": []}),
        );
        principals.insert(
            "carol".into(),
            json!({"roles": ["approver"], "keys": [b64(&self.carol)], "model_keys": []}),
        );
        principals.insert(
            "dave".into(),
            json!({"roles": ["approver", "model-signer"], "keys": [b64(&self.dave)], "model_keys": [pem(71)]}),
        );
        principals.insert(
            "pipeline".into(),
            json!({"roles": ["model-signer"], "keys": [b64(&self.pipeline)], "model_keys": [pem(70)]}),
        );
        principals.insert(
            "padmin".into(),
            json!({"roles": ["policy-admin"], "keys": [b64(&self.padmin)], "model_keys": []}),
        );
        principals.insert(
            "nadmin".into(),
            json!({"roles": ["node-admin"], "keys": [b64(&self.nadmin)], "model_keys": []}),
        );
        json!({
            "type": "trust-root", "version": 1, "root_version": v,
            "principals": principals,
            "thresholds": {"root": 2, "model": 1, "approval": {"low": 1, "medium": 1, "high": 2, "critical": 3},
                           "revocation": 1, "exception": 1, "policy": 1, "enrollment": 1},
            "authority": {"log": log.verifier().to_string(), "cosigner": cos.verifier().to_string()},
            "witnesses": [], "witness_quorum": 0,
            "freshness": {"max_staleness_seconds": 30, "anchor_max_age_seconds": 60}
        })
    }

    pub fn genesis(&self) -> Vec<u8> {
        sign(
            &self.root_doc(1, &[&self.root1, &self.root2]),
            &[&self.root1, &self.root2],
        )
    }

    /// An OMS bundle for a small model whose content depends on `tag`,
    /// signed with the model key `seed` (70: pipeline, 71: dave).
    pub fn bundle(&self, tag: &str, seed: u8) -> (Vec<u8>, String) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "weights.bin", tag);
        write(dir.path(), "config.json", "{}");
        let opts = HashOptions {
            method: Method::Files,
            hash: HashAlgorithm::Sha256,
            allow_symlinks: false,
            ignore: vec![],
            threads: Some(1),
        };
        let manifest = modelgate_oms::hash_model(dir.path(), &opts, None).unwrap();
        let digest: String = manifest.root_digest().iter().map(|b| format!("{b:02x}")).collect();
        let bundle = modelgate_oms::sign_manifest(&manifest, &Signer::Key(model_key(seed))).unwrap();
        (bundle, digest)
    }

    /// A model registration entry: (entry, digest).
    pub fn model(&self, tag: &str, seed: u8, gov: &SigningKey) -> (Vec<u8>, String) {
        use base64::Engine as _;
        let (bundle, digest) = self.bundle(tag, seed);
        let p = json!({"type": "model", "version": 1, "model_name": format!("model-{tag}"), "model_version": "1.0.0",
                       "bundle": base64::engine::general_purpose::STANDARD.encode(bundle)});
        (sign(&p, &[gov]), digest)
    }

    pub fn approval(
        &self,
        model: &str,
        scopes: &[&str],
        window: (u64, u64),
        tier: &str,
        ticket: &str,
        keys: &[&SigningKey],
    ) -> Vec<u8> {
        let (from, until) = window;
        sign(
            &json!({"type": "approval", "version": 1, "model": model, "scopes": scopes, "valid_from": from,
                    "valid_until": until, "risk_tier": tier, "ticket": ticket}),
            keys,
        )
    }

    /// The log's first policy set.
    pub fn policy(&self, text: &str) -> Vec<u8> {
        self.policy_replacing(text, "")
    }

    /// A policy set replacing the one whose entry is `previous`.
    pub fn policy_after(&self, text: &str, previous: &[u8]) -> Vec<u8> {
        let payload = Envelope::parse(previous).unwrap().payload;
        self.policy_replacing(text, &hex::encode(Sha256::digest(&payload)))
    }

    pub fn policy_replacing(&self, text: &str, replaces: &str) -> Vec<u8> {
        sign(
            &json!({"type": "policy-set", "version": 2, "name": "test policies", "policies": text, "replaces": replaces}),
            &[&self.padmin],
        )
    }

    pub fn enroll(&self, node: &str, scopes: &[&str]) -> Vec<u8> {
        sign(
            &json!({"type": "node-enrollment", "version": 1, "node": node, "key": self.node.verifier().to_string(), "scopes": scopes}),
            &[&self.nadmin],
        )
    }

    pub fn revocation(&self, model: &str) -> Vec<u8> {
        self.revocation_with(model, "drift found", "INC-9")
    }

    pub fn revocation_with(&self, model: &str, reason: &str, ticket: &str) -> Vec<u8> {
        sign(
            &json!({"type": "revocation", "version": 1, "model": model, "reason": reason, "ticket": ticket}),
            &[&self.bob],
        )
    }

    pub fn exception(&self, model: &str, scopes: &[&str], expires: u64, ticket: &str) -> Vec<u8> {
        sign(
            &json!({"type": "exception", "version": 1, "model": model, "scopes": scopes, "expires": expires,
                    "risk_tier": "high", "ticket": ticket, "reason": "incident fix"}),
            &[&self.alice],
        )
    }
}

fn write(dir: &Path, name: &str, content: &str) {
    std::fs::write(dir.join(name), content).unwrap();
}

/// Sign a payload (canonicalised here) with governance keys.
pub fn sign(payload: &Value, keys: &[&SigningKey]) -> Vec<u8> {
    let bytes = to_canonical(payload).unwrap();
    let keys: Vec<&dyn modelgate_governance::Signer> = keys.iter().map(|k| *k as _).collect();
    Envelope::sign(&bytes, &keys).unwrap()
}

pub const PERMIT_ALL: &str = r#"
@id("permit-all")
permit(principal, action == Action::"infer", resource);
@id("no-forbidden-scopes")
forbid(principal, action, resource) when { context.scope like "prod/forbidden/*" };
@id("no-exceptions-in-payments")
forbid(principal, action, resource) when { context.via_exception && context.scope like "prod/payments/*" };
"#;
