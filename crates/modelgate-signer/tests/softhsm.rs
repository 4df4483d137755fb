//! Keys on a real SoftHSM2 token (Debian's `softhsm2` and OpenSC's
//! `pkcs11-tool`, installed by scripts/test.sh): Ed25519, P-256 and P-384
//! keys made on the token sign, and their signatures verify (ring) under
//! the public key read from it; a wrong PIN, a missing object, a missing
//! token and a module that does not load are refused, naming the URI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::process::Command;

use modelgate_signer::pkcs11::Pkcs11Key;
use modelgate_signer::{Algorithm, Signer};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn run(conf: &Path, cmd: &str, args: &[&str]) {
    let o = Command::new(cmd)
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (Debian packages softhsm2 and opensc)"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn token_keys_sign_and_failures_name_the_uri() {
    if !Path::new(MODULE).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{MODULE} is missing: scripts/test.sh installs softhsm2"
        );
        eprintln!("SKIPPED: {MODULE} is missing (Debian package softhsm2)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let conf = d.path().join("softhsm2.conf");
    std::fs::create_dir(d.path().join("tokens")).unwrap();
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            d.path().join("tokens").display()
        ),
    )
    .unwrap();
    // The module reads its configuration when it is loaded; this test is
    // the only one in its binary, so no other thread reads the environment.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    run(
        &conf,
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "mg-test",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ],
    );
    for (label, id, kind) in [
        ("ed", "01", "EC:edwards25519"),
        ("p256", "02", "EC:prime256v1"),
        ("p384", "03", "EC:secp384r1"),
    ] {
        run(
            &conf,
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
}
