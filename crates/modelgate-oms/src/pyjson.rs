//! JSON text written the way the reference's Python `json`/protobuf printer writes it.
//!
//! The signed payload is the exact bytes the reference would produce: two-space
//! indentation, `": "` after keys, and every character outside printable ASCII escaped
//! as `\uXXXX` (Python's `ensure_ascii`, which also escapes DEL). serde_json's pretty
//! printer already matches the layout; this wrapper only adds the escaping.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter};

/// Serializes `value` as Python's `json.dumps(value, indent=2)` would.
pub fn to_vec_pretty_ascii<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiPretty(PrettyFormatter::with_indent(b"  ")));
    value.serialize(&mut ser)?;
    Ok(out)
}

struct AsciiPretty<'a>(PrettyFormatter<'a>);

impl Formatter for AsciiPretty<'_> {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() && c != '\u{7f}' {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_json_dumps_indent_2() {
        // Expected bytes are what CPython 3.11 prints for
        // json.dumps({"a": ["naïve ü", "\x7f😀\n"], "b": {}, "c": []}, indent=2)
        let v = serde_json::json!({"a": ["naïve ü", "\u{7f}😀\n"], "b": {}, "c": []});
        let got = String::from_utf8(to_vec_pretty_ascii(&v).unwrap()).unwrap();
        let want = "{\n  \"a\": [\n    \"na\\u00efve \\u00fc\",\n    \"\\u007f\\ud83d\\ude00\\n\"\n  ],\n  \"b\": {},\n  \"c\": []\n}";
        assert_eq!(got, want);
    }
}
