//! Split-view evidence is untrusted input (anyone can hand a file to
//! `modelgate log verify-split-view`): any bytes must give a verdict or an
//! error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modelgate_tlog::{KeyType, SignerKey};

fuzz_target!(|data: &[u8]| {
    let key = SignerKey::from_seed("example.org/log", KeyType::Ed25519, &[1; 32]).unwrap().verifier();
    let _ = modelgate_node::split_view::verify_split_view(data, &key);
});
