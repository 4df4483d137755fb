//! `modelgate demo`: the main job end to end on this machine, with no service
//! to install: it signs a model, starts an authority (embedded, on a loopback
//! port), builds the trust root, registers the model, refuses a self-approval,
//! approves it with two approvers, brings a node through the ten lifecycle
//! steps to Serving, contains the model when one bit of it changes and when
//! it is revoked, and audits the authority offline.

use std::fs;
use std::path::Path;

use modelgate_oms::{
    hash_model, sign_manifest, verify_model, Error, HashAlgorithm, HashOptions, IgnorePath, Method, PrivateKey, Signer,
    Trust, VerifyOptions, DEFAULT_IGNORES,
};

use crate::oms_cmd::hex;
use crate::Failure;

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

pub fn run() -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("modelgate-demo-{}", std::process::id()));
    let result = walk_through(&dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn walk_through(dir: &Path) -> Result<(), Failure> {
    let model = dir.join("credit-scorer");
    fs::create_dir_all(model.join("tokenizer")).map_err(fail)?;
    fs::write(model.join("config.json"), b"{\"layers\": 4}\n").map_err(fail)?;
    fs::write(model.join("tokenizer/vocab.txt"), b"a\nb\nc\n").map_err(fail)?;
    fs::write(model.join("weights.bin"), vec![42u8; 4 << 20]).map_err(fail)?;
    println!("1. made a model at {}", model.display());

    let key = PrivateKey::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng));
    let public = key.public_key();
    println!("2. generated an ECDSA P-256 signing key");

    let mut opts = HashOptions::new(Method::Files, HashAlgorithm::Sha256);
    for p in DEFAULT_IGNORES.iter().chain(&["model.sig"]) {
        opts.ignore.push(IgnorePath::parse(p)?);
    }
    let manifest = hash_model(&model, &opts, None)?;
    let bundle = sign_manifest(&manifest, &Signer::Key(key))?;
    fs::write(model.join("model.sig"), &bundle).map_err(fail)?;
    println!(
        "3. signed it: {} files, root digest sha256:{}",
        manifest.resources.len(),
        hex(&manifest.root_digest())
    );

    let trust = Trust::PublicKey(public);
    let verified = verify_model(&model, &bundle, &trust, &VerifyOptions::default(), None)?;
    println!("4. verified: signature, statement and every file match");
    if verified.root_digest != manifest.root_digest() {
        return Err(Failure::Invalid("verified digest differs from the signed one".into()));
    }

    let weights = model.join("weights.bin");
    let original = fs::read(&weights).map_err(fail)?;
    let mut bytes = original.clone();
    bytes[1 << 20] ^= 0x01;
    fs::write(&weights, &bytes).map_err(fail)?;
    match verify_model(&model, &bundle, &trust, &VerifyOptions::default(), None) {
        Err(Error::Mismatch(m)) if m.changed == ["weights.bin"] => {
            println!("5. flipped one bit of weights.bin: verification refused it ({m})");
        }
        Ok(_) => return Err(Failure::Invalid("a tampered model verified".into())),
        Err(e) => return Err(Failure::Invalid(format!("unexpected verification result: {e}"))),
    }
    fs::write(&weights, &original).map_err(fail)?;
    let Trust::PublicKey(public) = trust else {
        return Err(fail("unreachable trust kind"));
    };
    crate::demo_governance::run(dir, &model, &public.to_pem()?)?;
    println!("demo complete: only the approved, unaltered, unrevoked model runs, and every step is in a log anyone can audit");
    Ok(())
}
