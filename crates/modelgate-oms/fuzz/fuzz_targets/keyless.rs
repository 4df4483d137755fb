//! A keyless bundle and a Sigstore trusted root from untrusted files: parsing
//! and every check must return a verdict, never panic; against the embedded
//! public-good root nothing made up may verify.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let identity = modelgate_oms::Identity {
        identity: modelgate_oms::IdentityMatch::Exact("signer@example.com".into()),
        issuer: "https://accounts.example.com".into(),
    };
    let root = modelgate_oms::trusted_root::TrustedRoot::public_good().expect("the embedded root parses");
    assert!(modelgate_oms::verify_keyless(data, &root, &identity).is_err());
    if let Ok(other) = modelgate_oms::trusted_root::TrustedRoot::parse(data) {
        let _ = modelgate_oms::verify_keyless(data, &other, &identity);
    }
});
