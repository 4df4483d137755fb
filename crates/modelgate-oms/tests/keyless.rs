//! Keyless verification in-process, on the fixture in `tests/data/keyless`
//! (minted by the private test Sigstore instance, verified by the reference
//! when made): what verifies, and that each check refuses what it must.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use modelgate_oms::trusted_root::TrustedRoot;
use modelgate_oms::{verify_keyless, verify_model, Check, Identity, IdentityMatch, Trust, VerifyOptions};

fn data(f: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keyless")
        .join(f)
}

fn root() -> TrustedRoot {
    TrustedRoot::parse(&std::fs::read(data("trusted_root.json")).unwrap()).unwrap()
}

fn signer() -> Identity {
    Identity {
        identity: IdentityMatch::Exact("signer@example.com".into()),
        issuer: "https://accounts.example.com".into(),
    }
}

fn bundle() -> Vec<u8> {
    std::fs::read(data("keyless.sig")).unwrap()
}

#[test]
fn the_keyless_fixture_verifies_as_the_key_signed_one_does() {
    let keyless = verify_model(
        &data("model"),
        &bundle(),
        &Trust::Keyless(std::sync::Arc::new(root()), signer()),
        &VerifyOptions::default(),
        None,
    )
    .unwrap();
    let pem = std::fs::read_to_string(data("key.pub")).unwrap();
    let key = Trust::PublicKey(modelgate_oms::PublicKey::from_pem(&pem, "key.pub").unwrap());
    let keyed = verify_model(
        &data("model"),
        &std::fs::read(data("key-signed.sig")).unwrap(),
        &key,
        &VerifyOptions::default(),
        None,
    )
    .unwrap();
    assert_eq!(keyless.root_digest, keyed.root_digest);
    let (_, _, who) = verify_keyless(&bundle(), &root(), &signer()).unwrap();
    assert_eq!(who.identity, "signer@example.com");
    assert_eq!(who.issuer, "https://accounts.example.com");
    assert_eq!(who.log_index, 6);
    assert!(who.signed_at > 1_700_000_000);
}

/// The bundle and root of a profile (`v1-tsa`, `v2`).
fn profile(p: &str) -> (Vec<u8>, TrustedRoot) {
    let b = std::fs::read(data(&format!("{p}/keyless.sig"))).unwrap();
    let r = TrustedRoot::parse(&std::fs::read(data(&format!("{p}/trusted_root.json"))).unwrap()).unwrap();
    (b, r)
}

#[test]
fn rekor_v2_and_timestamped_bundles_verify_with_their_time_from_the_timestamp() {
    for p in ["v1-tsa", "v2"] {
        let (b, r) = profile(p);
        let keyless = verify_model(
            &data("model"),
            &b,
            &Trust::Keyless(std::sync::Arc::new(profile(p).1), signer()),
            &VerifyOptions::default(),
            None,
        )
        .unwrap();
        let keyed = verify_model(
            &data("model"),
            &std::fs::read(data("key-signed.sig")).unwrap(),
            &Trust::PublicKey(
                modelgate_oms::PublicKey::from_pem(&std::fs::read_to_string(data("key.pub")).unwrap(), "key.pub")
                    .unwrap(),
            ),
            &VerifyOptions::default(),
            None,
        )
        .unwrap();
        assert_eq!(keyless.root_digest, keyed.root_digest, "{p}");
        let (_, _, who) = verify_keyless(&b, &r, &signer()).unwrap();
        assert_eq!((who.identity.as_str(), who.log_index), ("signer@example.com", 6), "{p}");
    }
    // Without its timestamp a Rekor v2 entry has no verified time at all;
    // with a changed one, the timestamp itself is refused.
    let (b, r) = profile("v2");
    let mut v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    let stamps = v["verificationMaterial"]
        .as_object_mut()
        .unwrap()
        .remove("timestampVerificationData")
        .unwrap();
    let e = verify_keyless(&serde_json::to_vec(&v).unwrap(), &r, &signer()).unwrap_err();
    assert_eq!(e.check, Check::SigningTime, "{e}");
    v["verificationMaterial"]["timestampVerificationData"] = stamps;
    flip(
        v.pointer_mut("/verificationMaterial/timestampVerificationData/rfc3161Timestamps/0/signedTimestamp")
            .unwrap(),
    );
    let e = verify_keyless(&serde_json::to_vec(&v).unwrap(), &r, &signer()).unwrap_err();
    assert_eq!(e.check, Check::Timestamp, "{e}");
    // Another profile's root names none of its keys.
    let e = verify_keyless(&b, &root(), &signer()).unwrap_err();
    assert_eq!(e.check, Check::Timestamp, "{e}");
}

/// A real timestamp by the public-good instance's authority verifies under
/// the embedded root, at the time it states; over another message, not.
#[test]
fn a_public_good_timestamp_verifies_under_the_embedded_root() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("public-good-timestamp.json")).unwrap()).unwrap();
    let at = |k: &str| b64.decode(v[k].as_str().unwrap()).unwrap();
    let public_good = TrustedRoot::public_good().unwrap();
    let t = modelgate_oms::rfc3161::verify(&at("signedTimestamp"), &at("signature"), &public_good).unwrap();
    assert_eq!(t, 1_772_216_383, "2026-02-27T18:19:43Z");
    let mut other = at("signature");
    other[10] ^= 1;
    assert!(modelgate_oms::rfc3161::verify(&at("signedTimestamp"), &other, &public_good).is_err());
    assert!(modelgate_oms::rfc3161::verify(&at("signedTimestamp"), &at("signature"), &root()).is_err());
}

#[test]
fn identities_match_exactly_or_by_an_anchored_expression() {
    let with = |identity: IdentityMatch, issuer: &str| {
        verify_keyless(
            &bundle(),
            &root(),
            &Identity {
                identity,
                issuer: issuer.into(),
            },
        )
        .map(|_| ())
    };
    assert!(with(
        IdentityMatch::regexp(r"[a-z]+@example\.com").unwrap(),
        "https://accounts.example.com"
    )
    .is_ok());
    for (identity, issuer) in [
        (
            IdentityMatch::Exact("Signer@example.com".into()),
            "https://accounts.example.com",
        ),
        (IdentityMatch::regexp("signer").unwrap(), "https://accounts.example.com"),
        (
            IdentityMatch::regexp("example.com").unwrap(),
            "https://accounts.example.com",
        ),
        (
            IdentityMatch::Exact("signer@example.com".into()),
            "https://accounts.example.com/",
        ),
    ] {
        assert_eq!(with(identity, issuer).unwrap_err().check, Check::Identity);
    }
}

#[test]
fn the_public_good_root_does_not_know_the_test_instance() {
    let e = verify_keyless(&bundle(), &TrustedRoot::public_good().unwrap(), &signer()).unwrap_err();
    assert_eq!(e.check, Check::SigningTime, "{e}");
}

/// Change one field of the bundle's JSON and expect `check` to refuse it.
fn refused(edit: impl Fn(&mut serde_json::Value), check: Check) {
    let mut v: serde_json::Value = serde_json::from_slice(&bundle()).unwrap();
    edit(&mut v);
    let e = verify_keyless(&serde_json::to_vec(&v).unwrap(), &root(), &signer()).unwrap_err();
    assert_eq!(e.check, check, "{e}");
}

fn flip(v: &mut serde_json::Value) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(v.as_str().unwrap()).unwrap();
    let at = raw.len() / 2;
    raw[at] ^= 1;
    *v = b64.encode(raw).into();
}

#[test]
fn each_piece_of_evidence_is_checked() {
    let entry = "/verificationMaterial/tlogEntries/0";
    refused(
        |v| flip(v.pointer_mut("/dsseEnvelope/signatures/0/sig").unwrap()),
        Check::LogEntry,
    );
    refused(
        |v| {
            flip(
                v.pointer_mut(&format!("{entry}/inclusionPromise/signedEntryTimestamp"))
                    .unwrap(),
            )
        },
        Check::SigningTime,
    );
    refused(
        |v| flip(v.pointer_mut(&format!("{entry}/inclusionProof/hashes/0")).unwrap()),
        Check::Inclusion,
    );
    refused(
        |v| flip(v.pointer_mut(&format!("{entry}/inclusionProof/rootHash")).unwrap()),
        Check::Inclusion,
    );
    refused(
        |v| flip(v.pointer_mut("/verificationMaterial/certificate/rawBytes").unwrap()),
        Check::Chain,
    );
    refused(
        |v| *v.pointer_mut(&format!("{entry}/integratedTime")).unwrap() = "1".into(),
        Check::SigningTime,
    );
    refused(
        |v| *v.pointer_mut(&format!("{entry}/inclusionProof/treeSize")).unwrap() = "14".into(),
        Check::Inclusion,
    );
    refused(
        |v| {
            v["verificationMaterial"]["timestampVerificationData"] =
                serde_json::json!({"rfc3161Timestamps": [{"signedTimestamp": "MAA="}]})
        },
        Check::Timestamp,
    );
    refused(|v| v["unexpected"] = true.into(), Check::Bundle);
    refused(
        |v| v["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.2+json".into(),
        Check::Bundle,
    );
}
