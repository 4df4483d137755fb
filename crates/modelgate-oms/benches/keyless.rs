//! What keyless verification costs over key-based verification of the same
//! model: the fixture in `tests/data/keyless`, signed both ways over one
//! statement (keyless in each of the minter's three profiles), verified in
//! the same run. Prints medians and p99 of single
//! verifications; not a test (nothing passes or fails).
//!
//! `cargo bench -p modelgate-oms --bench keyless`
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use modelgate_oms::trusted_root::TrustedRoot;
use modelgate_oms::{verify_bundle, verify_model, Identity, IdentityMatch, PublicKey, Trust, VerifyOptions};

const SAMPLES: usize = 2_000;

/// A row: what is timed, and one run of it.
type Row<'a> = (&'static str, Box<dyn FnMut() + 'a>);

fn data(f: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/keyless")
        .join(f)
}

/// Median and p99 of `SAMPLES` runs of `f` (after a warm-up).
fn time(mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..50 {
        f();
    }
    let mut t: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort();
    (t[SAMPLES / 2], t[SAMPLES * 99 / 100])
}

fn main() {
    let read = |f: &str| std::fs::read(data(f)).expect("the fixture");
    let (keyed, keyless, root_json) = (read("key-signed.sig"), read("keyless.sig"), read("trusted_root.json"));
    let pem = String::from_utf8(read("key.pub")).expect("PEM");
    let key = Trust::PublicKey(PublicKey::from_pem(&pem, "key.pub").expect("the key"));
    let signer = || Identity {
        identity: IdentityMatch::Exact("signer@example.com".into()),
        issuer: "https://accounts.example.com".into(),
    };
    let sigstore = Trust::Keyless(
        std::sync::Arc::new(TrustedRoot::parse(&root_json).expect("the root")),
        signer(),
    );
    let model = data("model");
    let opts = VerifyOptions::default();
    // The same statement minted as Rekor v1 + RFC 3161 timestamp, and as Rekor v2.
    let profile = |p: &str| {
        let root = TrustedRoot::parse(&read(&format!("{p}/trusted_root.json"))).expect("the root");
        (
            read(&format!("{p}/keyless.sig")),
            Trust::Keyless(std::sync::Arc::new(root), signer()),
        )
    };
    let (tsa, tsa_trust) = profile("v1-tsa");
    let (v2, v2_trust) = profile("v2");
    let stamp = {
        use base64::Engine as _;
        let b: serde_json::Value = serde_json::from_slice(&v2).expect("JSON");
        let b64 = base64::engine::general_purpose::STANDARD;
        let at = |p: &str| {
            b64.decode(b.pointer(p).and_then(|v| v.as_str()).expect(p))
                .expect("base64")
        };
        (
            at("/verificationMaterial/timestampVerificationData/rfc3161Timestamps/0/signedTimestamp"),
            at("/dsseEnvelope/signatures/0/sig"),
            TrustedRoot::parse(&read("v2/trusted_root.json")).expect("the root"),
        )
    };
    let rows: [Row<'_>; 8] = [
        ("bundle, key", Box::new(|| assert!(verify_bundle(&keyed, &key).is_ok()))),
        (
            "bundle, keyless",
            Box::new(|| assert!(verify_bundle(&keyless, &sigstore).is_ok())),
        ),
        (
            "model (2 files), key",
            Box::new(|| assert!(verify_model(&model, &keyed, &key, &opts, None).is_ok())),
        ),
        (
            "model (2 files), keyless",
            Box::new(|| assert!(verify_model(&model, &keyless, &sigstore, &opts, None).is_ok())),
        ),
        (
            "model (2 files), keyless, Rekor v1 + RFC 3161 timestamp",
            Box::new(|| assert!(verify_model(&model, &tsa, &tsa_trust, &opts, None).is_ok())),
        ),
        (
            "model (2 files), keyless, Rekor v2 + RFC 3161 timestamp",
            Box::new(|| assert!(verify_model(&model, &v2, &v2_trust, &opts, None).is_ok())),
        ),
        (
            "its RFC 3161 timestamp alone",
            Box::new(|| assert!(modelgate_oms::rfc3161::verify(&stamp.0, &stamp.1, &stamp.2).is_ok())),
        ),
        (
            "trusted root parsed (once per process)",
            Box::new(|| assert!(TrustedRoot::parse(&root_json).is_ok())),
        ),
    ];
    let mut medians = Vec::new();
    println!("| verification | median | p99 |\n|---|---|---|");
    for (name, mut f) in rows {
        let (median, p99) = time(&mut f);
        println!("| {name} | {median:.2?} | {p99:.2?} |");
        medians.push(median);
    }
    let added = medians[3].saturating_sub(medians[2]);
    println!(
        "\nkeyless over key, same model: {:.2?} added ({:.1}×); target: under 5 ms added",
        added,
        medians[3].as_secs_f64() / medians[2].as_secs_f64()
    );
    for (i, what) in [(4, "Rekor v1 + timestamp"), (5, "Rekor v2 + timestamp")] {
        println!(
            "keyless ({what}) over key: {:.2?} added",
            medians[i].saturating_sub(medians[2])
        );
    }
}
