//! Governance entries as a submitter sends them: envelope, canonical JSON,
//! typed payload, and the genesis path of the fold. Nothing may panic; what
//! decodes as canonical JSON must re-encode to the same bytes.
#![no_main]

use modelgate_governance::{parse_canonical, to_canonical, Envelope, Payload, State};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(value) = parse_canonical(data) {
        assert_eq!(to_canonical(&value).ok().as_deref(), Some(data));
    }
    if let Ok(env) = Envelope::parse(data) {
        if let Ok(value) = parse_canonical(&env.payload) {
            let _ = Payload::decode(value);
        }
    }
    let _ = State::new(data);
});
