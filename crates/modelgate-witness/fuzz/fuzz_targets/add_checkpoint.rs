//! An add-checkpoint request is untrusted input (anyone who reaches the
//! witness can send one): any bytes must give a cosignature or a refusal,
//! never a panic; a request that parses must write back to the same bytes
//! whenever it was written in the canonical form.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use modelgate_tlog::{KeyType, SignerKey};
use modelgate_witness::{AddCheckpoint, Witness};

fn witness() -> &'static Witness {
    static W: OnceLock<(tempfile::TempDir, Witness)> = OnceLock::new();
    &W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        modelgate_witness::init(dir.path(), "fuzz.example/witness").unwrap();
        let log = SignerKey::from_seed("example.org/log", KeyType::Ed25519, &[1; 32]).unwrap();
        let w = Witness::open(dir.path(), vec![log.verifier()]).unwrap();
        (dir, w)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AddCheckpoint::parse(data) {
        let again = AddCheckpoint::parse(&req.to_bytes()).unwrap();
        assert_eq!(again, req);
    }
    let _ = witness().add_checkpoint(data);
});
