//! Sigstore bundle v0.3 JSON carrying a DSSE envelope: strict reading, exact writing.
//!
//! Written as the reference writes it: compact JSON, keys in protobuf field order
//! (`mediaType`, `verificationMaterial`, `dsseEnvelope`), `tlogEntries: []`, and for
//! keys a `publicKey.hint`, for certificates an `x509CertificateChain` leaf first.
//!
//! Read strictly: unknown fields, a second signature, transparency-log entries (which
//! only keyless Sigstore bundles have, and which cannot be checked offline) are refused
//! by name. The bundle itself is not signed; what it carries is checked afterwards.
//!
//! Also read: what the Go client (`model-transparency-go`, through sigstore-go) writes.
//! Its key bundles omit `tlogEntries` and the empty `keyid`; its certificate bundles
//! carry the leaf alone as `certificate` (sigstore-go's v0.3 form) when no chain was
//! given, or an `x509CertificateChain` re-indented with sorted keys when one was. A
//! `certificate` with no log entries is therefore a leaf to validate against the
//! trusted certificates like any chain; with log entries it is keyless Sigstore.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The bundle media type the reference writes and requires.
pub const MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The equivalent spelling some Sigstore clients write.
const MEDIA_TYPE_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Largest bundle we read. A manifest of 100,000 files is about 20 MB; anything far
/// beyond that is an attack on the verifier's memory, not a model signature.
pub const BUNDLE_BYTES_MAX: u64 = 128 << 20;

/// What the bundle offers to identify the signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// A public key, named by a hint (hex SHA-256 of its PEM), or by nothing in old bundles.
    PublicKey {
        /// The hint, when present.
        hint: Option<String>,
    },
    /// Leaf certificate first, then the rest of the chain (DER).
    CertificateChain(Vec<Vec<u8>>),
    /// A keyless Sigstore (Fulcio) certificate: verified by [`crate::verify_keyless`].
    Keyless,
}

/// A DSSE envelope with exactly one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The signed payload bytes (the statement JSON).
    pub payload: Vec<u8>,
    /// Its declared type.
    pub payload_type: String,
    /// The DER ECDSA signature over the PAE of the payload.
    pub signature: Vec<u8>,
}

/// A parsed bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// How the signer is identified.
    pub material: Material,
    /// The signed envelope.
    pub envelope: Envelope,
}

/// DSSE v1 pre-authentication encoding: what is actually signed.
pub fn pae(payload: &[u8]) -> Vec<u8> {
    pae_typed(PAYLOAD_TYPE, payload)
}

/// DSSE's pre-authentication encoding of `payload` declared as `payload_type`.
pub fn pae_typed(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The malformed encoding reference v0.2 signed by mistake: `DSSEV1`, and the payload
/// rendered as a Python bytes literal (`b'...'`). Accepted only on verification.
pub fn pae_v02(payload: &[u8]) -> Vec<u8> {
    format!(
        "DSSEV1 {} {} {} {}",
        PAYLOAD_TYPE.len(),
        PAYLOAD_TYPE,
        payload.len(),
        python_bytes_repr(payload)
    )
    .into_bytes()
}

/// `repr(bytes)` as CPython prints it.
fn python_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut s = String::with_capacity(b.len() + 3);
    s.push('b');
    s.push(quote);
    for &c in b {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            c if c as char == quote => {
                s.push('\\');
                s.push(quote);
            }
            0x20..=0x7e => s.push(c as char),
            c => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s.push(quote);
    s
}

#[derive(Serialize)]
struct BundleOut<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    #[serde(rename = "verificationMaterial")]
    verification_material: MaterialOut,
    #[serde(rename = "dsseEnvelope")]
    dsse_envelope: EnvelopeOut<'a>,
}

#[derive(Serialize)]
struct MaterialOut {
    #[serde(rename = "publicKey", skip_serializing_if = "Option::is_none")]
    public_key: Option<HintOut>,
    #[serde(rename = "x509CertificateChain", skip_serializing_if = "Option::is_none")]
    chain: Option<ChainOut>,
    #[serde(rename = "tlogEntries")]
    tlog_entries: [(); 0],
}

#[derive(Serialize)]
struct HintOut {
    hint: String,
}

#[derive(Serialize)]
struct ChainOut {
    certificates: Vec<RawBytesOut>,
}

#[derive(Serialize)]
struct RawBytesOut {
    #[serde(rename = "rawBytes")]
    raw_bytes: String,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: &'a str,
    signatures: [SigOut; 1],
}

#[derive(Serialize)]
struct SigOut {
    sig: String,
    keyid: &'static str,
}

impl Bundle {
    /// The bundle JSON exactly as the reference writes it (no trailing newline).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let material = match &self.material {
            Material::PublicKey { hint } => MaterialOut {
                public_key: Some(HintOut {
                    hint: hint.clone().unwrap_or_default(),
                }),
                chain: None,
                tlog_entries: [],
            },
            Material::CertificateChain(certs) => MaterialOut {
                public_key: None,
                chain: Some(ChainOut {
                    certificates: certs
                        .iter()
                        .map(|c| RawBytesOut {
                            raw_bytes: STANDARD.encode(c),
                        })
                        .collect(),
                }),
                tlog_entries: [],
            },
            Material::Keyless => return Err(Error::Usage("cannot write a keyless bundle".to_owned())),
        };
        let out = BundleOut {
            media_type: MEDIA_TYPE,
            verification_material: material,
            dsse_envelope: EnvelopeOut {
                payload: STANDARD.encode(&self.envelope.payload),
                payload_type: &self.envelope.payload_type,
                signatures: [SigOut {
                    sig: STANDARD.encode(&self.envelope.signature),
                    keyid: "",
                }],
            },
        };
        serde_json::to_vec(&out).map_err(|e| Error::Bundle(format!("couldn't encode: {e}")))
    }

    /// Parses bundle JSON, refusing anything we could not verify.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::Bundle(m);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(bad("the file is empty".to_owned()));
        }
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let top = v.as_object().ok_or_else(|| bad("not a JSON object".to_owned()))?;
        only_keys(
            top,
            &["mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature"],
            "bundle",
        )?;
        let media = get_str(top, "mediaType", "bundle")?;
        if media != MEDIA_TYPE && media != MEDIA_TYPE_ALT {
            return Err(bad(format!("mediaType is {media:?}, expected {MEDIA_TYPE:?}")));
        }
        if top.contains_key("messageSignature") {
            return Err(bad(
                "carries a messageSignature; OMS bundles carry a dsseEnvelope".to_owned()
            ));
        }
        let vm = get_obj(top, "verificationMaterial", "bundle")?;
        let material = parse_material(vm)?;
        let env = get_obj(top, "dsseEnvelope", "bundle")?;
        only_keys(env, &["payload", "payloadType", "signatures"], "dsseEnvelope")?;
        let payload = b64(get_str(env, "payload", "dsseEnvelope")?, "dsseEnvelope.payload")?;
        let payload_type = get_str(env, "payloadType", "dsseEnvelope")?.to_owned();
        let sigs = env
            .get("signatures")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("dsseEnvelope: missing \"signatures\" list".to_owned()))?;
        if sigs.len() != 1 {
            return Err(bad(format!(
                "dsseEnvelope has {} signatures, expected exactly one",
                sigs.len()
            )));
        }
        let sig = sigs[0]
            .as_object()
            .ok_or_else(|| bad("dsseEnvelope.signatures[0] is not an object".to_owned()))?;
        only_keys(sig, &["sig", "keyid"], "dsseEnvelope.signatures[0]")?;
        let signature = b64(get_str(sig, "sig", "dsseEnvelope.signatures[0]")?, "signature")?;
        Ok(Bundle {
            material,
            envelope: Envelope {
                payload,
                payload_type,
                signature,
            },
        })
    }
}

fn parse_material(vm: &Map<String, Value>) -> Result<Material> {
    let bad = |m: String| Error::Bundle(m);
    only_keys(
        vm,
        &[
            "publicKey",
            "x509CertificateChain",
            "certificate",
            "tlogEntries",
            "timestampVerificationData",
        ],
        "verificationMaterial",
    )?;
    let kinds = ["publicKey", "x509CertificateChain", "certificate"]
        .iter()
        .filter(|k| vm.contains_key(**k))
        .count();
    if kinds != 1 {
        return Err(bad(
            "verificationMaterial must hold exactly one of publicKey, x509CertificateChain, certificate".to_owned(),
        ));
    }
    let tlog_empty = match vm.get("tlogEntries") {
        None => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => return Err(bad("verificationMaterial.tlogEntries is not a list".to_owned())),
    };
    let tsa_empty = match vm.get("timestampVerificationData") {
        None => true,
        Some(Value::Object(o)) => o.values().all(|v| v.as_array().is_some_and(Vec::is_empty)),
        Some(_) => return Err(bad("timestampVerificationData is not an object".to_owned())),
    };
    if let Some(leaf) = vm.get("certificate") {
        let leaf = leaf
            .as_object()
            .ok_or_else(|| bad("verificationMaterial.certificate is not an object".to_owned()))?;
        only_keys(leaf, &["rawBytes"], "certificate")?;
        let der = b64(get_str(leaf, "rawBytes", "certificate")?, "certificate")?;
        // A Fulcio certificate is keyless Sigstore, with or without its log entries (the
        // OMS test vectors call one stripped of them invalid), never a certificate to
        // trust on its chain alone.
        if !tlog_empty || crate::x509::is_fulcio_issued(&der) {
            return Ok(Material::Keyless);
        }
        if tsa_empty {
            return Ok(Material::CertificateChain(vec![der]));
        }
    }
    if !tlog_empty || !tsa_empty {
        return Err(bad(
            "carries transparency-log or timestamp evidence, which key and certificate verification cannot check offline"
                .to_owned(),
        ));
    }
    if let Some(pk) = vm.get("publicKey") {
        let pk = pk
            .as_object()
            .ok_or_else(|| bad("verificationMaterial.publicKey is not an object".to_owned()))?;
        // rawBytes and keyDetails appear in old bundles; the reference drops them
        // unread, and so do we: the key that counts is the one the verifier supplies.
        only_keys(pk, &["hint", "rawBytes", "keyDetails"], "publicKey")?;
        let hint = match pk.get("hint") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("publicKey.hint is not a string".to_owned())),
        };
        return Ok(Material::PublicKey { hint });
    }
    let chain = get_obj(vm, "x509CertificateChain", "verificationMaterial")?;
    only_keys(chain, &["certificates"], "x509CertificateChain")?;
    let certs = chain
        .get("certificates")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("x509CertificateChain: missing \"certificates\" list".to_owned()))?;
    if certs.is_empty() {
        return Err(bad("x509CertificateChain holds no certificate".to_owned()));
    }
    let mut out = Vec::new();
    for (i, c) in certs.iter().enumerate() {
        let ctx = format!("x509CertificateChain.certificates[{i}]");
        let c = c.as_object().ok_or_else(|| bad(format!("{ctx} is not an object")))?;
        only_keys(c, &["rawBytes"], &ctx)?;
        out.push(b64(get_str(c, "rawBytes", &ctx)?, &ctx)?);
    }
    Ok(Material::CertificateChain(out))
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str], ctx: &str) -> Result<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::Bundle(format!("{ctx}: unknown field {k:?}"))),
        None => Ok(()),
    }
}

fn get_obj<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a Map<String, Value>> {
    match m.get(key) {
        Some(Value::Object(o)) => Ok(o),
        Some(_) => Err(Error::Bundle(format!("{ctx}: {key:?} is not an object"))),
        None => Err(Error::Bundle(format!("{ctx}: missing {key:?}"))),
    }
}

fn get_str<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a str> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(Error::Bundle(format!("{ctx}: {key:?} is not a string"))),
        None => Err(Error::Bundle(format!("{ctx}: missing {key:?}"))),
    }
}

fn b64(s: &str, ctx: &str) -> Result<Vec<u8>> {
    STANDARD
        .decode(s)
        .map_err(|e| Error::Bundle(format!("{ctx} is not valid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_dsse_spec() {
        assert_eq!(pae(b"hi"), b"DSSEv1 28 application/vnd.in-toto+json 2 hi");
    }

    #[test]
    fn v02_pae_renders_python_bytes_repr() {
        assert_eq!(
            pae_v02(b"{\"a\": 'x'}\n"),
            b"DSSEV1 28 application/vnd.in-toto+json 11 b'{\"a\": \\'x\\'}\\n'".to_vec()
        );
    }
}
