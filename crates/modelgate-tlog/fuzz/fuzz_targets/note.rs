//! Signed notes from an untrusted server or file: parsing and verifying must
//! return, never panic, and a note that parses must write back byte for byte
//! (there is one encoding per note).
#![no_main]

use modelgate_tlog::{KeyType, Note, SignerKey};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(note) = Note::parse(data) {
        assert_eq!(note.to_bytes(), data);
        let key = SignerKey::from_seed("fuzz.example/log", KeyType::Ed25519, &[1; 32]).map(|k| k.verifier());
        let cos = SignerKey::from_seed("fuzz.example/w", KeyType::CosignatureV1, &[2; 32]).map(|k| k.verifier());
        if let (Ok(key), Ok(cos)) = (key, cos) {
            let _ = note.verify(&[key, cos]);
        }
    }
});
