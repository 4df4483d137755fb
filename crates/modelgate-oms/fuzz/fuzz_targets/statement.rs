//! A signed statement payload (after the signature checked out, the signer's bytes are
//! still untrusted input): decoding must return, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = modelgate_oms::decode_statement(data) {
        // Whatever decodes has a root digest and re-encodes.
        let _ = manifest.root_digest();
        let _ = modelgate_oms::encode_statement(&manifest);
    }
});
