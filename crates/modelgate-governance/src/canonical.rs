//! RFC 8785 (JCS) canonical JSON, for the subset governance documents use:
//! objects, arrays, strings, booleans, null and integers of magnitude below
//! 2^53. Floats are refused outright rather than canonicalised: no
//! governance field is fractional, and refusing them removes the one part of
//! JCS (ECMAScript number formatting) where implementations disagree.
//!
//! Our own code because the only Rust JCS crate (`serde_jcs` 0.1) is
//! unmaintained and accepts floats we must refuse; for this subset JCS is
//! "sort object keys by UTF-16 code units, no whitespace, minimal string
//! escapes", which `serde_json`'s compact writer does apart from the key order.

use serde_json::Value;

/// Largest integer JCS can carry exactly (ECMAScript's safe-integer limit).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Why a value has no canonical form here.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A fractional or exponent number.
    #[error("non-integer number {0} (governance documents use integers only)")]
    Float(String),
    /// An integer ECMAScript cannot represent exactly.
    #[error("integer {0} is beyond ±2^53-1")]
    TooLarge(String),
}

/// The canonical bytes of `value`.
pub fn to_canonical(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            let ok = n
                .as_u64()
                .map(|v| v <= MAX_SAFE_INTEGER)
                .or_else(|| n.as_i64().map(|v| v.unsigned_abs() <= MAX_SAFE_INTEGER));
            match ok {
                Some(true) => out.extend_from_slice(n.to_string().as_bytes()),
                Some(false) => return Err(CanonicalError::TooLarge(n.to_string())),
                None => return Err(CanonicalError::Float(n.to_string())),
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(v, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            // JCS orders keys by their UTF-16 code units, not by UTF-8 bytes;
            // the two differ for characters above U+FFFF against U+E000..U+FFFF.
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                if let Some(v) = map.get(*k) {
                    write(v, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// JSON string with the minimal escapes JCS prescribes.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Parse `bytes` as JSON and require them to be exactly the canonical form,
/// so every document has one encoding and a signature covers one meaning.
pub fn parse_canonical(bytes: &[u8]) -> Result<Value, crate::GovernanceError> {
    parse_canonical_msg(bytes).map_err(crate::GovernanceError::NotCanonical)
}

pub(crate) fn parse_canonical_msg(bytes: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let canonical = to_canonical(&value).map_err(|e| e.to_string())?;
    if canonical != bytes {
        return Err("not in canonical form (RFC 8785: sorted keys, no whitespace, minimal escapes)".into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_examples() {
        let v = json!({"b": [1, -2, true, null], "a": "x\u{1}\n\"é", "€": 0, "\u{1F600}": 1, "\u{E000}": 2});
        let s = String::from_utf8(to_canonical(&v).unwrap()).unwrap();
        // U+1F600 is the surrogate pair D83D DE00, which sorts before U+E000.
        assert_eq!(
            s,
            "{\"a\":\"x\\u0001\\n\\\"é\",\"b\":[1,-2,true,null],\"€\":0,\"\u{1F600}\":1,\"\u{E000}\":2}"
        );
        assert!(parse_canonical(s.as_bytes()).is_ok());
        assert!(parse_canonical(b"{\"b\":1,\"a\":2}").is_err());
        assert!(parse_canonical(b"{\"a\": 2}").is_err());
        assert!(parse_canonical(b"{\"a\":\"\\u0041\"}").is_err());
        assert_eq!(to_canonical(&json!(1.5)), Err(CanonicalError::Float("1.5".into())));
        assert!(to_canonical(&json!(9007199254740992u64)).is_err());
        assert!(to_canonical(&json!(9007199254740991u64)).is_ok());
        assert!(to_canonical(&json!(-9007199254740991i64)).is_ok());
    }
}
