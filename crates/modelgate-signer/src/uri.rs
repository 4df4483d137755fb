//! RFC 7512 PKCS#11 URIs, the parts modelgate uses: the path attributes
//! `token`, `object`, `id`, `slot-id`, and the query attributes
//! `pin-source` (`file:PATH`), `pin-value` and `module-path`.
//! Values are percent-decoded; an attribute given twice, or one this
//! module does not know, is refused, since guessing which key was meant
//! would be worse than saying so.

use crate::SignError;

/// A parsed `pkcs11:` URI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token's label.
    pub token: Option<String>,
    /// The key object's label (`CKA_LABEL`).
    pub object: Option<String>,
    /// The key object's id (`CKA_ID`), raw bytes.
    pub id: Option<Vec<u8>>,
    /// The slot's id.
    pub slot_id: Option<u64>,
    /// Where the PIN is read from (`file:PATH`'s path).
    pub pin_source: Option<String>,
    /// The PIN itself.
    pub pin_value: Option<String>,
    /// The module to load.
    pub module_path: Option<String>,
}

fn decode(s: &str, uri: &str) -> Result<Vec<u8>, SignError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()));
            let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else {
                return Err(SignError::Uri {
                    uri: uri.to_owned(),
                    why: format!("a bad percent-encoding in {s:?}"),
                });
            };
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn text(s: &str, uri: &str) -> Result<String, SignError> {
    String::from_utf8(decode(s, uri)?).map_err(|_| SignError::Uri {
        uri: uri.to_owned(),
        why: format!("{s:?} is not UTF-8 once decoded"),
    })
}

impl Pkcs11Uri {
    /// Whether `s` is a PKCS#11 URI (else it names a key file).
    pub fn is(s: &str) -> bool {
        s.starts_with("pkcs11:")
    }

    /// Parse `s`.
    pub fn parse(s: &str) -> Result<Self, SignError> {
        let shown = Self::redacted(s);
        let bad = |why: String| SignError::Uri {
            uri: shown.clone(),
            why,
        };
        let rest = s
            .strip_prefix("pkcs11:")
            .ok_or_else(|| bad("not a pkcs11: URI".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut u = Self::default();
        for (part, sep) in [(path, ';'), (query, '&')] {
            for attr in part.split(sep).filter(|a| !a.is_empty()) {
                let (k, v) = attr
                    .split_once('=')
                    .ok_or_else(|| bad(format!("{attr:?} has no value")))?;
                let twice = || bad(format!("{k} is given twice"));
                match (sep, k) {
                    (';', "token") if u.token.is_none() => u.token = Some(text(v, &shown)?),
                    (';', "object") if u.object.is_none() => u.object = Some(text(v, &shown)?),
                    (';', "id") if u.id.is_none() => u.id = Some(decode(v, &shown)?),
                    (';', "slot-id") if u.slot_id.is_none() => {
                        u.slot_id = Some(v.parse().map_err(|_| bad(format!("slot-id {v:?} is not a number")))?)
                    }
                    (';', "type") => {
                        if v != "private" {
                            return Err(bad(format!("type={v}: a signing key is type=private")));
                        }
                    }
                    ('&', "pin-source") if u.pin_source.is_none() => {
                        let p = text(v, &shown)?;
                        let p = p
                            .strip_prefix("file:")
                            .ok_or_else(|| bad("pin-source must be file:PATH".into()))?
                            .to_owned();
                        u.pin_source = Some(p);
                    }
                    ('&', "pin-value") if u.pin_value.is_none() => u.pin_value = Some(text(v, &shown)?),
                    ('&', "module-path") if u.module_path.is_none() => u.module_path = Some(text(v, &shown)?),
                    (';', "token" | "object" | "id" | "slot-id")
                    | ('&', "pin-source" | "pin-value" | "module-path") => return Err(twice()),
                    _ => return Err(bad(format!("{k} is not an attribute modelgate reads"))),
                }
            }
        }
        if u.object.is_none() && u.id.is_none() {
            return Err(bad("name the key: object=LABEL or id=%XX…".into()));
        }
        if u.pin_source.is_some() && u.pin_value.is_some() {
            return Err(bad("give pin-source or pin-value, not both".into()));
        }
        Ok(u)
    }

    /// `s` with any `pin-value` left out, for messages and logs.
    pub fn redacted(s: &str) -> String {
        match s.split_once('?') {
            None => s.to_owned(),
            Some((path, query)) => {
                let kept: Vec<&str> = query
                    .split('&')
                    .map(|a| {
                        if a.starts_with("pin-value=") {
                            "pin-value=…"
                        } else {
                            a
                        }
                    })
                    .collect();
                format!("{path}?{}", kept.join("&"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_what_it_knows_and_refuses_the_rest() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=modelgate%20log;object=log-key;id=%01%ff?pin-source=file:/run/pin&module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("modelgate log"));
        assert_eq!(u.object.as_deref(), Some("log-key"));
        assert_eq!(u.id.as_deref(), Some(&[1u8, 255][..]));
        assert_eq!(u.pin_source.as_deref(), Some("/run/pin"));
        assert_eq!(u.module_path.as_deref(), Some("/usr/lib/softhsm/libsofthsm2.so"));
        for bad in [
            "pkcs11:token=t",
            "pkcs11:object=a;object=b",
            "pkcs11:object=a;colour=red",
            "pkcs11:object=a%zz",
            "pkcs11:object=a?pin-source=/run/pin",
            "pkcs11:object=a?pin-value=1&pin-source=file:/p",
            "pkcs11:object=a;type=public",
            "file.key",
        ] {
            assert!(Pkcs11Uri::parse(bad).is_err(), "{bad}");
        }
        let e = Pkcs11Uri::parse("pkcs11:token=t?pin-value=1234")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("1234") && e.contains("pin-value=…"), "{e}");
    }
}
