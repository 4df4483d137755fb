//! Bundle JSON from an untrusted signature file: parsing must return, never panic,
//! and whatever parses must write back and re-parse to the same bundle.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = modelgate_oms::Bundle::parse(data) {
        if let Ok(json) = bundle.to_json() {
            assert_eq!(modelgate_oms::Bundle::parse(&json).ok(), Some(bundle));
        }
    }
});
