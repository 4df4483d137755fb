//! Checkpoints: the text parser must round-trip what it accepts, and the full
//! policy check (note, checkpoint, signatures, quorum) must never panic.
#![no_main]

use modelgate_tlog::{Checkpoint, CheckpointPolicy, KeyType, SignerKey};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cp) = Checkpoint::parse(text) {
            assert_eq!(cp.to_text(), text);
        }
    }
    let log = SignerKey::from_seed("fuzz.example/log", KeyType::Ed25519, &[1; 32]);
    let w = SignerKey::from_seed("fuzz.example/w", KeyType::CosignatureV1, &[2; 32]);
    if let (Ok(log), Ok(w)) = (log, w) {
        if let Ok(policy) = CheckpointPolicy::new(log.verifier(), vec![w.verifier()], 1) {
            let _ = policy.verify(data);
        }
    }
});
