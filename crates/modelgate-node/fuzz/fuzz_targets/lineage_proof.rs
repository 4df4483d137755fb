//! A lineage proof is untrusted input (anyone can hand one to `modelgate
//! lineage verify`): any bytes must give Ok or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PINNED: &[u8] = include_bytes!("../../tests/data/trust-root.dsse.json");

fuzz_target!(|data: &[u8]| {
    let _ = modelgate_node::proof::verify_lineage_proof(data, PINNED);
});
