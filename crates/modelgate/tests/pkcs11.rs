//! Model signing with a key that never leaves a token: a SoftHSM2 token
//! (Debian's `softhsm2`, keys made by OpenSC's `pkcs11-tool`; scripts/test.sh
//! installs both), `modelgate sign --key pkcs11:…`, and the real reference
//! (`model_signing verify key`) verifying the bundle under the public key
//! read back from the token. An Ed25519 token key, a wrong PIN and a
//! missing object are refused, exit 2, naming the URI without its PIN.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::{mg, ok, s};
use modelgate_testkit::softhsm::{SoftHsm, MODULE};

/// `modelgate ARGS…` with the token's configuration.
fn mg_token(hsm: &SoftHsm, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(args)
        .env("SOFTHSM2_CONF", hsm.conf())
        .env("MODELGATE_PKCS11_MODULE", MODULE)
        .output()
        .unwrap()
}

#[test]
fn a_model_signed_on_a_softhsm_token_verifies_with_the_reference() {
    let Some(python) = common::installed_tool("MODELGATE_REFERENCE_PYTHON", "the reference venv") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(&d.path().join("hsm"), "4321");
    hsm.add_token("signing");
    for (label, kind) in [
        ("model-p256", "EC:prime256v1"),
        ("model-p384", "EC:secp384r1"),
        ("gov-ed", "EC:edwards25519"),
    ] {
        hsm.keygen("signing", label, kind);
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
        let o = mg_token(&hsm, &["sign", s(&model), "--key", &uri]);
        assert!(o.status.success(), "{label}: {}", common::stderr(&o));
        // The public key, read back from the token by OpenSC, as the verifier holds it.
        let der = d.path().join(format!("{label}.der"));
        hsm.tool(
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
        hsm.tool(
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
        let o = mg_token(&hsm, &["sign", s(&model), "--key", uri]);
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
