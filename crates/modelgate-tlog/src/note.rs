//! C2SP signed notes (<https://c2sp.org/signed-note>), the key strings of the
//! Go sumdb `note` package, and the timestamped Ed25519 cosignature of
//! <https://c2sp.org/tlog-cosignature> (signature type `0x04`).
//!
//! Parsing is strict and bounded: the whole note must be UTF-8 without
//! control characters other than newline, at most [`MAX_NOTE_BYTES`] long,
//! with at most [`MAX_SIGNATURES`] signature lines. Verification follows the
//! spec's rules: signatures from unknown keys (name *and* id must match) are
//! ignored; a signature from a known key that fails rejects the whole note; a
//! note without any verified known signature is rejected.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::sync::Arc;

use ed25519_dalek::{SigningKey, VerifyingKey};
use modelgate_signer::Signer;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Upper bound on the signature lines of a note (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;
/// Upper bound on the size of a note, text and signatures together.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

const SIG_PREFIX: &str = "\u{2014} ";
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// The signature algorithms this crate signs and verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x04`: timestamped Ed25519 cosignature (tlog-cosignature/v1); only
    /// meaningful on checkpoints.
    CosignatureV1,
}

impl KeyType {
    /// The signature type byte of the spec.
    pub fn id(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::CosignatureV1 => 0x04,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        match id {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::CosignatureV1),
            _ => None,
        }
    }
}

/// True for a valid key name: non-empty, no Unicode space, no `+`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
pub fn key_id(name: &str, key_type: KeyType, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([key_type.id()]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A public key that verifies note signatures, with its name and key id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key_type: KeyType,
    key: VerifyingKey,
}

/// Split `s` at the first `+`, refusing an empty left side.
fn take_field<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), Error> {
    s.split_once('+')
        .ok_or_else(|| Error::MalformedKey(format!("missing {what}")))
}

fn parse_key_id(hex: &str) -> Result<u32, Error> {
    // Only the canonical form: exactly 8 lowercase hex digits.
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::MalformedKey(format!(
            "key id {hex:?} is not 8 lowercase hex digits"
        )));
    }
    u32::from_str_radix(hex, 16).map_err(|_| Error::MalformedKey(format!("key id {hex:?} is not hex")))
}

fn decode_key_material(b64: &str) -> Result<(KeyType, [u8; 32]), Error> {
    let raw = B64
        .decode(b64)
        .map_err(|e| Error::MalformedKey(format!("key material is not base64: {e}")))?;
    let (&type_byte, key) = raw
        .split_first()
        .ok_or_else(|| Error::MalformedKey("empty key material".into()))?;
    let key_type = KeyType::from_id(type_byte)
        .ok_or_else(|| Error::MalformedKey(format!("unsupported signature type 0x{type_byte:02x}")))?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|_| Error::MalformedKey(format!("Ed25519 key is {} bytes, want 32", key.len())))?;
    Ok((key_type, key))
}

impl VerifierKey {
    /// Parse a verifier key string `name+hash+base64(type || key)`. The hash
    /// must be the key id computed from the name and key, so any change to
    /// the string is caught.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let (name, rest) = take_field(s, "key id")?;
        let (hex, b64) = take_field(rest, "key material")?;
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey(format!("invalid key name {name:?}")));
        }
        let id = parse_key_id(hex)?;
        let (key_type, raw) = decode_key_material(b64)?;
        let key = VerifyingKey::from_bytes(&raw)
            .map_err(|_| Error::MalformedKey("Ed25519 public key is not a valid point".into()))?;
        if key_id(name, key_type, &raw) != id {
            return Err(Error::MalformedKey(format!(
                "key id {hex} does not match the name and key"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key_type,
            key,
        })
    }

    /// Build a verifier key from its parts.
    pub fn new(name: &str, key_type: KeyType, key: VerifyingKey) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey(format!("invalid key name {name:?}")));
        }
        let id = key_id(name, key_type, key.as_bytes());
        Ok(Self {
            name: name.to_owned(),
            id,
            key_type,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The signature type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Check one signature (without its key-id prefix) over a note text.
    /// For cosignatures, returns the timestamp that was signed.
    pub fn verify(&self, text: &str, sig: &[u8]) -> Option<Option<u64>> {
        match self.key_type {
            KeyType::Ed25519 => {
                let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
                self.key.verify_strict(text.as_bytes(), &sig).ok()?;
                Some(None)
            }
            KeyType::CosignatureV1 => {
                if sig.len() != 72 {
                    return None;
                }
                let (ts, sig) = sig.split_at(8);
                let timestamp = u64::from_be_bytes(ts.try_into().ok()?);
                if timestamp > i64::MAX as u64 {
                    return None;
                }
                let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
                let msg = cosignature_message(text, timestamp);
                self.key.verify_strict(msg.as_bytes(), &sig).ok()?;
                Some(Some(timestamp))
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut material = Vec::with_capacity(33);
        material.push(self.key_type.id());
        material.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(material))
    }
}

impl std::str::FromStr for VerifierKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

fn cosignature_message(text: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{text}")
}

/// A private key that signs notes: a seed held in memory (a key file) or a
/// key on a token (any Ed25519 [`Signer`]). Its `Debug` output never shows
/// the key.
#[derive(Clone)]
pub struct SignerKey {
    name: String,
    id: u32,
    key_type: KeyType,
    public: VerifyingKey,
    held: Held,
}

#[derive(Clone)]
enum Held {
    Seed(SigningKey),
    /// A key on a token, and the `pkcs11:` URI that names it.
    Token(String, Arc<dyn Signer>),
}

/// How a key file names a key on a token: `PKCS11+KEY+name+hash+type+URI`.
const TOKEN_PREFIX: &str = "PKCS11+KEY+";

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({}+{:08x}, <redacted>)", self.name, self.id)
    }
}

impl SignerKey {
    /// A signer from a 32-byte Ed25519 seed (the caller supplies randomness;
    /// this crate reads none).
    pub fn from_seed(name: &str, key_type: KeyType, seed: &[u8; 32]) -> Result<Self, Error> {
        let key = SigningKey::from_bytes(seed);
        Self::new(name, key_type, key.verifying_key(), Held::Seed(key))
    }

    /// A signer whose Ed25519 key is on the token `uri` names (opened with
    /// the process's PKCS#11 module): only its public key and its signatures
    /// are ever seen here.
    pub fn from_token(name: &str, key_type: KeyType, uri: &str) -> Result<Self, Error> {
        let signer = modelgate_signer::open_token(uri, None).map_err(|e| Error::MalformedKey(e.to_string()))?;
        Self::from_signer(name, key_type, uri, signer)
    }

    /// A signer whose Ed25519 key is `signer`, which `uri` names.
    pub fn from_signer(name: &str, key_type: KeyType, uri: &str, signer: Arc<dyn Signer>) -> Result<Self, Error> {
        let public = modelgate_signer::ed25519_public(signer.as_ref())
            .map_err(|e| Error::MalformedKey(format!("{}: {e}", modelgate_signer::uri::Pkcs11Uri::redacted(uri))))?;
        let public = VerifyingKey::from_bytes(&public)
            .map_err(|e| Error::MalformedKey(format!("the token's public key: {e}")))?;
        Self::new(name, key_type, public, Held::Token(uri.to_owned(), signer))
    }

    /// Whether the key is on a token.
    pub fn on_token(&self) -> bool {
        matches!(self.held, Held::Token(..))
    }

    fn new(name: &str, key_type: KeyType, public: VerifyingKey, held: Held) -> Result<Self, Error> {
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey(format!("invalid key name {name:?}")));
        }
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, key_type, public.as_bytes()),
            key_type,
            public,
            held,
        })
    }

    /// Parse `PRIVATE+KEY+name+hash+base64(type || seed)` (the Go sumdb
    /// signer-key format), or `PKCS11+KEY+name+hash+type+URI` (a key on a
    /// token, opened now). The hash must match the key's public key: a
    /// token holding another key than the one recorded is refused.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if let Some(rest) = s.strip_prefix(TOKEN_PREFIX) {
            return Self::parse_token(rest);
        }
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| Error::MalformedKey("signer key must start with PRIVATE+KEY+".into()))?;
        let (name, rest) = take_field(rest, "key id")?;
        let (hex, b64) = take_field(rest, "key material")?;
        if !is_valid_key_name(name) {
            return Err(Error::MalformedKey(format!("invalid key name {name:?}")));
        }
        let id = parse_key_id(hex)?;
        let (key_type, seed) = decode_key_material(b64)?;
        let signer = Self::from_seed(name, key_type, &seed)?;
        if signer.id != id {
            return Err(Error::MalformedKey(format!(
                "key id {hex} does not match the name and key"
            )));
        }
        Ok(signer)
    }

    fn parse_token(rest: &str) -> Result<Self, Error> {
        let (name, rest) = take_field(rest, "key id")?;
        let (hex, rest) = take_field(rest, "key type")?;
        let (kind, uri) = take_field(rest, "URI")?;
        let key_type = match kind {
            "01" => KeyType::Ed25519,
            "04" => KeyType::CosignatureV1,
            _ => return Err(Error::MalformedKey(format!("token key type {kind:?}: 01 or 04"))),
        };
        let id = parse_key_id(hex)?;
        let signer = Self::from_token(name, key_type, uri)?;
        if signer.id != id {
            return Err(Error::MalformedKey(format!(
                "{}: the token's key is not the key {hex} recorded for {name}",
                modelgate_signer::uri::Pkcs11Uri::redacted(uri)
            )));
        }
        Ok(signer)
    }

    /// What a key file holds: the signer-key string, which holds the
    /// private key (store it as a secret), or for a key on a token the
    /// `PKCS11+KEY+…` line naming it (which holds a PIN if its URI does).
    pub fn to_private_string(&self) -> String {
        match &self.held {
            Held::Seed(key) => {
                let mut material = Vec::with_capacity(33);
                material.push(self.key_type.id());
                material.extend_from_slice(key.as_bytes());
                format!("PRIVATE+KEY+{}+{:08x}+{}", self.name, self.id, B64.encode(material))
            }
            Held::Token(uri, _) => format!(
                "{TOKEN_PREFIX}{}+{:08x}+{:02x}+{uri}",
                self.name,
                self.id,
                self.key_type.id()
            ),
        }
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signature type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The key as a [`Signer`], for signing other formats with the same
    /// identity (a node signs its governance entries with its note key).
    pub fn signer(&self) -> &dyn Signer {
        match &self.held {
            Held::Seed(k) => k,
            Held::Token(_, s) => s.as_ref(),
        }
    }

    /// The matching verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key_type: self.key_type,
            key: self.public,
        }
    }

    /// The 64-byte Ed25519 signature of `message`; a token that fails is
    /// [`Error::Signing`], and nothing is signed.
    fn raw_sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = self.signer().sign(message).map_err(|e| Error::Signing(e.to_string()))?;
        if sig.len() != 64 {
            return Err(Error::Signing(format!("an Ed25519 signature of {} bytes", sig.len())));
        }
        Ok(sig)
    }

    /// Sign a note text with an Ed25519 (`0x01`) key.
    pub fn sign(&self, text: &str) -> Result<Signature, Error> {
        if self.key_type != KeyType::Ed25519 {
            return Err(Error::Config(format!(
                "key {} is a cosignature key; use cosign",
                self.name
            )));
        }
        check_text(text)?;
        let sig = self.raw_sign(text.as_bytes())?;
        Ok(Signature {
            name: self.name.clone(),
            key_id: self.id,
            sig,
        })
    }

    /// Cosign a checkpoint text at `timestamp` (POSIX seconds) with a
    /// cosignature (`0x04`) key.
    pub fn cosign(&self, text: &str, timestamp: u64) -> Result<Signature, Error> {
        if self.key_type != KeyType::CosignatureV1 {
            return Err(Error::Config(format!("key {} is not a cosignature key", self.name)));
        }
        if timestamp > i64::MAX as u64 {
            return Err(Error::Config("cosignature timestamp exceeds 2^63-1".into()));
        }
        check_text(text)?;
        let msg = cosignature_message(text, timestamp);
        let mut sig = Vec::with_capacity(72);
        sig.extend_from_slice(&timestamp.to_be_bytes());
        sig.extend_from_slice(&self.raw_sign(msg.as_bytes())?);
        Ok(Signature {
            name: self.name.clone(),
            key_id: self.id,
            sig,
        })
    }
}

/// One signature line: key name, key id and the signature bytes after the id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: u32,
    /// The signature, without the 4-byte key id.
    pub sig: Vec<u8>,
}

impl Signature {
    /// The signature line, including the final newline.
    pub fn line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.sig.len());
        raw.extend_from_slice(&self.key_id.to_be_bytes());
        raw.extend_from_slice(&self.sig);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// The timestamp of a cosignature/v1 signature, read without verifying.
    pub fn cosignature_timestamp(&self) -> Option<u64> {
        (self.sig.len() == 72)
            .then(|| self.sig[..8].try_into().ok().map(u64::from_be_bytes))
            .flatten()
    }
}

/// Checks the text rules: non-empty, ends in newline, no control characters
/// but newline. (UTF-8 is guaranteed by `&str`.)
fn check_text(text: &str) -> Result<(), Error> {
    if !text.ends_with('\n') {
        return Err(Error::MalformedNote("text must end with a newline".into()));
    }
    if let Some(c) = text.chars().find(|&c| c < ' ' && c != '\n') {
        return Err(Error::MalformedNote(format!(
            "text contains control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

/// A parsed, not yet verified, signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<Signature>,
}

/// A note whose signatures were checked against a set of known keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The note text.
    pub text: String,
    /// Signatures from known keys that verified, with the cosignature
    /// timestamp for `0x04` keys.
    pub verified: Vec<(VerifierKey, Option<u64>)>,
    /// Signatures from keys the verifier does not know (kept, not trusted).
    pub unknown: Vec<Signature>,
}

impl Note {
    /// An unsigned note with `text`, which must end in a newline.
    pub fn new(text: &str) -> Result<Self, Error> {
        check_text(text)?;
        Ok(Self {
            text: text.to_owned(),
            signatures: Vec::new(),
        })
    }

    /// Parse a signed note without verifying it.
    pub fn parse(msg: &[u8]) -> Result<Self, Error> {
        if msg.len() > MAX_NOTE_BYTES {
            return Err(Error::MalformedNote(format!(
                "note is larger than {MAX_NOTE_BYTES} bytes"
            )));
        }
        let msg = std::str::from_utf8(msg).map_err(|_| Error::MalformedNote("not valid UTF-8".into()))?;
        if let Some(c) = msg.chars().find(|&c| c < ' ' && c != '\n') {
            return Err(Error::MalformedNote(format!(
                "contains control character U+{:04X}",
                c as u32
            )));
        }
        // The text ends at the last blank line; everything after is signatures.
        let split = msg
            .rfind("\n\n")
            .ok_or_else(|| Error::MalformedNote("no blank line before signatures".into()))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() {
            return Err(Error::MalformedNote("no signature lines".into()));
        }
        let Some(sigs) = sigs.strip_suffix('\n') else {
            return Err(Error::MalformedNote("signature block must end with a newline".into()));
        };
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(Error::MalformedNote(format!("more than {MAX_SIGNATURES} signatures")));
            }
            signatures.push(parse_signature_line(line)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The note text (ends with a newline).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Add a signature line. A second signature by the same key replaces the
    /// first, so re-signing (a fresh cosignature timestamp) never duplicates.
    pub fn add_signature(&mut self, sig: Signature) -> Result<(), Error> {
        if let Some(old) = self
            .signatures
            .iter_mut()
            .find(|s| s.name == sig.name && s.key_id == sig.key_id)
        {
            *old = sig;
            return Ok(());
        }
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(Error::MalformedNote(format!("more than {MAX_SIGNATURES} signatures")));
        }
        self.signatures.push(sig);
        Ok(())
    }

    /// The signed note's bytes: text, blank line, signature lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.text.len() + 1 + 100 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.signatures {
            out.push_str(&s.line());
        }
        out.into_bytes()
    }

    /// Verify against `known` keys, by the spec's rules (see the module docs).
    pub fn verify(&self, known: &[VerifierKey]) -> Result<VerifiedNote, Error> {
        let mut verified: Vec<(VerifierKey, Option<u64>)> = Vec::new();
        let mut unknown = Vec::new();
        for sig in &self.signatures {
            let Some(key) = known.iter().find(|k| k.name == sig.name && k.id == sig.key_id) else {
                unknown.push(sig.clone());
                continue;
            };
            if verified.iter().any(|(k, _)| k == key) {
                return Err(Error::DuplicateSignature {
                    name: sig.name.clone(),
                    key_id: sig.key_id,
                });
            }
            match key.verify(&self.text, &sig.sig) {
                Some(ts) => verified.push((key.clone(), ts)),
                None => {
                    return Err(Error::BadSignature {
                        name: sig.name.clone(),
                        key_id: sig.key_id,
                    })
                }
            }
        }
        if verified.is_empty() {
            return Err(Error::UnverifiedNote);
        }
        Ok(VerifiedNote {
            text: self.text.clone(),
            verified,
            unknown,
        })
    }
}

fn parse_signature_line(line: &str) -> Result<Signature, Error> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or_else(|| Error::MalformedNote("signature line must start with an em dash and a space".into()))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| Error::MalformedNote("signature line has no signature".into()))?;
    if !is_valid_key_name(name) {
        return Err(Error::MalformedNote(format!(
            "invalid key name {name:?} on a signature line"
        )));
    }
    let raw = B64
        .decode(b64)
        .map_err(|_| Error::MalformedNote(format!("signature by {name} is not base64")))?;
    if raw.len() < 5 {
        return Err(Error::MalformedNote(format!("signature by {name} is too short")));
    }
    let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    Ok(Signature {
        name: name.to_owned(),
        key_id,
        sig: raw[4..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A key held elsewhere (as on a token): it signs, or fails as a pulled token does.
    struct Held(SigningKey, std::sync::atomic::AtomicBool);

    impl Signer for Held {
        fn algorithm(&self) -> modelgate_signer::Algorithm {
            modelgate_signer::Algorithm::Ed25519
        }
        fn public_key(&self) -> &[u8] {
            modelgate_signer::Signer::public_key(&self.0)
        }
        fn sign(&self, m: &[u8]) -> Result<Vec<u8>, modelgate_signer::SignError> {
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(modelgate_signer::SignError::Sign {
                    uri: "pkcs11:token=t;object=k".into(),
                    why: "the token is gone".into(),
                });
            }
            modelgate_signer::Signer::sign(&self.0, m)
        }
    }

    #[test]
    fn a_key_held_elsewhere_signs_like_a_seed_and_fails_closed() {
        let seed = [9u8; 32];
        let file = SignerKey::from_seed("example.org/log", KeyType::Ed25519, &seed).unwrap();
        let held = Arc::new(Held(SigningKey::from_bytes(&seed), false.into()));
        let token = SignerKey::from_signer(
            "example.org/log",
            KeyType::Ed25519,
            "pkcs11:token=t;object=k",
            held.clone(),
        )
        .unwrap();
        assert!(token.on_token() && !file.on_token());
        assert_eq!(token.verifier().to_string(), file.verifier().to_string());
        assert_eq!(token.sign("a\n").unwrap().line(), file.sign("a\n").unwrap().line());
        assert_eq!(
            token.to_private_string(),
            format!(
                "PKCS11+KEY+example.org/log+{:08x}+01+pkcs11:token=t;object=k",
                file.verifier().key_id()
            )
        );
        held.1.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(matches!(token.sign("a\n"), Err(Error::Signing(m)) if m.contains("the token is gone")));
        assert!(matches!(token.cosign("a\n", 1), Err(Error::Config(_))));
    }

    #[test]
    fn a_token_key_line_that_is_wrong_is_refused_by_what_is_wrong() {
        for (line, expect) in [
            (
                "PKCS11+KEY+example.org/log+0000000a+07+pkcs11:token=t",
                "token key type",
            ),
            ("PKCS11+KEY+example.org/log+XYZ+01+pkcs11:token=t", "key id"),
            ("PKCS11+KEY+example.org/log+0000000a+01", "missing URI"),
            ("PKCS11+KEY+example.org/log+0000000a+01+not-a-uri", "not a pkcs11: URI"),
        ] {
            let e = SignerKey::parse(line).unwrap_err().to_string();
            assert!(e.contains(expect), "{line}: {e}");
        }
    }
}
