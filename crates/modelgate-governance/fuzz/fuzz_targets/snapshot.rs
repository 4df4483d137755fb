//! A state snapshot as the authority reads it back (after its signature
//! checks, but a snapshot file is still bytes from disk): restoring may
//! refuse, never panic; what restores must snapshot again and restore to
//! the same digest.
#![no_main]

use modelgate_governance::State;

/// The pinned trust root to restore onto: a genesis entry made by
/// `modelgate authority init`.
static PINNED: &[u8] = include_bytes!("../pinned-trust-root.dsse.json");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = State::restore(PINNED, data) {
        let again = s.snapshot().expect("a restored state encodes");
        let r = State::restore(PINNED, &again).expect("its own snapshot restores");
        assert_eq!(r.digest(), s.digest());
    }
});
