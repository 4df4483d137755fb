//! What keyless verification costs over key-based verification of the same
//! model: the fixture in `tests/data/keyless`, signed both ways over one
//! statement, verified in the same run. Prints medians and p99 of single
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
    let rows: [Row<'_>; 5] = [
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
}
