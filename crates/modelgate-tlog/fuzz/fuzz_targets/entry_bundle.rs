//! Entry bundles and tile paths fetched from an untrusted log: decoding must
//! never panic, and what decodes must encode back to the same bytes.
#![no_main]

use modelgate_tlog::{decode_entry_bundle, encode_entry_bundle, parse_path, TilePath};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&w, rest)) = data.split_first() else { return };
    let width = u16::from(w) + 1;
    if let Ok(entries) = decode_entry_bundle(rest, width) {
        assert_eq!(entries.len(), usize::from(width));
        assert_eq!(encode_entry_bundle(&entries).ok().as_deref(), Some(rest));
    }
    if let Ok(path) = std::str::from_utf8(data) {
        match parse_path(path) {
            Ok(TilePath::Hashes(t)) => assert_eq!(t.path(), path),
            Ok(TilePath::Entries(t)) => assert_eq!(t.entries_path(), path),
            Err(_) => {}
        }
    }
});
