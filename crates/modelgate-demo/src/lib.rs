//! The end-to-end demonstration (`modelgate demo`): the main job on this
//! machine, with no service to install. It signs a model, starts an
//! authority (embedded, on a loopback port), builds the trust root,
//! registers the model, refuses a self-approval, approves it with two
//! approvers, brings a node through the ten lifecycle steps to Serving,
//! makes a governed call through the gateway and verifies its proof
//! offline, contains the model when one bit of it changes and when it is
//! revoked, and audits the authority offline.
//!
//! [`live`] is the live demonstration (`modelgate demo --serve`): the
//! console open while governance contains and recovers, in a loop, in front
//! of a real llama.cpp server when one can run here ([`inference`]).
//!
//! [`dev`] is development mode (`modelgate dev`): one person, every role's
//! key on one disk, a governed call in four commands. [`ca`] makes the
//! certificates of a trial deployment over TLS (`modelgate dev ca`).
//!
//! Each step is told, as one line, to the caller's `out`; every outcome is
//! checked, and the demo fails (naming the step) when one is not what the
//! governance promises.

use std::fs;
use std::path::Path;

use modelgate_oms::{
    hash_model, sign_manifest, verify_model, Error, HashAlgorithm, HashOptions, IgnorePath, Method, PrivateKey, Signer,
    Trust, VerifyOptions, DEFAULT_IGNORES,
};

pub mod ca;
pub mod dev;
mod gguf;
mod governance;
pub mod inference;
pub mod live;

/// Tell one line to `out`.
macro_rules! say {
    ($out:expr, $($t:tt)*) => { $out(&format!($($t)*)) };
}
pub(crate) use say;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A governance promise did not hold (a tampered model verified, a
    /// revoked model served, …).
    #[error("{0}")]
    Failed(String),
    /// The demo could not be set up (a port, a temporary directory, …).
    #[error("{0}")]
    Setup(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Setup(e.to_string())
    }
}

impl From<modelgate_runtime::Error> for Failure {
    fn from(e: modelgate_runtime::Error) -> Self {
        Failure::Setup(e.to_string())
    }
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::Setup(e.to_string())
}

fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// Hash `model` as `modelgate sign` does (SHA-256 per file, the default
/// ignores and the bundle itself left out) and sign it with `key`: its
/// manifest and OMS bundle.
pub(crate) fn sign_model(model: &Path, key: PrivateKey) -> Result<(modelgate_oms::Manifest, Vec<u8>), Failure> {
    let mut opts = HashOptions::new(Method::Files, HashAlgorithm::Sha256);
    for p in DEFAULT_IGNORES.iter().chain(&["model.sig"]) {
        opts.ignore.push(IgnorePath::parse(p)?);
    }
    let manifest = hash_model(model, &opts, None)?;
    let bundle = sign_manifest(&manifest, &Signer::Key(key))?;
    Ok((manifest, bundle))
}

/// Run the demonstration in a temporary directory (removed afterwards),
/// telling each step to `out`.
pub fn run(out: &mut dyn FnMut(&str)) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("modelgate-demo-{}", std::process::id()));
    let result = walk_through(&dir, out);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn walk_through(dir: &Path, out: &mut dyn FnMut(&str)) -> Result<(), Failure> {
    let model = dir.join("credit-scorer");
    fs::create_dir_all(model.join("tokenizer")).map_err(fail)?;
    fs::write(model.join("config.json"), b"{\"layers\": 4}\n").map_err(fail)?;
    fs::write(model.join("tokenizer/vocab.txt"), b"a\nb\nc\n").map_err(fail)?;
    fs::write(model.join("weights.bin"), vec![42u8; 4 << 20]).map_err(fail)?;
    say!(out, "1. made a model at {}", model.display());

    let key = PrivateKey::P256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng));
    let public = key.public_key();
    say!(out, "2. generated an ECDSA P-256 signing key");

    let (manifest, bundle) = sign_model(&model, key)?;
    fs::write(model.join("model.sig"), &bundle).map_err(fail)?;
    say!(
        out,
        "3. signed it: {} files, root digest sha256:{}",
        manifest.resources.len(),
        hex(&manifest.root_digest())
    );

    let trust = Trust::PublicKey(public);
    let verified = verify_model(&model, &bundle, &trust, &VerifyOptions::default(), None)?;
    say!(out, "4. verified: signature, statement and every file match");
    if verified.root_digest != manifest.root_digest() {
        return Err(Failure::Failed("verified digest differs from the signed one".into()));
    }

    let weights = model.join("weights.bin");
    let original = fs::read(&weights).map_err(fail)?;
    let mut bytes = original.clone();
    bytes[1 << 20] ^= 0x01;
    fs::write(&weights, &bytes).map_err(fail)?;
    match verify_model(&model, &bundle, &trust, &VerifyOptions::default(), None) {
        Err(Error::Mismatch(m)) if m.changed == ["weights.bin"] => {
            say!(out, "5. flipped one bit of weights.bin: verification refused it ({m})");
        }
        Ok(_) => return Err(Failure::Failed("a tampered model verified".into())),
        Err(e) => return Err(Failure::Failed(format!("unexpected verification result: {e}"))),
    }
    fs::write(&weights, &original).map_err(fail)?;
    let Trust::PublicKey(public) = trust else {
        return Err(fail("unreachable trust kind"));
    };
    governance::run(dir, &model, &public.to_pem()?, out)?;
    say!(out, "demo complete: only the approved, unaltered, unrevoked model runs, and every step is in a log anyone can audit");
    Ok(())
}
