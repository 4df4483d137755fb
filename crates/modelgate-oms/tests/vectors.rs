//! The OMS v1.0 sample bundles (from the model-signing spec repository): valid ones
//! parse and their statements validate; invalid ones are refused with a reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use modelgate_oms::{pae, verify_bundle, Bundle, Manifest, Material, PrivateKey, Trust};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/oms/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A fixed scalar keeps the tests deterministic without shipping key files.
fn test_key() -> PrivateKey {
    PrivateKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap())
}

/// Wraps `payload` in a bundle signed by [`test_key`] and verifies it. The vectors'
/// own signatures need keys they do not ship; re-signing the exact payload bytes
/// reaches the statement checks.
fn resign(payload: &[u8]) -> Result<Manifest, String> {
    let key = test_key();
    let sig = key.sign(&pae(payload)).unwrap();
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": key.public_key().hint().unwrap()}, "tlogEntries": []},
        "dsseEnvelope": {"payload": STANDARD.encode(payload), "payloadType": "application/vnd.in-toto+json",
                         "signatures": [{"sig": STANDARD.encode(&sig), "keyid": ""}]}
    });
    verify_bundle(bundle.to_string().as_bytes(), &Trust::PublicKey(key.public_key())).map_err(|e| e.to_string())
}

const VALID: [&str; 3] = [
    "valid/key.bundle.json",
    "valid/certificate.bundle.json",
    "valid/sigstore.bundle.json",
];

#[test]
fn valid_bundles_parse() {
    for name in VALID {
        let b = Bundle::parse(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(b.envelope.payload_type, "application/vnd.in-toto+json", "{name}");
    }
    let key = Bundle::parse(&data("valid/key.bundle.json")).unwrap();
    let hint = "e8450dec4eb99dae995da9af1bc2cc9f76ed669ee2e744f57abba763df3e3f8e";
    assert_eq!(
        key.material,
        Material::PublicKey {
            hint: Some(hint.into())
        }
    );
    let cert = Bundle::parse(&data("valid/certificate.bundle.json")).unwrap();
    assert!(matches!(cert.material, Material::CertificateChain(ref c) if c.len() == 2));
    assert_eq!(
        Bundle::parse(&data("valid/sigstore.bundle.json")).unwrap().material,
        Material::Keyless
    );
}

#[test]
fn valid_vector_statements_validate() {
    for name in VALID {
        let b = Bundle::parse(&data(name)).unwrap();
        let m = resign(&b.envelope.payload).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(m.resources.len(), 2, "{name}");
    }
}

#[test]
fn valid_key_bundle_refuses_another_key_by_hint() {
    let err = verify_bundle(
        &data("valid/key.bundle.json"),
        &Trust::PublicKey(test_key().public_key()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("publicKey.hint does not match"), "{err}");
}

#[test]
fn valid_certificate_bundle_needs_a_trusted_root() {
    let err = verify_bundle(&data("valid/certificate.bundle.json"), &Trust::Certificates(vec![])).unwrap_err();
    assert!(err.to_string().contains("does not lead to a trusted root"), "{err}");
}

#[test]
fn keyless_bundles_are_refused_with_reason() {
    for name in ["valid/sigstore.bundle.json", "invalid/missing-tlog-entries.bundle.json"] {
        let err = verify_bundle(&data(name), &Trust::PublicKey(test_key().public_key())).unwrap_err();
        assert!(err.to_string().contains("keyless Sigstore"), "{name}: {err}");
    }
}

#[test]
fn invalid_bundles_are_refused_with_reason() {
    let cases = [
        ("invalid/empty.bundle.json", "empty"),
        ("invalid/missing-envelope.bundle.json", "missing \"dsseEnvelope\""),
        (
            "invalid/missing-verification-material.bundle.json",
            "missing \"verificationMaterial\"",
        ),
    ];
    for (name, needle) in cases {
        let err = Bundle::parse(&data(name)).unwrap_err().to_string();
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn wrong_predicate_is_refused() {
    let b = Bundle::parse(&data("invalid-payload/wrong-predicate.bundle.json")).unwrap();
    let err = resign(&b.envelope.payload).unwrap_err();
    assert!(err.contains("predicateType"), "{err}");
}

#[test]
fn statement_mutations_are_refused() {
    let b = Bundle::parse(&data("valid/key.bundle.json")).unwrap();
    let good: serde_json::Value = serde_json::from_slice(&b.envelope.payload).unwrap();
    type Mutation = fn(&mut serde_json::Value);
    let cases: [(&str, Mutation); 7] = [
        ("unknown field \"extra\"", |v| v["predicate"]["extra"] = 1.into()),
        ("unknown field \"comment\"", |v| {
            v["predicate"]["resources"][0]["comment"] = "x".into()
        }),
        ("exactly one subject", |v| {
            let s = v["subject"][0].clone();
            v["subject"].as_array_mut().unwrap().push(s);
        }),
        ("not the root digest", |v| {
            v["predicate"]["resources"][0]["digest"] = "00".repeat(32).into()
        }),
        ("_type", |v| v["_type"] = "https://in-toto.io/Statement/v0.1".into()),
        ("unknown method", |v| {
            v["predicate"]["serialization"]["method"] = "tensors".into()
        }),
        ("does not match the serialization", |v| {
            v["predicate"]["resources"][1]["algorithm"] = "blake3".into()
        }),
    ];
    for (needle, mutate) in cases {
        let mut v = good.clone();
        mutate(&mut v);
        let err = resign(v.to_string().as_bytes()).unwrap_err();
        assert!(err.contains(needle), "want {needle:?}, got {err}");
    }
}

#[test]
fn shard_size_may_be_an_integral_float_only() {
    let mut v: serde_json::Value = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "m", "digest": {"sha256": ""}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": {"method": "shards", "hash_type": "sha256", "shard_size": 1024.0, "allow_symlinks": false},
            "resources": [{"name": "a:0:3", "algorithm": "sha256-sharded-1024", "digest": "11".repeat(32)}]
        }
    });
    let root = hex::encode(<sha2::Sha256 as sha2::Digest>::digest([0x11u8; 32]));
    v["subject"][0]["digest"]["sha256"] = root.into();
    assert!(resign(v.to_string().as_bytes()).is_ok());
    v["predicate"]["serialization"]["shard_size"] = 1024.5.into();
    assert!(resign(v.to_string().as_bytes()).unwrap_err().contains("shard_size"));
    v["predicate"]["serialization"]["shard_size"] = 0.into();
    assert!(resign(v.to_string().as_bytes()).unwrap_err().contains("shard_size"));
}

/// Every truncation and thousands of single-byte changes of a good bundle: each is
/// refused with an error (or, for changes JSON ignores such as whitespace, still
/// verifies), and none panics.
#[test]
fn mutated_bundles_never_panic_and_never_verify_a_changed_payload() {
    let key = test_key();
    let payload = Bundle::parse(&data("valid/key.bundle.json")).unwrap().envelope.payload;
    let sig = key.sign(&pae(&payload)).unwrap();
    let good = serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": key.public_key().hint().unwrap()}, "tlogEntries": []},
        "dsseEnvelope": {"payload": STANDARD.encode(&payload), "payloadType": "application/vnd.in-toto+json",
                         "signatures": [{"sig": STANDARD.encode(&sig), "keyid": ""}]}
    }))
    .unwrap();
    let trust = Trust::PublicKey(key.public_key());
    let expected = verify_bundle(&good, &trust).unwrap();
    let mut checked = 0;
    for cut in 0..good.len() {
        assert!(
            verify_bundle(&good[..cut], &trust).is_err(),
            "truncated at {cut} verified"
        );
        checked += 1;
    }
    // A small deterministic generator: no dependency, same cases on every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..5000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut m = good.clone();
        let at = (x % m.len() as u64) as usize;
        m[at] ^= 1 << ((x >> 32) % 8);
        if let Ok(manifest) = verify_bundle(&m, &trust) {
            // Only a change the JSON reader cannot see may pass, and then the
            // vouched-for manifest is exactly the original one.
            assert_eq!(manifest, expected, "a mutation at byte {at} changed what verifies");
        }
        checked += 1;
    }
    assert!(checked > 5000);
}

/// Negative cases of the model-signing conformance suite: each is refused, and for the
/// reason the suite names (re-signed with our key, so the statement checks are reached
/// rather than stopping at the signature they no longer match).
#[test]
fn conformance_suite_negative_vectors_are_refused_for_their_own_reason() {
    let restated = [
        (
            "conformance/malformed-no-subject_fail.bundle.json",
            "exactly one subject",
        ),
        ("conformance/malformed-empty-resources_fail.bundle.json", "no resource"),
        (
            "conformance/malformed-no-predicate_fail.bundle.json",
            "missing \"predicate\"",
        ),
        ("conformance/malformed-wrong-statement-type_fail.bundle.json", "_type"),
    ];
    for (name, needle) in restated {
        let b = Bundle::parse(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let err = resign(&b.envelope.payload).unwrap_err();
        assert!(err.contains(needle), "{name}: {err}");
    }
    let err = verify_bundle(
        &data("conformance/malformed-wrong-payload-type_fail.bundle.json"),
        &Trust::PublicKey(test_key().public_key()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("payloadType"), "{err}");
    let err = Bundle::parse(&data("conformance/key-simple-wrong-mediatype_fail.bundle.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mediaType"), "{err}");
}
