//! tlog-proof texts: parse must round-trip what it accepts, and verification
//! (checkpoint policy plus inclusion) must never panic.
#![no_main]

use modelgate_tlog::{leaf_hash, CheckpointPolicy, KeyType, SignerKey, TlogProof};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = TlogProof::parse(data) {
        assert_eq!(proof.to_bytes(), data);
        if let Ok(log) = SignerKey::from_seed("fuzz.example/log", KeyType::Ed25519, &[1; 32]) {
            if let Ok(policy) = CheckpointPolicy::new(log.verifier(), vec![], 0) {
                let _ = proof.verify(&leaf_hash(b"entry"), &policy);
            }
        }
    }
});
