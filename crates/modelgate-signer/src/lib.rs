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

pub mod pkcs11;
pub mod uri;

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
