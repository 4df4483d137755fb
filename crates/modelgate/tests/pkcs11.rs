//! Model signing with a key that never leaves a token: a SoftHSM2 token
//! (Debian's `softhsm2`, keys made by OpenSC's `pkcs11-tool`; scripts/test.sh
//! installs both), `modelgate sign --key pkcs11:…`, and the real reference
//! (`model_signing verify key`) verifying the bundle under the public key
//! read back from the token. An Ed25519 token key, a wrong PIN and a
//! missing object are refused, exit 2, naming the URI without its PIN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{mg, ok, s};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

fn run(conf: &Path, cmd: &str, args: &[&str]) -> std::process::Output {
    let o = Command::new(cmd)
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e} (Debian packages softhsm2 and opensc; scripts/test.sh installs them)"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// `modelgate ARGS…` with the token's configuration.
fn mg_token(conf: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .env("MODELGATE_PKCS11_MODULE", MODULE)
        .output()
        .unwrap()
}

#[test]
fn a_model_signed_on_a_softhsm_token_verifies_with_the_reference() {
    let Some(python) = common::installed_tool("MODELGATE_REFERENCE_PYTHON", "the reference venv") else {
        return;
    };
    assert!(
        Path::new(MODULE).exists(),
        "{MODULE} is missing: scripts/test.sh installs softhsm2"
    );
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
    run(
        &conf,
        "softhsm2-util",
        &[
            "--init-token",
            "--free",
            "--label",
            "signing",
            "--pin",
            "4321",
            "--so-pin",
            "8765",
        ],
    );
    for (label, kind) in [
        ("model-p256", "EC:prime256v1"),
        ("model-p384", "EC:secp384r1"),
        ("gov-ed", "EC:edwards25519"),
    ] {
        run(
            &conf,
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                "signing",
                "--login",
                "--pin",
                "4321",
                "--keypairgen",
                "--key-type",
                kind,
                "--label",
                label,
            ],
        );
    }
    let pin = d.path().join("pin");
    std::fs::write(&pin, "4321\n").unwrap();
    let model = d.path().join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::write(model.join("config.json"), "{\"layers\": 2}\n").unwrap();
    std::fs::write(model.join("sub/weights.bin"), vec![9u8; 1 << 20]).unwrap();
    // P-256 (OpenSC's pkcs11-tool cannot export a P-384 public key here:
    // "cannot create EVP_PKEY"; the P-384 token path is covered in
    // modelgate-signer's tests).
    {
        let label = "model-p256";
        let uri = format!("pkcs11:token=signing;object={label}?pin-source=file:{}", pin.display());
        let o = mg_token(&conf, &["sign", s(&model), "--key", &uri]);
        assert!(o.status.success(), "{label}: {}", common::stderr(&o));
        // The public key, read back from the token by OpenSC, as the verifier holds it.
        let der = d.path().join(format!("{label}.der"));
        run(
            &conf,
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                "signing",
                "--read-object",
                "--type",
                "pubkey",
                "--label",
                label,
                "-o",
                s(&der),
            ],
        );
        let pem = d.path().join(format!("{label}.pem"));
        run(
            &conf,
            "openssl",
            &["pkey", "-pubin", "-inform", "DER", "-in", s(&der), "-out", s(&pem)],
        );
        let sig = model.join("model.sig");
        let o = Command::new(&python)
            .args([
                "-m",
                "model_signing",
                "verify",
                "key",
                s(&model),
                "--signature",
                s(&sig),
                "--public_key",
                s(&pem),
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{label}: the reference refused: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        ok(&mg(&["verify", s(&model), "--public-key", s(&pem)]));
    }
    let refused = |uri: &str, expect: &str| {
        let o = mg_token(&conf, &["sign", s(&model), "--key", uri]);
        let e = common::stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{uri}: {e}");
        assert!(e.contains(expect) && e.contains("pkcs11:token=signing"), "{uri}: {e}");
        assert!(!e.contains("0000"), "the PIN is in the message: {e}");
    };
    refused("pkcs11:token=signing;object=gov-ed?pin-value=4321", "Ed25519");
    refused("pkcs11:token=signing;object=model-p256?pin-value=0000", "logging in");
    refused(
        "pkcs11:token=signing;object=absent?pin-value=4321",
        "no private key object",
    );
}
