//! X.509 chain validation with the semantics the reference gets from OpenSSL.
//!
//! Why our own: the reference validates with OpenSSL's `X509StoreContext` at the
//! leaf's `notBefore` (the signing time), accepts a leaf that is itself a CA, and then
//! requires `digitalSignature` key usage or the `codeSigning` extended key usage.
//! rustls-webpki refuses CA leaves and needs aws-lc for P-521, so it would reject
//! bundles the reference accepts. This module implements exactly the checks below and
//! refuses everything it does not understand (unknown critical extensions, RSA-PSS):
//!
//! - every certificate on the path is within its validity period at the leaf's `notBefore`;
//! - each issuer's subject equals the issued certificate's issuer, and its key verifies
//!   the certificate's signature over the original TBS bytes;
//! - every issuer is a CA (`basicConstraints cA=TRUE`), with `keyCertSign` when it
//!   states a key usage, and within its `pathLenConstraint`;
//! - the path ends at a self-issued certificate given as trusted;
//! - path length is bounded by [`PATH_DEPTH_MAX`].

use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_CERTIFICATE_POLICIES, ID_CE_EXT_KEY_USAGE,
    ID_CE_KEY_USAGE, ID_CE_SUBJECT_ALT_NAME, ID_CE_SUBJECT_KEY_IDENTIFIER, ID_KP_CODE_SIGNING,
};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode, Reader};
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::Certificate;

use crate::keys::{EcdsaDigest, PublicKey, ID_ED25519, RSA_ENCRYPTION};

/// Certificates on one path, leaf included. Real PKIs use three or four.
pub const PATH_DEPTH_MAX: usize = 10;

const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");

/// A parsed certificate with the raw bytes its signature covers.
pub(crate) struct Cert {
    pub(crate) der: Vec<u8>,
    tbs_der: Vec<u8>,
    pub(crate) cert: Certificate,
}

impl Cert {
    pub fn parse(der: &[u8], what: &str) -> Result<Self, String> {
        let cert = Certificate::from_der(der).map_err(|e| format!("{what}: not a DER certificate: {e}"))?;
        Ok(Cert {
            der: der.to_vec(),
            tbs_der: raw_tbs(der).map_err(|e| format!("{what}: {e}"))?,
            cert,
        })
    }

    /// The certificate's public key, if it is one OMS signs with.
    pub fn public_key(&self) -> Result<PublicKey, String> {
        let spki = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        PublicKey::spki_msg(&spki)
    }

    fn subject_str(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }

    fn not_before_secs(&self) -> u64 {
        self.cert
            .tbs_certificate
            .validity
            .not_before
            .to_unix_duration()
            .as_secs()
    }

    pub(crate) fn valid_at(&self, t: u64) -> bool {
        let v = &self.cert.tbs_certificate.validity;
        v.not_before.to_unix_duration().as_secs() <= t && t <= v.not_after.to_unix_duration().as_secs()
    }

    fn self_issued(&self) -> bool {
        self.cert.tbs_certificate.subject == self.cert.tbs_certificate.issuer
    }

    pub(crate) fn extension<T: for<'a> Decode<'a>>(&self, oid: ObjectIdentifier) -> Result<Option<T>, String> {
        let Some(exts) = &self.cert.tbs_certificate.extensions else {
            return Ok(None);
        };
        let mut found = exts.iter().filter(|e| e.extn_id == oid);
        let Some(ext) = found.next() else { return Ok(None) };
        if found.next().is_some() {
            return Err(format!("certificate {:?} repeats extension {oid}", self.subject_str()));
        }
        T::from_der(ext.extn_value.as_bytes())
            .map(Some)
            .map_err(|e| format!("certificate {:?}: bad extension {oid}: {e}", self.subject_str()))
    }

    fn check_critical_extensions(&self) -> Result<(), String> {
        const UNDERSTOOD: [ObjectIdentifier; 7] = [
            ID_CE_BASIC_CONSTRAINTS,
            ID_CE_KEY_USAGE,
            ID_CE_EXT_KEY_USAGE,
            ID_CE_SUBJECT_ALT_NAME,
            ID_CE_SUBJECT_KEY_IDENTIFIER,
            ID_CE_AUTHORITY_KEY_IDENTIFIER,
            ID_CE_CERTIFICATE_POLICIES,
        ];
        for ext in self.cert.tbs_certificate.extensions.iter().flatten() {
            if ext.critical && !UNDERSTOOD.contains(&ext.extn_id) {
                return Err(format!(
                    "certificate {:?} has a critical extension {} we cannot check",
                    self.subject_str(),
                    ext.extn_id
                ));
            }
        }
        Ok(())
    }

    /// Whether this certificate may issue others, and how many CAs may follow it.
    fn ca_path_len(&self) -> Result<Option<Option<u8>>, String> {
        let bc: Option<BasicConstraints> = self.extension(ID_CE_BASIC_CONSTRAINTS)?;
        let Some(bc) = bc.filter(|b| b.ca) else { return Ok(None) };
        if let Some(ku) = self.extension::<KeyUsage>(ID_CE_KEY_USAGE)? {
            if !ku.0.contains(KeyUsages::KeyCertSign) {
                return Ok(None);
            }
        }
        Ok(Some(bc.path_len_constraint))
    }

    /// Checks that this certificate's key signed `child`.
    fn signed(&self, child: &Cert) -> Result<(), String> {
        let alg = child.cert.signature_algorithm.oid;
        let sig = child
            .cert
            .signature
            .as_bytes()
            .ok_or_else(|| "certificate signature has unused bits".to_owned())?;
        let spki_der = self
            .cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        let msg = &child.tbs_der;
        let ok = match alg {
            ECDSA_SHA256 | ECDSA_SHA384 | ECDSA_SHA512 => {
                let key = PublicKey::spki_msg(&spki_der)?;
                // The algorithm named on the certificate must be the key's: an RSA key
                // must not pass for an ECDSA signature just because both take a digest.
                if !matches!(key, PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_)) {
                    return Err("ECDSA signature by a non-ECDSA key".to_owned());
                }
                let digest = match alg {
                    ECDSA_SHA256 => EcdsaDigest::Sha256,
                    ECDSA_SHA384 => EcdsaDigest::Sha384,
                    _ => EcdsaDigest::Sha512,
                };
                key.verify_ecdsa(digest, msg, sig)
            }
            RSA_SHA256 | RSA_SHA384 | RSA_SHA512 => {
                use rsa::pkcs8::DecodePublicKey;
                if self.cert.tbs_certificate.subject_public_key_info.algorithm.oid != RSA_ENCRYPTION {
                    return Err("RSA signature by a non-RSA key".to_owned());
                }
                let key = rsa::RsaPublicKey::from_public_key_der(&spki_der).map_err(|e| e.to_string())?;
                let r = match alg {
                    RSA_SHA256 => key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(msg), sig),
                    RSA_SHA384 => key.verify(rsa::Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(msg), sig),
                    _ => key.verify(rsa::Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(msg), sig),
                };
                r.is_ok()
            }
            ID_ED25519 => {
                let raw = self
                    .cert
                    .tbs_certificate
                    .subject_public_key_info
                    .subject_public_key
                    .raw_bytes();
                let key = <[u8; 32]>::try_from(raw)
                    .ok()
                    .and_then(|b| ed25519_dalek::VerifyingKey::from_bytes(&b).ok())
                    .ok_or_else(|| "bad Ed25519 issuer key".to_owned())?;
                let sig = ed25519_dalek::Signature::from_slice(sig).map_err(|e| e.to_string())?;
                key.verify_strict(msg, &sig).is_ok()
            }
            other => return Err(format!("unsupported certificate signature algorithm {other}")),
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "signature on certificate {:?} does not verify with the key of {:?}",
                child.subject_str(),
                self.subject_str()
            ))
        }
    }
}

/// The bytes of the `tbsCertificate` exactly as they appear, which is what was signed.
fn raw_tbs(der: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = der::SliceReader::new(der).map_err(|e| e.to_string())?;
    let outer = der::Header::decode(&mut r).map_err(|e| e.to_string())?;
    if outer.tag != der::Tag::Sequence {
        return Err("certificate is not a SEQUENCE".to_owned());
    }
    r.tlv_bytes().map(<[u8]>::to_vec).map_err(|e| e.to_string())
}

/// Whether the certificate carries Fulcio's extensions (arc 1.3.6.1.4.1.57264.1,
/// the OIDC issuer and friends): the mark of a keyless Sigstore signing certificate.
pub(crate) fn is_fulcio_issued(der: &[u8]) -> bool {
    const FULCIO_ARC: &[u32] = &[1, 3, 6, 1, 4, 1, 57264, 1];
    let Ok(cert) = Certificate::from_der(der) else {
        return false;
    };
    cert.tbs_certificate.extensions.iter().flatten().any(|e| {
        let arcs: Vec<u32> = e.extn_id.arcs().collect();
        arcs.starts_with(FULCIO_ARC)
    })
}

/// Validates `leaf` up to one of `trusted` through `intermediates`, and returns the
/// leaf's public key if the leaf may sign (digitalSignature or codeSigning).
pub(crate) fn verify_chain(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    trusted: &[Vec<u8>],
) -> Result<PublicKey, String> {
    verify_chain_at(leaf_der, intermediates, trusted, None)
}

/// [`verify_chain`] at time `at` (POSIX seconds), or at the leaf's
/// `notBefore` when `None` (the reference's rule for certificate bundles).
pub(crate) fn verify_chain_at(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    trusted: &[Vec<u8>],
    at: Option<u64>,
) -> Result<PublicKey, String> {
    verify_chain_path_at(leaf_der, intermediates, trusted, at).map(|(key, _)| key)
}

/// [`verify_chain_at`], and the path it found (leaf first, DER).
pub(crate) fn verify_chain_path_at(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    trusted: &[Vec<u8>],
    at: Option<u64>,
) -> Result<(PublicKey, Vec<Vec<u8>>), String> {
    let leaf = Cert::parse(leaf_der, "signing certificate")?;
    let at = at.unwrap_or_else(|| leaf.not_before_secs());
    let path = path_at(&leaf, intermediates, trusted, at)?;
    let key_usage: Option<KeyUsage> = leaf.extension(ID_CE_KEY_USAGE)?;
    let can_sign = key_usage.is_some_and(|k| k.0.contains(KeyUsages::DigitalSignature))
        || leaf
            .extension::<ExtendedKeyUsage>(ID_CE_EXT_KEY_USAGE)?
            .is_some_and(|e| e.0.contains(&ID_KP_CODE_SIGNING));
    if !can_sign {
        return Err("signing certificate allows neither digitalSignature nor codeSigning".to_owned());
    }
    let key = leaf.public_key().map_err(|e| format!("signing certificate key: {e}"))?;
    Ok((key, path))
}

/// Whether `path` (as [`verify_chain_path_at`] found it) is also a valid
/// path at `at`: its signatures, extensions and constraints do not depend
/// on the time, so only each certificate's validity and the trust of its
/// issuers then are checked.
pub(crate) fn path_holds_at(path: &[Vec<u8>], intermediates: &[Vec<u8>], trusted: &[Vec<u8>], at: u64) -> bool {
    let Some((anchor, below)) = path.split_last() else {
        return false;
    };
    trusted.contains(anchor)
        && below
            .iter()
            .skip(1)
            .all(|c| intermediates.contains(c) || trusted.contains(c))
        && path
            .iter()
            .all(|d| Cert::parse(d, "path").is_ok_and(|c| c.valid_at(at)))
}

/// A path from `leaf` to one of `trusted` through `intermediates`, every
/// certificate on it valid at `at`; what the leaf may do is the caller's check.
pub(crate) fn path_at(
    leaf: &Cert,
    intermediates: &[Vec<u8>],
    trusted: &[Vec<u8>],
    at: u64,
) -> Result<Vec<Vec<u8>>, String> {
    let pool: Vec<Cert> = intermediates
        .iter()
        .enumerate()
        .map(|(i, d)| Cert::parse(d, &format!("bundle certificate {}", i + 1)))
        .collect::<Result<_, _>>()?;
    let anchors: Vec<Cert> = trusted
        .iter()
        .enumerate()
        .map(|(i, d)| Cert::parse(d, &format!("trusted certificate {}", i + 1)))
        .collect::<Result<_, _>>()?;
    let mut path = vec![leaf];
    let mut why = Vec::new();
    if !build(&mut path, &pool, &anchors, at, &mut why) {
        why.dedup();
        let detail = if why.is_empty() {
            format!(
                "no trusted certificate issued {:?}",
                leaf.cert.tbs_certificate.issuer.to_string()
            )
        } else {
            why.join("; ")
        };
        return Err(format!("certificate chain does not lead to a trusted root: {detail}"));
    }
    Ok(path.iter().map(|c| c.der.clone()).collect())
}

fn build<'a>(path: &mut Vec<&'a Cert>, pool: &'a [Cert], anchors: &'a [Cert], at: u64, why: &mut Vec<String>) -> bool {
    let Some(&cur) = path.last() else { return false };
    if let Err(e) = cur.check_critical_extensions() {
        why.push(e);
        return false;
    }
    if !cur.valid_at(at) {
        why.push(format!(
            "certificate {:?} is not valid at the signing time",
            cur.subject_str()
        ));
        return false;
    }
    if cur.self_issued() && anchors.iter().any(|a| a.der == cur.der) {
        return true;
    }
    if path.len() >= PATH_DEPTH_MAX {
        why.push(format!("no trusted root within {PATH_DEPTH_MAX} certificates"));
        return false;
    }
    let wanted = &cur.cert.tbs_certificate.issuer;
    for cand in anchors.iter().chain(pool) {
        if &cand.cert.tbs_certificate.subject != wanted || path.iter().any(|p| p.der == cand.der) {
            continue;
        }
        let limit = match cand.ca_path_len() {
            Ok(Some(limit)) => limit,
            Ok(None) => {
                why.push(format!(
                    "issuer {:?} is not a CA allowed to sign certificates",
                    cand.subject_str()
                ));
                continue;
            }
            Err(e) => {
                why.push(e);
                continue;
            }
        };
        // CAs between this issuer and the leaf, not counting self-issued ones (RFC 5280 6.1.4).
        let below = path.iter().skip(1).filter(|c| !c.self_issued()).count();
        if limit.is_some_and(|n| below > usize::from(n)) {
            why.push(format!("issuer {:?} exceeds its pathLenConstraint", cand.subject_str()));
            continue;
        }
        if let Err(e) = cand.signed(cur) {
            why.push(e);
            continue;
        }
        path.push(cand);
        if build(path, pool, anchors, at, why) {
            return true;
        }
        path.pop();
    }
    false
}
