//! The Sigstore trusted root: the keys that check keyless evidence
//! (Fulcio CAs, Rekor log keys, CT log keys, timestamp authorities), each with its validity
//! window. One static document, pinned: the public-good instance's is
//! embedded ([`TrustedRoot::public_good`]); a private one is read from a
//! `TrustedRoot` or `ClientTrustConfig` document. A key is used only for
//! evidence made within its window.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::keys::PublicKey;

/// The public-good instance's trusted root, byte for byte (see `data/SOURCE.md`).
pub const PUBLIC_GOOD: &[u8] = include_bytes!("../data/sigstore-public-good-trusted-root.json");
/// [`PUBLIC_GOOD`]'s SHA-256.
pub const PUBLIC_GOOD_SHA256: &str = "6494e21ea73fa7ee769f85f57d5a3e6a08725eae1e38c755fc3517c9e6bc0b66";

const TRUSTED_ROOT_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.trustedroot+json;version=0.1";
const CLIENT_TRUST_CONFIG_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json";

/// A log key (Rekor or CT): its id (SHA-256 of its SPKI) and window.
struct LogKey {
    id: Vec<u8>,
    key: PublicKey,
    window: Window,
}

/// A Fulcio CA: its chain (issuer first, root last) and window.
struct Authority {
    certificates: Vec<Vec<u8>>,
    window: Window,
}

#[derive(Clone, Copy)]
struct Window {
    start: u64,
    end: Option<u64>,
}

impl Window {
    fn covers(self, t: u64) -> bool {
        self.start <= t && self.end.is_none_or(|e| t <= e)
    }
}

/// A parsed trusted root.
pub struct TrustedRoot {
    tlogs: Vec<LogKey>,
    ctlogs: Vec<LogKey>,
    authorities: Vec<Authority>,
    timestamp_authorities: Vec<Authority>,
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TrustedRoot({} CAs, {} transparency logs, {} CT logs, {} timestamp authorities)",
            self.authorities.len(),
            self.tlogs.len(),
            self.ctlogs.len(),
            self.timestamp_authorities.len()
        )
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RootIn {
    media_type: String,
    #[serde(default)]
    tlogs: Vec<LogIn>,
    #[serde(default)]
    certificate_authorities: Vec<CaIn>,
    #[serde(default)]
    ctlogs: Vec<LogIn>,
    #[serde(default)]
    timestamp_authorities: Vec<CaIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIn {
    #[serde(default)]
    base_url: String,
    hash_algorithm: String,
    public_key: KeyIn,
    log_id: LogIdIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyIn {
    raw_bytes: String,
    key_details: String,
    valid_for: WindowIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogIdIn {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WindowIn {
    start: String,
    end: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CaIn {
    cert_chain: ChainIn,
    valid_for: WindowIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChainIn {
    certificates: Vec<RawIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIn {
    raw_bytes: String,
}

/// An RFC 3339 UTC time (`2021-01-12T11:53:27Z`, fractions dropped) in POSIX seconds.
fn rfc3339(s: &str) -> Result<u64, String> {
    let bad = || format!("time {s:?} is not RFC 3339 UTC");
    let b = s.as_bytes();
    if b.len() < 20 || !s.ends_with('Z') || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u8>().ok()).ok_or_else(bad);
    let year = s.get(0..4).and_then(|y| y.parse::<u16>().ok()).ok_or_else(bad)?;
    der::DateTime::new(year, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?)
        .map(|t| t.unix_duration().as_secs())
        .map_err(|_| bad())
}

fn window(w: &WindowIn) -> Result<Window, String> {
    Ok(Window {
        start: rfc3339(&w.start)?,
        end: w.end.as_deref().map(rfc3339).transpose()?,
    })
}

/// A log's key; `None` for a key type this version does not verify with:
/// evidence naming such a log is refused as naming no log of the trusted root.
///
/// An ECDSA log's id is the SHA-256 of its SPKI (Rekor v1, CT). An Ed25519
/// log (Rekor v2) is a C2SP signed-note verifier: its id is the SHA-256 of
/// its name (the base URL's host), a newline, 0x01 and the 32-byte key.
fn log_key(l: &LogIn, what: &str) -> Result<Option<LogKey>, String> {
    if l.hash_algorithm != "SHA2_256" {
        return Err(format!("{what}: hash algorithm {} is not SHA2_256", l.hash_algorithm));
    }
    let ed25519 = match l.public_key.key_details.as_str() {
        "PKIX_ECDSA_P256_SHA_256" | "PKIX_ECDSA_P384_SHA_384" => false,
        "PKIX_ED25519" => true,
        _ => return Ok(None),
    };
    let der = B64
        .decode(&l.public_key.raw_bytes)
        .map_err(|_| format!("{what}: key is not base64"))?;
    let id = B64
        .decode(&l.log_id.key_id)
        .map_err(|_| format!("{what}: log id is not base64"))?;
    let expected = if ed25519 {
        let host = l.base_url.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or_default();
        let raw = der.get(der.len().saturating_sub(32)..).unwrap_or_default();
        Sha256::new()
            .chain_update(host.as_bytes())
            .chain_update(b"\n\x01")
            .chain_update(raw)
            .finalize()
            .to_vec()
    } else {
        Sha256::digest(&der).to_vec()
    };
    if id != expected {
        return Err(format!("{what}: log id is not its key's id"));
    }
    Ok(Some(LogKey {
        id,
        key: PublicKey::spki_msg(&der).map_err(|e| format!("{what}: {e}"))?,
        window: window(&l.public_key.valid_for)?,
    }))
}

impl TrustedRoot {
    /// The embedded public-good trusted root.
    pub fn public_good() -> Result<Self, String> {
        Self::parse(PUBLIC_GOOD)
    }

    /// A `TrustedRoot` document, or a `ClientTrustConfig` holding one.
    pub fn parse(json: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let root = match v["mediaType"].as_str() {
            Some(CLIENT_TRUST_CONFIG_MEDIA_TYPE) => v["trustedRoot"].clone(),
            Some(TRUSTED_ROOT_MEDIA_TYPE) => v,
            other => {
                return Err(format!(
                    "media type {other:?} is neither a TrustedRoot nor a ClientTrustConfig"
                ))
            }
        };
        let r: RootIn = serde_json::from_value(root).map_err(|e| format!("not a trusted root: {e}"))?;
        if r.media_type != TRUSTED_ROOT_MEDIA_TYPE {
            return Err(format!("trusted root media type {:?}", r.media_type));
        }
        let cas = |cas: &[CaIn], what: &str| -> Result<Vec<Authority>, String> {
            cas.iter()
                .enumerate()
                .map(|(i, ca)| {
                    let certificates = ca
                        .cert_chain
                        .certificates
                        .iter()
                        .map(|c| B64.decode(&c.raw_bytes))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| format!("{what} {}: not base64", i + 1))?;
                    Ok(Authority {
                        certificates,
                        window: window(&ca.valid_for)?,
                    })
                })
                .collect()
        };
        let logs = |ls: &[LogIn], what: &str| -> Result<Vec<LogKey>, String> {
            ls.iter()
                .enumerate()
                .filter_map(|(i, l)| log_key(l, &format!("{what} {}", i + 1)).transpose())
                .collect()
        };
        Ok(TrustedRoot {
            tlogs: logs(&r.tlogs, "transparency log")?,
            ctlogs: logs(&r.ctlogs, "CT log")?,
            authorities: cas(&r.certificate_authorities, "certificate authority")?,
            timestamp_authorities: cas(&r.timestamp_authorities, "timestamp authority")?,
        })
    }

    fn find<'a>(logs: &'a [LogKey], id: &[u8], t: u64, what: &str) -> Result<&'a PublicKey, String> {
        let mut named = logs.iter().filter(|l| l.id == id).peekable();
        if named.peek().is_none() {
            return Err(format!("{what} {} is not in the trusted root", hex::encode(id)));
        }
        named
            .find(|l| l.window.covers(t))
            .map(|l| &l.key)
            .ok_or_else(|| format!("{what} {}'s key was not valid at {t}", hex::encode(id)))
    }

    /// The Rekor log `id`'s key, if valid at `t`.
    pub(crate) fn tlog(&self, id: &[u8], t: u64) -> Result<&PublicKey, String> {
        Self::find(&self.tlogs, id, t, "transparency log")
    }

    /// The CT log `id`'s key, if valid at `t`.
    pub(crate) fn ctlog(&self, id: &[u8], t: u64) -> Result<&PublicKey, String> {
        Self::find(&self.ctlogs, id, t, "CT log")
    }

    /// The chains (signer first, root last) of the timestamp authorities
    /// whose window holds `t`: from its start, up to but not at its end.
    pub(crate) fn timestamp_authorities(&self, t: u64) -> impl Iterator<Item = &[Vec<u8>]> {
        self.timestamp_authorities
            .iter()
            .filter(move |a| a.window.start <= t && a.window.end.is_none_or(|e| t < e))
            .map(|a| a.certificates.as_slice())
    }

    /// The certificates of the CAs valid at `t`: intermediates, and the
    /// self-issued roots they end at.
    pub(crate) fn ca_certificates(&self, t: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let (mut pool, mut anchors) = (Vec::new(), Vec::new());
        for ca in self.authorities.iter().filter(|a| a.window.covers(t)) {
            for (i, c) in ca.certificates.iter().enumerate() {
                if i + 1 == ca.certificates.len() {
                    anchors.push(c.clone());
                } else {
                    pool.push(c.clone());
                }
            }
        }
        (pool, anchors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_root_is_the_pinned_bytes() {
        assert_eq!(hex::encode(Sha256::digest(PUBLIC_GOOD)), PUBLIC_GOOD_SHA256);
        let r = TrustedRoot::public_good().unwrap();
        assert!(!r.tlogs.is_empty() && !r.ctlogs.is_empty() && !r.authorities.is_empty());
    }

    #[test]
    fn times_parse_as_rfc3339_utc() {
        assert_eq!(rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(rfc3339("2021-01-12T11:53:27Z"), Ok(1_610_452_407));
        assert_eq!(rfc3339("2022-10-31T23:59:59.999Z"), Ok(1_667_260_799));
        assert!(rfc3339("2021-01-12 11:53:27").is_err());
        assert!(rfc3339("2021-13-12T11:53:27Z").is_err());
    }
}
