//! The one signing seam: a [`Signer`] signs wherever a modelgate key
//! signs (notes and checkpoints, cosignatures, DSSE envelopes, governance
//! entries, lineage batches, heartbeats, OMS bundles), whether its key is a
//! file or an object on a PKCS#11 token ([`pkcs11`]), addressed by an
//! RFC 7512 URI ([`uri`]).
//!
//! Guarantees: a token key's private half never leaves the token (the
//! public key is read from it, signatures are made by it); ECDSA is signed
//! over a digest computed here and returned DER-encoded, as DSSE and the
//! model-signing reference expect; every failure names the URI and what
//! failed, and nothing is signed on a failure.

#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod uri;

use std::path::Path;
use std::sync::Arc;

/// What a key signs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Pure Ed25519 (a 64-byte signature).
    Ed25519,
    /// ECDSA over P-256 with SHA-256 (DER signature).
    EcdsaP256Sha256,
    /// ECDSA over P-384 with SHA-384 (DER signature).
    EcdsaP384Sha384,
}

/// A key that signs.
pub trait Signer: Send + Sync {
    /// Its algorithm.
    fn algorithm(&self) -> Algorithm;
    /// Its public key: 32 bytes for Ed25519, the uncompressed SEC1 point for ECDSA.
    fn public_key(&self) -> &[u8];
    /// Sign `message` (the whole message: ECDSA hashes it first).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;
}

/// Why a key could not be found or could not sign. Each names the key.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The URI is not an RFC 7512 `pkcs11:` URI modelgate can use.
    #[error("{uri}: {why}")]
    Uri {
        /// The URI as given (its PIN, if any, left out).
        uri: String,
        /// What is wrong with it.
        why: String,
    },
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("{uri}: the PKCS#11 module {module}: {why}")]
    Module {
        /// The key's URI.
        uri: String,
        /// The module's path.
        module: String,
        /// What failed.
        why: String,
    },
    /// No token, or no key object, matches.
    #[error("{uri}: {why}")]
    NotFound {
        /// The key's URI.
        uri: String,
        /// What was not found.
        why: String,
    },
    /// Logging in failed (a wrong PIN, a locked token).
    #[error("{uri}: logging in to the token: {why}")]
    Login {
        /// The key's URI.
        uri: String,
        /// What the token said.
        why: String,
    },
    /// The token refused to sign, or is gone.
    #[error("{uri}: signing: {why}")]
    Sign {
        /// The key's URI.
        uri: String,
        /// What the token said.
        why: String,
    },
}

/// A key file's Ed25519 key signs in memory.
impl Signer for ed25519_dalek::SigningKey {
    fn algorithm(&self) -> Algorithm {
        Algorithm::Ed25519
    }

    fn public_key(&self) -> &[u8] {
        let public: &ed25519_dalek::VerifyingKey = self.as_ref();
        public.as_bytes()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(ed25519_dalek::Signer::sign(self, message).to_bytes().to_vec())
    }
}

/// The key a `pkcs11:` URI names, opened with `module` when the URI names
/// none (then `MODELGATE_PKCS11_MODULE`).
#[cfg(feature = "pkcs11")]
pub fn open_token(uri: &str, module: Option<&Path>) -> Result<Arc<dyn Signer>, SignError> {
    Ok(Arc::new(pkcs11::Pkcs11Key::open(uri, module)?))
}

/// Built without PKCS#11: every `pkcs11:` URI is refused, by name.
#[cfg(not(feature = "pkcs11"))]
pub fn open_token(uri: &str, _module: Option<&Path>) -> Result<Arc<dyn Signer>, SignError> {
    uri::Pkcs11Uri::parse(uri)?;
    Err(SignError::Uri {
        uri: uri::Pkcs11Uri::redacted(uri),
        why: "this build has no PKCS#11 support".into(),
    })
}

/// An Ed25519 key's 32 public bytes, or why it is not one.
pub fn ed25519_public(signer: &dyn Signer) -> Result<[u8; 32], String> {
    if signer.algorithm() != Algorithm::Ed25519 {
        return Err(format!("a {:?} key where an Ed25519 key is needed", signer.algorithm()));
    }
    signer
        .public_key()
        .try_into()
        .map_err(|_| "an Ed25519 public key that is not 32 bytes".to_owned())
}

/// A key's public half as SPKI PEM (what `modelgate keygen` writes beside
/// a key file), for naming a token's key in a trust root.
#[cfg(feature = "pkcs11")]
pub fn public_key_pem(signer: &dyn Signer) -> Result<String, String> {
    use p256::pkcs8::EncodePublicKey as _;
    let pem = match signer.algorithm() {
        Algorithm::Ed25519 => ed25519_dalek::VerifyingKey::from_bytes(&ed25519_public(signer)?)
            .map_err(|e| e.to_string())?
            .to_public_key_pem(Default::default()),
        Algorithm::EcdsaP256Sha256 => p256::PublicKey::from_sec1_bytes(signer.public_key())
            .map_err(|e| e.to_string())?
            .to_public_key_pem(Default::default()),
        Algorithm::EcdsaP384Sha384 => p384::PublicKey::from_sec1_bytes(signer.public_key())
            .map_err(|e| e.to_string())?
            .to_public_key_pem(Default::default()),
    };
    pem.map_err(|e| e.to_string())
}
