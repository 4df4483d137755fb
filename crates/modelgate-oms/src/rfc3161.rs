//! RFC 3161 signed timestamps, as a keyless bundle's
//! `timestampVerificationData` carries them: a DER `TimeStampResp` whose
//! token is CMS `SignedData` over a `TSTInfo`.
//!
//! A timestamp proves a time only when all of this holds, each checked here:
//! the status is granted; the token is `SignedData` of `id-ct-TSTInfo`
//! content with exactly one signer; its signed attributes name that content
//! type and the content's digest; the signer is the leaf certificate of a
//! timestamp authority of the trusted root (the one the signer identifier
//! names, and the embedded one when the token carries certificates), valid
//! with its chain at the time it states, with the critical `timeStamping`
//! extended key usage; the signature over the signed attributes verifies
//! with that key; the message imprint is the digest of the message
//! timestamped (the DSSE signature); and the authority's window in the
//! trusted root holds the time. Parsing is `cms` and `x509-tsp`
//! (RustCrypto); the rules are sigstore-python 4.5.1's, with
//! `rfc3161-client` 1.0.9.

use const_oid::db::rfc5280::ID_CE_EXT_KEY_USAGE;
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Decode, Encode};
use x509_cert::ext::pkix::ExtendedKeyUsage;

use crate::keys::{EcdsaDigest, PublicKey};
use crate::trusted_root::TrustedRoot;
use crate::x509::Cert;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_KP_TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Whether `alg` is a signature algorithm a timestamp may be signed with.
/// The digest signed is the signer's digest algorithm's (RFC 5652 5.4, as
/// OpenSSL, under the reference, computes it), whatever hash this names.
fn signature_algorithm(alg: &ObjectIdentifier) -> bool {
    matches!(
        *alg,
        ECDSA_SHA256 | ECDSA_SHA384 | ECDSA_SHA512 | ID_EC_PUBLIC_KEY | RSA_SHA256 | RSA_ENCRYPTION
    )
}

/// The one value of the signed attribute `oid`.
fn attribute(attrs: &x509_cert::attr::Attributes, oid: ObjectIdentifier, what: &str) -> Result<der::Any, String> {
    let mut found = attrs.iter().filter(|a| a.oid == oid);
    match (found.next(), found.next()) {
        (Some(a), None) if a.values.len() == 1 => Ok(a.values.iter().next().cloned().ok_or("empty")?),
        (None, _) => Err(format!("no {what} signed attribute")),
        _ => Err(format!("the {what} signed attribute must be one, with one value")),
    }
}

/// The time (POSIX seconds) `resp_der` proves for `message`, once every
/// check of this module holds under a timestamp authority of `root`.
pub fn verify(resp_der: &[u8], message: &[u8], root: &TrustedRoot) -> Result<u64, String> {
    let resp = x509_tsp::TimeStampResp::from_der(resp_der).map_err(|e| format!("not a TimeStampResp: {e}"))?;
    if resp.status.status as u8 != 0 {
        return Err("its status is not granted".into());
    }
    let token = resp.time_stamp_token.ok_or("it carries no timestamp token")?;
    if token.content_type != ID_SIGNED_DATA {
        return Err("its token is not CMS SignedData".into());
    }
    let sd: cms::signed_data::SignedData = token.content.decode_as().map_err(|e| format!("its SignedData: {e}"))?;
    if sd.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err("its content is not a TSTInfo".into());
    }
    let tst_der = sd
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("its TSTInfo is detached")?
        .decode_as::<OctetString>()
        .map_err(|e| format!("its content: {e}"))?
        .into_bytes();
    let tst = x509_tsp::TstInfo::from_der(&tst_der).map_err(|e| format!("its TSTInfo: {e}"))?;
    let [si] = sd.signer_infos.0.as_slice() else {
        return Err("it must have exactly one signer".into());
    };
    let attrs = si.signed_attrs.as_ref().ok_or("its signer has no signed attributes")?;
    let content_type: ObjectIdentifier = attribute(attrs, ID_CONTENT_TYPE, "content-type")?
        .decode_as()
        .map_err(|e| format!("the content-type attribute: {e}"))?;
    if content_type != ID_CT_TST_INFO {
        return Err("the content-type attribute is not id-ct-TSTInfo".into());
    }
    let md: OctetString = attribute(attrs, ID_MESSAGE_DIGEST, "message-digest")?
        .decode_as()
        .map_err(|e| format!("the message-digest attribute: {e}"))?;
    let digest_alg = EcdsaDigest::from_oid(&si.digest_alg.oid).ok_or("its digest algorithm is not SHA-2")?;
    if md.as_bytes() != digest_alg.digest(&tst_der) {
        return Err("the message-digest attribute is not the TSTInfo's digest".into());
    }
    // The signature covers the attributes as a DER SET; they must be the
    // very bytes in the token ([0] IMPLICIT), never a re-encoding of them.
    let signed = attrs.to_der().map_err(|e| e.to_string())?;
    let mut implicit = signed.clone();
    implicit[0] = 0xA0;
    if !resp_der.windows(implicit.len()).any(|w| w == implicit) {
        return Err("its signed attributes are not DER".into());
    }
    let imprint = &tst.message_imprint;
    let imprint_alg = EcdsaDigest::from_oid(&imprint.hash_algorithm.oid).ok_or("its imprint's hash is not SHA-2")?;
    if imprint.hashed_message.as_bytes() != imprint_alg.digest(message) {
        return Err("it timestamps another message than this signature".into());
    }
    let t = tst.gen_time.to_unix_duration().as_secs();
    let embedded = embedded_signer(&sd, &si.sid)?;
    if !signature_algorithm(&si.signature_algorithm.oid) {
        return Err("its signature algorithm is not ECDSA or RSA".into());
    }
    let mut why = Vec::new();
    for chain in root.timestamp_authorities(t) {
        match signer(chain, &si.sid, embedded.as_deref(), t) {
            Ok(leaf) => {
                let key = leaf.public_key()?;
                let sig = si.signature.as_bytes();
                let ok = match key {
                    PublicKey::Rsa(_) => key.verify_prehash(&digest_alg.digest(&signed), sig),
                    _ => key.verify_ecdsa(digest_alg, &signed, sig),
                };
                if ok {
                    return Ok(t);
                }
                why.push("the token's signature does not verify with the authority's key".to_owned());
            }
            Err(e) => why.push(e),
        }
    }
    if why.is_empty() {
        return Err(format!("no timestamp authority of the trusted root is valid at {t}"));
    }
    why.dedup();
    Err(why.join("; "))
}

/// The certificate the signer identifier names among those the token carries.
fn embedded_signer(
    sd: &cms::signed_data::SignedData,
    sid: &cms::signed_data::SignerIdentifier,
) -> Result<Option<Vec<u8>>, String> {
    let Some(set) = &sd.certificates else {
        return Ok(None);
    };
    if set.0.is_empty() {
        return Ok(None);
    }
    for c in set.0.iter() {
        if let cms::cert::CertificateChoices::Certificate(c) = c {
            if names(sid, c) {
                return c.to_der().map(Some).map_err(|e| e.to_string());
            }
        }
    }
    Err("no certificate in the token is its signer's".into())
}

fn names(sid: &cms::signed_data::SignerIdentifier, c: &x509_cert::Certificate) -> bool {
    match sid {
        cms::signed_data::SignerIdentifier::IssuerAndSerialNumber(i) => {
            i.issuer == c.tbs_certificate.issuer && i.serial_number == c.tbs_certificate.serial_number
        }
        cms::signed_data::SignerIdentifier::SubjectKeyIdentifier(_) => false,
    }
}

/// The authority's leaf, if it is the signer and may timestamp at `t`.
fn signer(
    chain: &[Vec<u8>],
    sid: &cms::signed_data::SignerIdentifier,
    embedded: Option<&[u8]>,
    t: u64,
) -> Result<Cert, String> {
    let [leaf_der, inter @ .., root] = chain else {
        return Err("a timestamp authority's chain must hold its certificate and its root".into());
    };
    let leaf = Cert::parse(leaf_der, "timestamp authority certificate")?;
    if embedded.is_some_and(|e| e != leaf_der.as_slice()) || !names(sid, &leaf.cert) {
        return Err("the token is signed by another certificate than the authority's".into());
    }
    crate::x509::path_at(&leaf, inter, std::slice::from_ref(root), t)?;
    let eku = leaf
        .cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == ID_CE_EXT_KEY_USAGE);
    let time_stamping = eku.is_some_and(|e| {
        e.critical
            && ExtendedKeyUsage::from_der(e.extn_value.as_bytes()).is_ok_and(|k| k.0.contains(&ID_KP_TIME_STAMPING))
    });
    if !time_stamping {
        return Err("the authority's certificate lacks the critical timeStamping usage".into());
    }
    Ok(leaf)
}
