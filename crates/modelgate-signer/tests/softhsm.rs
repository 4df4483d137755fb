//! Keys on a real SoftHSM2 token (Debian's `softhsm2` and OpenSC's
//! `pkcs11-tool`, installed by scripts/test.sh): Ed25519, P-256 and P-384
//! keys made on the token sign, and their signatures verify (ring) under
//! the public key read from it; a wrong PIN, a missing object, a missing
//! token and a module that does not load are refused, naming the URI. A
//! token pulled out while a key is open makes its signatures fail, naming
//! the URI; put back, the key logs in again and signs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

use modelgate_signer::pkcs11::Pkcs11Key;
use modelgate_signer::{Algorithm, Signer};

use modelgate_testkit::softhsm::{SoftHsm, MODULE};

#[test]
fn token_keys_sign_and_failures_name_the_uri() {
    let d = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(d.path(), "1234");
    // The module reads its configuration when it is loaded; this test is
    // the only one in its binary, so no other thread reads the environment.
    std::env::set_var("SOFTHSM2_CONF", hsm.conf());
    hsm.add_token("mg-test");
    for (label, id, kind) in [
        ("ed", "01", "EC:edwards25519"),
        ("p256", "02", "EC:prime256v1"),
        ("p384", "03", "EC:secp384r1"),
    ] {
        hsm.tool(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                "mg-test",
                "--login",
                "--pin",
                "1234",
                "--keypairgen",
                "--key-type",
                kind,
                "--label",
                label,
                "--id",
                id,
            ],
        );
    }
    let pin = d.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let message = b"a checkpoint, a DSSE envelope, an entry";
    for (label, algorithm) in [
        ("ed", Algorithm::Ed25519),
        ("p256", Algorithm::EcdsaP256Sha256),
        ("p384", Algorithm::EcdsaP384Sha384),
    ] {
        let uri = format!(
            "pkcs11:token=mg-test;object={label}?pin-source=file:{}&module-path={MODULE}",
            pin.display()
        );
        let key = Pkcs11Key::open(&uri, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.algorithm(), algorithm);
        let sig = key.sign(message).unwrap();
        let verifier: &dyn ring::signature::VerificationAlgorithm = match algorithm {
            Algorithm::Ed25519 => &ring::signature::ED25519,
            Algorithm::EcdsaP256Sha256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
            Algorithm::EcdsaP384Sha384 => &ring::signature::ECDSA_P384_SHA384_ASN1,
        };
        let pk = ring::signature::UnparsedPublicKey::new(verifier, key.public_key());
        pk.verify(message, &sig)
            .unwrap_or_else(|_| panic!("{label}: the token's signature does not verify"));
        assert!(pk.verify(b"another message", &sig).is_err());
        // The same key, by id and with the module given by the caller.
        let by_id = Pkcs11Key::open(
            &format!(
                "pkcs11:token=mg-test;id=%0{}?pin-value=1234",
                &["1", "2", "3"][["ed", "p256", "p384"].iter().position(|l| *l == label).unwrap()]
            ),
            Some(Path::new(MODULE)),
        )
        .unwrap();
        assert_eq!(by_id.public_key(), key.public_key());
    }
    let fails = |uri: &str, expect: &str| {
        let e = Pkcs11Key::open(uri, Some(Path::new(MODULE))).unwrap_err().to_string();
        assert!(e.contains(expect), "{uri}: {e}");
        assert!(
            !e.contains("9999") || expect.contains("9999"),
            "the PIN is in the message: {e}"
        );
        e
    };
    let e = fails("pkcs11:token=mg-test;object=p256?pin-value=9999", "logging in");
    assert!(e.contains("pin-value=…"), "{e}");
    // While a key holds a session the token reports the user logged in and
    // checks no PIN: a wrong one is still refused.
    let live = Pkcs11Key::open("pkcs11:token=mg-test;object=ed?pin-value=1234", Some(Path::new(MODULE))).unwrap();
    let e = fails("pkcs11:token=mg-test;object=p256?pin-value=9999", "another PIN");
    assert!(!e.contains("9999"), "{e}");
    assert!(Pkcs11Key::open(
        "pkcs11:token=mg-test;object=p256?pin-value=1234",
        Some(Path::new(MODULE))
    )
    .is_ok());
    drop(live);
    fails(
        "pkcs11:token=mg-test;object=nothing?pin-value=1234",
        "no private key object",
    );
    fails(
        "pkcs11:token=no-such-token;object=p256?pin-value=1234",
        "no token matches",
    );
    let e = Pkcs11Key::open(
        "pkcs11:token=mg-test;object=p256?pin-value=1234&module-path=/nonexistent/module.so",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/module.so"), "{e}");
    // Pulled out and put back while the key is open.
    let key = Pkcs11Key::open("pkcs11:token=mg-test;object=ed?pin-value=1234", Some(Path::new(MODULE))).unwrap();
    let sig = key.sign(message).unwrap();
    hsm.remove();
    let e = key.sign(message).unwrap_err().to_string();
    assert!(e.contains("pkcs11:token=mg-test;object=ed"), "{e}");
    hsm.restore();
    // The module is initialised again at most once a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(key.sign(message).unwrap(), sig, "Ed25519 signatures are deterministic");
}
