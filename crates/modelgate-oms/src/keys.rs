//! Keys as OMS uses them. Signing: ECDSA P-256/SHA-256, P-384/SHA-384, P-521/SHA-512,
//! DER signatures, as the reference Python client signs.
//!
//! Verifying also accepts the two key types the Go client (`model-transparency-go`)
//! signs with besides ECDSA, with the hash Sigstore's key details fix for them:
//! RSA PKCS#1 v1.5 with SHA-256 (2048 to 4096 bits) and Ed25519 — pre-hashed
//! (Ed25519ph over SHA-512, `PKIX_ED25519_PH`, what the Go client writes) or pure.
//!
//! The key type fixes the hash, so a signature can never be checked under a weaker
//! hash than it was made with. P-256 and P-384 signatures are deterministic (RFC 6979),
//! so the same model and key give the same bundle; the p521 crate draws a fresh random
//! nonce, so P-521 bundles differ in the signature bytes only (the signed payload is
//! identical, and both are valid).

use pkcs8::der::Decode;
use pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};
use sha2::{Digest as _, Sha256};
use signature_compat::{Signer, Verifier};

use crate::error::{Error, Result};

mod signature_compat {
    pub use ecdsa::signature::{Signer, Verifier};
}

/// An elliptic curve OMS supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 with SHA-256.
    P256,
    /// NIST P-384 with SHA-384.
    P384,
    /// NIST P-521 with SHA-512.
    P521,
}

impl Curve {
    fn from_oid(oid: &const_oid::ObjectIdentifier) -> Option<Self> {
        use const_oid::db::rfc5912::{SECP_256_R_1, SECP_384_R_1, SECP_521_R_1};
        match *oid {
            SECP_256_R_1 => Some(Curve::P256),
            SECP_384_R_1 => Some(Curve::P384),
            SECP_521_R_1 => Some(Curve::P521),
            _ => None,
        }
    }
}

/// A private signing key.
pub enum PrivateKey {
    /// P-256.
    P256(p256::ecdsa::SigningKey),
    /// P-384.
    P384(p384::ecdsa::SigningKey),
    /// P-521.
    P521(p521::ecdsa::SigningKey),
    /// A key on a token (PKCS#11): it signs there, and its public key was read from it.
    Token {
        /// The token's key.
        signer: std::sync::Arc<dyn modelgate_signer::Signer>,
        /// Its public key.
        public: PublicKey,
    },
}

/// The digest an ECDSA signature is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcdsaDigest {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl EcdsaDigest {
    /// The SHA-2 function an object identifier names (id-sha256, -384, -512).
    pub fn from_oid(oid: &const_oid::ObjectIdentifier) -> Option<Self> {
        use const_oid::db::rfc5912::{ID_SHA_256, ID_SHA_384, ID_SHA_512};
        match *oid {
            ID_SHA_256 => Some(EcdsaDigest::Sha256),
            ID_SHA_384 => Some(EcdsaDigest::Sha384),
            ID_SHA_512 => Some(EcdsaDigest::Sha512),
            _ => None,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            EcdsaDigest::Sha256 => Sha256::digest(data).to_vec(),
            EcdsaDigest::Sha384 => sha2::Sha384::digest(data).to_vec(),
            EcdsaDigest::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A public verification key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// P-521.
    P521(p521::PublicKey),
    /// RSA, 2048 to 4096 bits, PKCS#1 v1.5 with SHA-256 (verification only).
    Rsa(rsa::RsaPublicKey),
    /// Ed25519 (verification only).
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// The smallest RSA modulus accepted, as in Sigstore's key details.
pub const RSA_BITS_MIN: usize = 2048;
/// `rsaEncryption`, the SPKI algorithm of RSA keys (in certificates too).
pub(crate) const RSA_ENCRYPTION: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-Ed25519`: the SPKI algorithm of Ed25519 keys, and the certificate signature
/// algorithm of an Ed25519 issuer.
pub(crate) const ID_ED25519: const_oid::ObjectIdentifier = const_oid::ObjectIdentifier::new_unwrap("1.3.101.112");

impl PrivateKey {
    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(pem: &str, what: &str) -> Result<Self> {
        let bad = |reason: String| Error::Key {
            what: what.to_owned(),
            reason,
        };
        let (label, der) = pem_rfc7468_decode(pem).map_err(|e| bad(format!("not a PEM file: {e}")))?;
        match label.as_str() {
            "PRIVATE KEY" => {
                let info = pkcs8::PrivateKeyInfo::from_der(&der).map_err(|e| bad(format!("not PKCS#8: {e}")))?;
                if info.algorithm.oid != const_oid::db::rfc5912::ID_EC_PUBLIC_KEY {
                    return Err(bad(format!(
                        "key algorithm {} is not ECDSA; OMS signing needs a P-256, P-384 or P-521 key",
                        info.algorithm.oid
                    )));
                }
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .ok()
                    .and_then(|o| Curve::from_oid(&o))
                    .ok_or_else(|| bad("unsupported curve; use P-256, P-384 or P-521".to_owned()))?;
                Ok(match curve {
                    Curve::P256 => {
                        PrivateKey::P256(p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?)
                    }
                    Curve::P384 => {
                        PrivateKey::P384(p384::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?)
                    }
                    Curve::P521 => {
                        let sk = p521::SecretKey::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?;
                        PrivateKey::P521(
                            p521::ecdsa::SigningKey::from_bytes(&sk.to_bytes()).map_err(|e| bad(e.to_string()))?,
                        )
                    }
                })
            }
            "EC PRIVATE KEY" => {
                let key = sec1::EcPrivateKey::from_der(&der).map_err(|e| bad(format!("not SEC1: {e}")))?;
                let curve = key
                    .parameters
                    .and_then(|p| p.named_curve())
                    .and_then(|o| Curve::from_oid(&o))
                    .ok_or_else(|| bad("SEC1 key without a supported named curve".to_owned()))?;
                let d = key.private_key;
                Ok(match curve {
                    Curve::P256 => {
                        PrivateKey::P256(p256::ecdsa::SigningKey::from_slice(d).map_err(|e| bad(e.to_string()))?)
                    }
                    Curve::P384 => {
                        PrivateKey::P384(p384::ecdsa::SigningKey::from_slice(d).map_err(|e| bad(e.to_string()))?)
                    }
                    Curve::P521 => {
                        PrivateKey::P521(p521::ecdsa::SigningKey::from_slice(d).map_err(|e| bad(e.to_string()))?)
                    }
                })
            }
            "ENCRYPTED PRIVATE KEY" => Err(bad(
                "encrypted private keys are not supported; decrypt it first (openssl pkcs8 -topk8 -nocrypt)".to_owned(),
            )),
            other => Err(bad(format!("PEM block {other:?} is not a private key"))),
        }
    }

    /// A model-signing key on a token: ECDSA P-256 or P-384, as the model
    /// signing reference verifies.
    pub fn from_token(signer: std::sync::Arc<dyn modelgate_signer::Signer>, what: &str) -> Result<Self> {
        use modelgate_signer::Algorithm;
        let bad = |reason: String| Error::Key {
            what: what.to_owned(),
            reason,
        };
        let public =
            match signer.algorithm() {
                Algorithm::EcdsaP256Sha256 => PublicKey::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(signer.public_key()).map_err(|e| bad(e.to_string()))?,
                ),
                Algorithm::EcdsaP384Sha384 => PublicKey::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(signer.public_key()).map_err(|e| bad(e.to_string()))?,
                ),
                Algorithm::Ed25519 => return Err(bad(
                    "an Ed25519 key: model-signing keys are ECDSA P-256 or P-384 (Ed25519 signs governance entries)"
                        .into(),
                )),
            };
        Ok(PrivateKey::Token { signer, public })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            PrivateKey::Token { public, .. } => public.clone(),
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
            PrivateKey::P384(k) => PublicKey::P384(*k.verifying_key()),
            PrivateKey::P521(k) => {
                let vk = p521::ecdsa::VerifyingKey::from(k);
                // A point from a valid signing key is always a valid public key.
                PublicKey::P521(p521::PublicKey::from_affine(*vk.as_affine()).unwrap_or_else(|_| unreachable_point()))
            }
        }
    }

    /// A DER-encoded ECDSA signature over `msg`, hashed with the curve's
    /// hash. Only a token can fail (gone, or refusing).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        Ok(match self {
            PrivateKey::Token { signer, .. } => signer.sign(msg).map_err(|e| Error::Key {
                what: "the signing token".into(),
                reason: e.to_string(),
            })?,
            PrivateKey::P256(k) => Signer::<p256::ecdsa::Signature>::sign(k, msg)
                .to_der()
                .as_bytes()
                .to_vec(),
            PrivateKey::P384(k) => Signer::<p384::ecdsa::Signature>::sign(k, msg)
                .to_der()
                .as_bytes()
                .to_vec(),
            PrivateKey::P521(k) => Signer::<p521::ecdsa::Signature>::sign(k, msg)
                .to_der()
                .as_bytes()
                .to_vec(),
        })
    }
}

#[allow(clippy::panic)]
fn unreachable_point() -> p521::PublicKey {
    // Justification: the affine point of a verifying key derived from a non-zero
    // scalar is never the identity, which is the only rejected input.
    panic!("P-521 verifying key is the identity point")
}

impl PublicKey {
    /// Reads an SPKI PEM (`PUBLIC KEY`) EC public key.
    pub fn from_pem(pem: &str, what: &str) -> Result<Self> {
        let bad = |reason: String| Error::Key {
            what: what.to_owned(),
            reason,
        };
        let (label, der) = pem_rfc7468_decode(pem).map_err(|e| bad(format!("not a PEM file: {e}")))?;
        if label != "PUBLIC KEY" {
            return Err(bad(format!(
                "PEM block {label:?} is not a public key (expected PUBLIC KEY)"
            )));
        }
        Self::spki_msg(&der).map_err(bad)
    }

    /// Reads a DER SubjectPublicKeyInfo, as found in certificates.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        Self::spki_msg(der).map_err(|reason| Error::Key {
            what: "public key (DER SubjectPublicKeyInfo)".into(),
            reason,
        })
    }

    pub(crate) fn spki_msg(der: &[u8]) -> std::result::Result<Self, String> {
        let spki = spki::SubjectPublicKeyInfoRef::from_der(der).map_err(|e| format!("not a public key: {e}"))?;
        if spki.algorithm.oid == RSA_ENCRYPTION {
            use rsa::traits::PublicKeyParts as _;
            let key = rsa::RsaPublicKey::from_public_key_der(der).map_err(|e| format!("RSA key: {e}"))?;
            let bits = key.n().bits();
            if bits < RSA_BITS_MIN {
                return Err(format!("RSA key of {bits} bits; at least {RSA_BITS_MIN} are required"));
            }
            return Ok(PublicKey::Rsa(key));
        }
        if spki.algorithm.oid == ID_ED25519 {
            let key = ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(|e| format!("Ed25519 key: {e}"))?;
            return Ok(PublicKey::Ed25519(key));
        }
        if spki.algorithm.oid != const_oid::db::rfc5912::ID_EC_PUBLIC_KEY {
            return Err(format!(
                "key algorithm {} is not one OMS uses (ECDSA P-256, P-384, P-521; RSA; Ed25519)",
                spki.algorithm.oid
            ));
        }
        let curve = spki
            .algorithm
            .parameters_oid()
            .ok()
            .and_then(|o| Curve::from_oid(&o))
            .ok_or_else(|| "unsupported curve; OMS uses P-256, P-384 or P-521".to_owned())?;
        Ok(match curve {
            Curve::P256 => {
                PublicKey::P256(p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|e| e.to_string())?)
            }
            Curve::P384 => {
                PublicKey::P384(p384::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|e| e.to_string())?)
            }
            Curve::P521 => PublicKey::P521(p521::PublicKey::from_public_key_der(der).map_err(|e| e.to_string())?),
        })
    }

    /// The SPKI PEM text, exactly as Python `cryptography` writes it (64-column lines, LF).
    pub fn to_pem(&self) -> Result<String> {
        let r = match self {
            PublicKey::P256(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::P384(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::P521(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::Rsa(k) => k.to_public_key_pem(LineEnding::LF),
            PublicKey::Ed25519(k) => k.to_public_key_pem(LineEnding::LF),
        };
        r.map_err(|e| Error::Key {
            what: "public key".to_owned(),
            reason: e.to_string(),
        })
    }

    /// The bundle's `publicKey.hint`: hex SHA-256 of the SPKI PEM text.
    pub fn hint(&self) -> Result<String> {
        Ok(hex::encode(Sha256::digest(self.to_pem()?.as_bytes())))
    }

    /// Checks a signature over `msg` with the hash the key type fixes: a DER ECDSA
    /// signature hashed with the curve's hash, RSA PKCS#1 v1.5 over SHA-256, or an
    /// Ed25519 signature — Ed25519ph over SHA-512 (empty context, RFC 8032) as the Go
    /// client writes, or pure Ed25519. Both Ed25519 forms are strict (no small-order
    /// or non-canonical points) and domain-separated by RFC 8032's `dom2` prefix, so
    /// accepting either cannot make one message's signature valid for another.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Rsa(_) => self.verify_prehash(&Sha256::digest(msg), sig),
            PublicKey::Ed25519(k) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                    return false;
                };
                k.verify_prehashed_strict(sha2::Sha512::new().chain_update(msg), None, &sig)
                    .is_ok()
                    || k.verify_strict(msg, &sig).is_ok()
            }
            PublicKey::P256(_) => self.verify_ecdsa(EcdsaDigest::Sha256, msg, sig),
            PublicKey::P384(_) => self.verify_ecdsa(EcdsaDigest::Sha384, msg, sig),
            PublicKey::P521(k) => {
                let vk = p521::ecdsa::VerifyingKey::from_affine(*k.as_affine());
                match (vk, p521::ecdsa::Signature::from_der(sig)) {
                    (Ok(vk), Ok(s)) => vk.verify(msg, &s).is_ok(),
                    _ => false,
                }
            }
        }
    }

    /// A DER ECDSA signature over `msg` hashed with `digest`. P-256 and P-384
    /// with SHA-256 or SHA-384 verify with `ring`, several times faster than
    /// the RustCrypto curves for P-384 (the Fulcio and timestamp chains'
    /// curve); other pairs, and keys that are not ECDSA, as
    /// [`PublicKey::verify_prehash`] does.
    pub fn verify_ecdsa(&self, digest: EcdsaDigest, msg: &[u8], sig: &[u8]) -> bool {
        use ring::signature as rs;
        let point = match self {
            PublicKey::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            PublicKey::P384(k) => k.to_encoded_point(false).as_bytes().to_vec(),
            PublicKey::Rsa(_) => return false,
            _ => return self.verify_prehash(&digest.digest(msg), sig),
        };
        let alg: &'static rs::EcdsaVerificationAlgorithm = match (self, digest) {
            (PublicKey::P256(_), EcdsaDigest::Sha256) => &rs::ECDSA_P256_SHA256_ASN1,
            (PublicKey::P256(_), EcdsaDigest::Sha384) => &rs::ECDSA_P256_SHA384_ASN1,
            (PublicKey::P384(_), EcdsaDigest::Sha256) => &rs::ECDSA_P384_SHA256_ASN1,
            (PublicKey::P384(_), EcdsaDigest::Sha384) => &rs::ECDSA_P384_SHA384_ASN1,
            _ => return self.verify_prehash(&digest.digest(msg), sig),
        };
        rs::UnparsedPublicKey::new(alg, point).verify(msg, sig).is_ok()
    }

    /// [`PublicKey::verify`], but Ed25519 only in its pure form: what a
    /// transparency log signs (notes, SETs) is never pre-hashed.
    pub fn verify_pure(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(k) => {
                ed25519_dalek::Signature::from_slice(sig).is_ok_and(|s| k.verify_strict(msg, &s).is_ok())
            }
            _ => self.verify(msg, sig),
        }
    }

    /// Checks a signature over an already computed message digest: DER ECDSA, or RSA
    /// PKCS#1 v1.5 when the digest is a SHA-256 one. Ed25519 signs messages, not
    /// digests, so it never verifies here.
    pub fn verify_prehash(&self, prehash: &[u8], sig_der: &[u8]) -> bool {
        use ecdsa::signature::hazmat::PrehashVerifier;
        match self {
            PublicKey::Rsa(k) => {
                prehash.len() == 32 && k.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), prehash, sig_der).is_ok()
            }
            PublicKey::Ed25519(_) => false,
            PublicKey::P256(k) => {
                p256::ecdsa::Signature::from_der(sig_der).is_ok_and(|s| k.verify_prehash(prehash, &s).is_ok())
            }
            PublicKey::P384(k) => {
                p384::ecdsa::Signature::from_der(sig_der).is_ok_and(|s| k.verify_prehash(prehash, &s).is_ok())
            }
            PublicKey::P521(k) => {
                let vk = p521::ecdsa::VerifyingKey::from_affine(*k.as_affine());
                match (vk, p521::ecdsa::Signature::from_der(sig_der)) {
                    (Ok(vk), Ok(s)) => vk.verify_prehash(prehash, &s).is_ok(),
                    _ => false,
                }
            }
        }
    }

    /// The DER SubjectPublicKeyInfo, for comparing with a certificate's key.
    pub fn to_spki_der(&self) -> Result<Vec<u8>> {
        let r = match self {
            PublicKey::P256(k) => k.to_public_key_der(),
            PublicKey::P384(k) => k.to_public_key_der(),
            PublicKey::P521(k) => k.to_public_key_der(),
            PublicKey::Rsa(k) => k.to_public_key_der(),
            PublicKey::Ed25519(k) => k.to_public_key_der(),
        };
        r.map(|d| d.as_bytes().to_vec()).map_err(|e| Error::Key {
            what: "public key".to_owned(),
            reason: e.to_string(),
        })
    }
}

/// Decodes one PEM block, returning its label and DER bytes.
pub(crate) fn pem_rfc7468_decode(pem: &str) -> std::result::Result<(String, Vec<u8>), String> {
    let start = pem.find("-----BEGIN ").ok_or("no PEM block found")?;
    let (label, der) = der::pem::decode_vec(&pem.as_bytes()[start..]).map_err(|e| e.to_string())?;
    Ok((label.to_owned(), der))
}

/// Decodes every `CERTIFICATE` block in a PEM text, in order.
pub(crate) fn pem_certificates(pem: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let end_marker = block.find("-----END ").ok_or("unterminated PEM block")?;
        let after = block[end_marker..]
            .find("\n")
            .map_or(block.len(), |i| end_marker + i + 1)
            .min(block.len());
        let (label, der) = der::pem::decode_vec(&block.as_bytes()[..after]).map_err(|e| e.to_string())?;
        if label != "CERTIFICATE" {
            return Err(format!("PEM block {label:?} is not a certificate"));
        }
        out.push(der);
        rest = &block[after..];
    }
    if out.is_empty() {
        return Err("no certificate found".to_owned());
    }
    Ok(out)
}

/// A key `modelgate keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (model signing; the reference default).
    EcdsaP256,
    /// ECDSA on NIST P-384.
    EcdsaP384,
    /// ECDSA on NIST P-521.
    EcdsaP521,
    /// Ed25519 (governance: approvers, authority, witnesses, nodes).
    Ed25519,
}

/// A new key pair from the operating system's random source: the private
/// key as PKCS#8 PEM, the public key as SPKI PEM.
pub fn generate(algorithm: KeyAlgorithm) -> Result<(pkcs8::der::zeroize::Zeroizing<String>, String)> {
    use pkcs8::EncodePrivateKey;
    let mut rng = rand_core::OsRng;
    let bad = |e: &dyn std::fmt::Display| Error::Usage(format!("encoding the new key: {e}"));
    let (private, public) = match algorithm {
        KeyAlgorithm::EcdsaP256 => {
            let k = p256::SecretKey::random(&mut rng);
            (
                k.to_pkcs8_pem(LineEnding::LF),
                k.public_key().to_public_key_pem(LineEnding::LF),
            )
        }
        KeyAlgorithm::EcdsaP384 => {
            let k = p384::SecretKey::random(&mut rng);
            (
                k.to_pkcs8_pem(LineEnding::LF),
                k.public_key().to_public_key_pem(LineEnding::LF),
            )
        }
        KeyAlgorithm::EcdsaP521 => {
            let k = p521::SecretKey::random(&mut rng);
            (
                k.to_pkcs8_pem(LineEnding::LF),
                k.public_key().to_public_key_pem(LineEnding::LF),
            )
        }
        KeyAlgorithm::Ed25519 => {
            let k = ed25519_dalek::SigningKey::generate(&mut rng);
            // RFC 8410's form, the private key alone (PKCS#8 v1), as OpenSSL
            // writes it: ed25519-dalek's own encoding (v2, with the public
            // key) is refused by OpenSSL 3 and Python's cryptography.
            let v1 = ed25519_dalek::pkcs8::KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            };
            (
                v1.to_pkcs8_pem(LineEnding::LF),
                k.verifying_key().to_public_key_pem(LineEnding::LF),
            )
        }
    };
    Ok((private.map_err(|e| bad(&e))?, public.map_err(|e| bad(&e))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_on_every_curve_and_reject_others() {
        let keys = [
            PrivateKey::P256(p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()),
            PrivateKey::P384(p384::ecdsa::SigningKey::from_slice(&[7u8; 48]).unwrap()),
            PrivateKey::P521(p521::ecdsa::SigningKey::from_slice(&[1u8; 66]).unwrap()),
        ];
        for k in &keys {
            let sig = k.sign(b"msg").unwrap();
            if !matches!(k, PrivateKey::P521(_)) {
                assert_eq!(sig, k.sign(b"msg").unwrap(), "RFC 6979 signing is deterministic");
            }
            let pk = k.public_key();
            assert!(pk.verify(b"msg", &sig));
            assert!(!pk.verify(b"msh", &sig));
            let pem = pk.to_pem().unwrap();
            assert_eq!(PublicKey::from_pem(&pem, "t").unwrap(), pk);
        }
        let other = keys[0].public_key();
        assert!(!other.verify(b"msg", &keys[1].sign(b"msg").unwrap()));
    }

    /// RFC 8032 §7.3, "TEST abc": Ed25519ph of the message "abc", empty context.
    #[test]
    fn ed25519ph_matches_rfc8032() {
        let pk: [u8; 32] = hex::decode("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
            .unwrap()
            .try_into()
            .unwrap();
        let sig = hex::decode(
            "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
             31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406",
        )
        .unwrap();
        let key = PublicKey::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&pk).unwrap());
        assert!(key.verify(b"abc", &sig));
        assert!(!key.verify(b"abd", &sig));
        // Ed25519 signs messages; a digest handed over as such never verifies.
        assert!(!key.verify_prehash(&Sha256::digest(b"abc"), &sig));
        let pem = key.to_pem().unwrap();
        assert_eq!(PublicKey::from_pem(&pem, "t").unwrap(), key);
    }
}
