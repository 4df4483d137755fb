//! An RFC 3161 TimeStampResp from an untrusted bundle: parsing and every
//! check must return a verdict, never panic; against the embedded
//! public-good root (whose authority signed none of these) nothing may verify.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let root = modelgate_oms::trusted_root::TrustedRoot::public_good().expect("the embedded root parses");
    assert!(modelgate_oms::rfc3161::verify(data, b"a DSSE signature", &root).is_err());
});
