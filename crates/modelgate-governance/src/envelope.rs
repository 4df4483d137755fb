//! DSSE envelopes (<https://github.com/secure-systems-lab/dsse>) around
//! canonical-JSON governance payloads. The bytes the log stores are exactly
//! the envelope that was signed; the envelope itself must be canonical JSON
//! too, so an entry has one encoding.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::VerifyingKey;
use modelgate_signer::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical;
use crate::error::EntryError;

/// The DSSE payload type of every governance entry.
pub const PAYLOAD_TYPE: &str = "application/vnd.modelgate.governance+json";
/// Most signatures one envelope may carry.
pub const MAX_SIGNATURES: usize = 16;
/// Largest envelope, bounded by what a C2SP entry bundle can carry.
pub const MAX_ENVELOPE_BYTES: usize = u16::MAX as usize;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    payload: String,
    #[serde(rename = "payloadType")]
    payload_type: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureJson {
    keyid: String,
    sig: String,
}

/// The key id of an Ed25519 key: hex SHA-256 of its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The key id of a signing key, and its signature over `message`; a key
/// that is not Ed25519, or a token that fails, signs nothing.
fn signed_by(key: &dyn Signer, message: &[u8]) -> Result<(String, [u8; 64]), EntryError> {
    let public = modelgate_signer::ed25519_public(key).map_err(EntryError::Signing)?;
    let sig: [u8; 64] = key
        .sign(message)
        .map_err(|e| EntryError::Signing(e.to_string()))?
        .try_into()
        .map_err(|_| EntryError::Signing("an Ed25519 signature that is not 64 bytes".into()))?;
    Ok((hex::encode(Sha256::digest(public)), sig))
}

/// DSSE pre-authentication encoding: what the signatures cover.
pub fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", PAYLOAD_TYPE.len(), PAYLOAD_TYPE, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A parsed envelope: the payload bytes and the (unverified) signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The payload, canonical JSON.
    pub payload: Vec<u8>,
    /// `(key id, signature)` pairs, key ids distinct.
    pub signatures: Vec<(String, [u8; 64])>,
}

impl Envelope {
    /// Parse an entry's bytes strictly: canonical JSON, our payload type,
    /// 1..=16 Ed25519 signatures with distinct key ids, a canonical payload.
    pub fn parse(bytes: &[u8]) -> Result<Self, EntryError> {
        let bad = |m: String| EntryError::Malformed(m);
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(bad(format!(
                "envelope is {} bytes; the limit is {MAX_ENVELOPE_BYTES}",
                bytes.len()
            )));
        }
        let value = crate::canonical::parse_canonical_msg(bytes).map_err(|e| bad(format!("envelope: {e}")))?;
        let env: EnvelopeJson = serde_json::from_value(value).map_err(|e| bad(format!("envelope: {e}")))?;
        if env.payload_type != PAYLOAD_TYPE {
            return Err(bad(format!(
                "payloadType {:?}, expected {PAYLOAD_TYPE}",
                env.payload_type
            )));
        }
        let payload = B64
            .decode(&env.payload)
            .map_err(|_| bad("payload is not base64".into()))?;
        crate::canonical::parse_canonical_msg(&payload).map_err(|e| bad(format!("payload: {e}")))?;
        if env.signatures.is_empty() || env.signatures.len() > MAX_SIGNATURES {
            return Err(bad(format!(
                "{} signatures; 1 to {MAX_SIGNATURES} allowed",
                env.signatures.len()
            )));
        }
        let mut signatures: Vec<(String, [u8; 64])> = Vec::with_capacity(env.signatures.len());
        for s in env.signatures {
            if s.keyid.len() != 64
                || !s
                    .keyid
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(bad(format!("key id {:?} is not 64 lowercase hex digits", s.keyid)));
            }
            if signatures.iter().any(|(k, _)| *k == s.keyid) {
                return Err(bad(format!("key {} signed twice", s.keyid)));
            }
            let sig = B64
                .decode(&s.sig)
                .map_err(|_| bad(format!("signature by {} is not base64", s.keyid)))?;
            let sig: [u8; 64] = sig
                .try_into()
                .map_err(|_| bad(format!("signature by {} is not 64 bytes", s.keyid)))?;
            signatures.push((s.keyid, sig));
        }
        Ok(Self { payload, signatures })
    }

    /// Sign a payload (which must be canonical JSON) with each key; returns
    /// the canonical envelope bytes, ready to submit.
    pub fn sign(payload: &[u8], keys: &[&dyn Signer]) -> Result<Vec<u8>, EntryError> {
        crate::canonical::parse_canonical_msg(payload).map_err(|e| EntryError::Malformed(format!("payload: {e}")))?;
        let message = pae(payload);
        let signatures = keys
            .iter()
            .map(|k| {
                signed_by(*k, &message).map(|(keyid, sig)| SignatureJson {
                    keyid,
                    sig: B64.encode(sig),
                })
            })
            .collect::<Result<_, _>>()?;
        let env = EnvelopeJson {
            payload: B64.encode(payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures,
        };
        let value = serde_json::to_value(&env).map_err(|e| EntryError::Malformed(e.to_string()))?;
        to_canonical(&value).map_err(|e| EntryError::Malformed(e.to_string()))
    }

    /// Add a signature by `key` (several signers sign one entry one after
    /// another, e.g. two approvers). Signing twice with one key is refused.
    pub fn add_signature(&mut self, key: &dyn Signer) -> Result<(), EntryError> {
        let (kid, sig) = signed_by(key, &pae(&self.payload))?;
        if self.signatures.iter().any(|(k, _)| *k == kid) {
            return Err(EntryError::Malformed(format!("key {kid} already signed this entry")));
        }
        if self.signatures.len() >= MAX_SIGNATURES {
            return Err(EntryError::Malformed(format!(
                "an entry carries at most {MAX_SIGNATURES} signatures"
            )));
        }
        self.signatures.push((kid, sig));
        Ok(())
    }

    /// The canonical envelope bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, EntryError> {
        let env = EnvelopeJson {
            payload: B64.encode(&self.payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: self
                .signatures
                .iter()
                .map(|(k, s)| SignatureJson {
                    keyid: k.clone(),
                    sig: B64.encode(s),
                })
                .collect(),
        };
        let value = serde_json::to_value(&env).map_err(|e| EntryError::Malformed(e.to_string()))?;
        to_canonical(&value).map_err(|e| EntryError::Malformed(e.to_string()))
    }

    /// Verify the signatures whose key ids `lookup` knows; returns the key
    /// ids that verified. A known key whose signature fails rejects the
    /// entry; signatures by unknown keys are ignored and never counted.
    pub fn verified_keys(&self, lookup: impl Fn(&str) -> Option<VerifyingKey>) -> Result<Vec<String>, EntryError> {
        let message = pae(&self.payload);
        let mut ok = Vec::new();
        for (kid, sig) in &self.signatures {
            let Some(key) = lookup(kid) else { continue };
            let sig = ed25519_dalek::Signature::from_bytes(sig);
            key.verify_strict(&message, &sig)
                .map_err(|_| EntryError::BadSignature(kid.clone()))?;
            ok.push(kid.clone());
        }
        Ok(ok)
    }
}
