//! Keyless Sigstore bundles (a Fulcio certificate and a Rekor entry),
//! verified offline against a pinned Sigstore trusted root.
//!
//! Why our own, on RustCrypto (`x509-cert`, `cms`, `x509-tsp`), `ring`'s
//! ECDSA and this crate's chain validator: the `sigstore` crate's verifier pulls an HTTP
//! client, OAuth and a browser launcher into every node, and rustls-webpki
//! refuses certificates the reference accepts (see [`crate::x509`]). Every
//! check below is one the reference (sigstore-python 4.5.1) makes, in its
//! order; where this is stricter it says so ([`Check`]), and TESTING.md
//! lists each deliberate disagreement.
//!
//! The signing time is never the bundle's word alone: it is the Rekor v1
//! entry's integrated time under a signed entry timestamp (SET) that
//! verifies with a log key of the trusted root valid at that time, or the
//! time of an RFC 3161 timestamp over the signature by a timestamp
//! authority of the trusted root ([`crate::rfc3161`]); Rekor v2 entries
//! have no SET, so they need a timestamp. The certificate chain, the leaf,
//! the CA, the CT log key and the Rekor key must each be valid at that time.
//! Log entries are the kinds the reference records a DSSE envelope as:
//! `dsse` 0.0.1 (Rekor v1) and `hashedrekord` 0.0.2 (Rekor v2, whose
//! checkpoints are signed with Ed25519).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use const_oid::db::rfc5280::{ID_CE_EXT_KEY_USAGE, ID_CE_KEY_USAGE, ID_CE_SUBJECT_ALT_NAME, ID_KP_CODE_SIGNING};
use const_oid::ObjectIdentifier;
use der::{Decode, Encode};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName};

use crate::keys::{EcdsaDigest, PublicKey};
use crate::trusted_root::TrustedRoot;
use crate::x509::Cert;

const OIDC_ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
const OIDC_ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
const SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// The media types of the bundles this verifies (v0.3, as `model_signing` writes).
pub const KEYLESS_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.dev.sigstore.bundle.v0.3+json",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
];

/// The check of a keyless bundle that failed: each step of the
/// verification is named, so a refusal says which evidence did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The bundle's shape: media type, one certificate, one log entry, one signature.
    Bundle,
    /// Where the signing time comes from: a verified SET over the Rekor v1
    /// integrated time, or an RFC 3161 timestamp; at least one.
    SigningTime,
    /// Each RFC 3161 timestamp verifies under a timestamp authority of the
    /// trusted root (stricter than the reference, which drops one that does
    /// not and goes on when another time verifies).
    Timestamp,
    /// The leaf chains to a Fulcio CA of the trusted root valid at the signing time.
    Chain,
    /// The leaf may sign code: key usage digitalSignature, EKU codeSigning.
    Usage,
    /// The SAN and the OIDC issuer extension are the expected signer's.
    Identity,
    /// The embedded SCT verifies under a CT log key of the trusted root.
    Sct,
    /// The log entry's body is this envelope's and this certificate's.
    LogEntry,
    /// The inclusion proof folds to the checkpoint's root, signed by the log.
    Inclusion,
    /// The DSSE signature verifies under the leaf's key.
    Signature,
}

impl Check {
    /// The check's stable name (`keyless-…`), as refusals print it.
    pub fn name(self) -> &'static str {
        match self {
            Check::Bundle => "keyless-bundle",
            Check::SigningTime => "keyless-signing-time",
            Check::Timestamp => "keyless-timestamp",
            Check::Chain => "keyless-chain",
            Check::Usage => "keyless-usage",
            Check::Identity => "keyless-identity",
            Check::Sct => "keyless-sct",
            Check::LogEntry => "keyless-log-entry",
            Check::Inclusion => "keyless-inclusion",
            Check::Signature => "keyless-signature",
        }
    }
}

/// Why a keyless bundle was refused: the check and what exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} failed: {message}", check.name())]
pub struct KeylessError {
    /// The check that failed.
    pub check: Check,
    /// What exactly.
    pub message: String,
}

fn fail<T>(check: Check, message: impl Into<String>) -> Result<T, KeylessError> {
    Err(KeylessError {
        check,
        message: message.into(),
    })
}

/// Who must have signed: the certificate's SAN and OIDC issuer.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The SAN: an e-mail address or URI, exactly; or an anchored regular expression.
    pub identity: IdentityMatch,
    /// The OIDC issuer URL, exactly.
    pub issuer: String,
}

/// How the SAN is matched.
#[derive(Debug, Clone)]
pub enum IdentityMatch {
    /// Equal to this.
    Exact(String),
    /// Matched by this expression over the whole SAN (anchored, as cosign's
    /// `--certificate-identity-regexp` after `^…$`).
    Regexp(regex::Regex),
}

impl IdentityMatch {
    /// An anchored expression: `re` must match the whole SAN.
    pub fn regexp(re: &str) -> Result<Self, String> {
        regex::Regex::new(&format!("^(?:{re})$"))
            .map(IdentityMatch::Regexp)
            .map_err(|e| format!("--identity-regexp {re:?}: {e}"))
    }

    fn matches(&self, san: &str) -> bool {
        match self {
            IdentityMatch::Exact(s) => s == san,
            IdentityMatch::Regexp(re) => re.is_match(san),
        }
    }
}

/// What a keyless bundle proved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeylessSigner {
    /// The certificate's SAN.
    pub identity: String,
    /// Its OIDC issuer.
    pub issuer: String,
    /// The Rekor log index.
    pub log_index: u64,
    /// The verified signing time (POSIX seconds).
    pub signed_at: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BundleIn {
    media_type: String,
    verification_material: MaterialIn,
    dsse_envelope: EnvelopeIn,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MaterialIn {
    certificate: Option<Raw>,
    #[serde(default)]
    tlog_entries: Vec<EntryIn>,
    timestamp_verification_data: Option<TimestampDataIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TimestampDataIn {
    #[serde(default)]
    rfc3161_timestamps: Vec<SignedTimestampIn>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignedTimestampIn {
    signed_timestamp: String,
}

/// The most RFC 3161 timestamps a bundle may carry (the reference's bound).
const TIMESTAMPS_MAX: usize = 32;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Raw {
    raw_bytes: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvelopeIn {
    payload: String,
    payload_type: String,
    signatures: Vec<SigIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SigIn {
    sig: String,
    // Named so that deny_unknown_fields takes it; a Fulcio key has no id to check.
    #[serde(default, rename = "keyid")]
    _keyid: serde::de::IgnoredAny,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EntryIn {
    log_index: String,
    log_id: KeyIdIn,
    kind_version: KindVersion,
    integrated_time: Option<String>,
    inclusion_promise: Option<PromiseIn>,
    inclusion_proof: Option<ProofIn>,
    canonicalized_body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyIdIn {
    key_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KindVersion {
    kind: String,
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PromiseIn {
    signed_entry_timestamp: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProofIn {
    log_index: String,
    root_hash: String,
    tree_size: String,
    hashes: Vec<String>,
    checkpoint: Option<CheckpointIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckpointIn {
    envelope: String,
}

fn b64(s: &str, check: Check, what: &str) -> Result<Vec<u8>, KeylessError> {
    B64.decode(s).or_else(|_| fail(check, format!("{what} is not base64")))
}

fn number(s: &str, check: Check, what: &str) -> Result<u64, KeylessError> {
    s.parse()
        .or_else(|_| fail(check, format!("{what} {s:?} is not a number")))
}

/// Verify a keyless bundle offline: every check of [`Check`], in order.
/// On success, the DSSE payload (the OMS statement) and who signed it.
pub fn verify_keyless(
    bundle_json: &[u8],
    root: &TrustedRoot,
    expected: &Identity,
) -> Result<(Vec<u8>, String, KeylessSigner), KeylessError> {
    let b: BundleIn = serde_json::from_slice(bundle_json)
        .or_else(|e| fail(Check::Bundle, format!("not a Sigstore bundle v0.3: {e}")))?;
    if !KEYLESS_MEDIA_TYPES.contains(&b.media_type.as_str()) {
        return fail(
            Check::Bundle,
            format!("media type {:?} is not a bundle v0.3", b.media_type),
        );
    }
    let leaf_der = match &b.verification_material.certificate {
        Some(c) => b64(&c.raw_bytes, Check::Bundle, "the certificate")?,
        None => return fail(Check::Bundle, "no signing certificate"),
    };
    let [entry] = &b.verification_material.tlog_entries[..] else {
        return fail(Check::Bundle, "a keyless bundle carries exactly one log entry");
    };
    let [sig] = &b.dsse_envelope.signatures[..] else {
        return fail(Check::Bundle, "the envelope must carry exactly one signature");
    };
    let payload = b64(&b.dsse_envelope.payload, Check::Bundle, "the payload")?;
    let signature = b64(&sig.sig, Check::Bundle, "the signature")?;
    let leaf = Cert::parse(&leaf_der, "signing certificate").or_else(|e| fail(Check::Bundle, e))?;

    let body = b64(&entry.canonicalized_body, Check::LogEntry, "canonicalizedBody")?;
    let stamps = b
        .verification_material
        .timestamp_verification_data
        .as_ref()
        .map_or(&[][..], |d| &d.rfc3161_timestamps[..]);
    let times = signing_times(entry, &body, stamps, &signature, root)?;
    // The log's own time when it has one, else the first timestamp's; the
    // chain must hold at every verified time, as the reference requires:
    // the path found at the first holds at another if each certificate on
    // it is valid then, else another path is looked for.
    let (signed_at, later) = times.split_first().ok_or_else(|| KeylessError {
        check: Check::SigningTime,
        message: "no verified signing time".into(),
    })?;
    let signed_at = *signed_at;
    let cas = root.ca_certificates(signed_at);
    let (key, path) = chain(&leaf, &cas, signed_at)?;
    for &t in later {
        let (pool, anchors) = root.ca_certificates(t);
        if !crate::x509::path_holds_at(&path, &pool, &anchors, t) {
            chain(&leaf, &(pool, anchors), t)?;
        }
    }
    usage(&leaf)?;
    let (identity, issuer) = identity(&leaf, expected)?;
    sct(&leaf, &cas, root)?;
    let pae = crate::pae_typed(&b.dsse_envelope.payload_type, &payload);
    log_entry(entry, &body, &payload, &pae, &signature, &leaf_der, &key)?;
    inclusion(entry, &body, root, signed_at)?;
    if !key.verify(&pae, &signature) {
        return fail(
            Check::Signature,
            "the DSSE signature does not verify with the certificate's key",
        );
    }
    let signer = KeylessSigner {
        identity,
        issuer,
        log_index: number(&entry.log_index, Check::LogEntry, "logIndex")?,
        signed_at,
    };
    Ok((payload, b.dsse_envelope.payload_type, signer))
}

/// The verified signing times: the Rekor v1 integrated time once the SET
/// over it verifies with the log's key, then each RFC 3161 timestamp's.
/// Rekor v2 entries have no integrated time: a timestamp is then required.
fn signing_times(
    entry: &EntryIn,
    body: &[u8],
    stamps: &[SignedTimestampIn],
    signature: &[u8],
    root: &TrustedRoot,
) -> Result<Vec<u64>, KeylessError> {
    let mut times = Vec::new();
    let integrated = match entry.integrated_time.as_deref() {
        None | Some("0") => None,
        Some(t) => Some(number(t, Check::SigningTime, "integratedTime")?),
    };
    if let (Some(t), Some(promise)) = (integrated, &entry.inclusion_promise) {
        if (entry.kind_version.kind.as_str(), entry.kind_version.version.as_str()) != ("dsse", "0.0.1") {
            return fail(
                Check::SigningTime,
                format!(
                    "an integrated time is only signed for Rekor v1 entries, not {}/{}",
                    entry.kind_version.kind, entry.kind_version.version
                ),
            );
        }
        times.push(set_time(entry, t, &promise.signed_entry_timestamp, body, root)?);
    }
    if stamps.len() > TIMESTAMPS_MAX {
        return fail(
            Check::Timestamp,
            format!("{} timestamps; at most {TIMESTAMPS_MAX} are read", stamps.len()),
        );
    }
    for (i, s) in stamps.iter().enumerate() {
        if stamps[..i].contains(s) {
            return fail(Check::Timestamp, format!("timestamp {} is a duplicate", i + 1));
        }
        let der = b64(&s.signed_timestamp, Check::Timestamp, "a signed timestamp")?;
        let t = crate::rfc3161::verify(&der, signature, root)
            .or_else(|e| fail(Check::Timestamp, format!("timestamp {}: {e}", i + 1)))?;
        times.push(t);
    }
    if times.is_empty() {
        return fail(
            Check::SigningTime,
            "no verified signing time: neither an integrated time under a signed entry timestamp nor an RFC 3161 timestamp",
        );
    }
    Ok(times)
}

/// The integrated time `t`, once the SET over it verifies with the log's key.
fn set_time(entry: &EntryIn, t: u64, set: &str, body: &[u8], root: &TrustedRoot) -> Result<u64, KeylessError> {
    let log_id = b64(&entry.log_id.key_id, Check::SigningTime, "logId")?;
    let log = root
        .tlog(&log_id, t)
        .or_else(|why| fail(Check::SigningTime, format!("the entry's log: {why}")))?;
    // The SET signs RFC 8785 JSON of these four fields, keys sorted.
    let set_payload = format!(
        "{{\"body\":\"{}\",\"integratedTime\":{t},\"logID\":\"{}\",\"logIndex\":{}}}",
        B64.encode(body),
        hex::encode(&log_id),
        number(&entry.log_index, Check::SigningTime, "logIndex")?
    );
    let set = b64(set, Check::SigningTime, "the SET")?;
    if !log.verify_pure(set_payload.as_bytes(), &set) {
        return fail(
            Check::SigningTime,
            "the signed entry timestamp does not verify with the log's key",
        );
    }
    Ok(t)
}

/// The CAs' certificates valid at the signing time: intermediates, roots.
type CaCertificates = (Vec<Vec<u8>>, Vec<Vec<u8>>);

fn chain(leaf: &Cert, (pool, anchors): &CaCertificates, t: u64) -> Result<(PublicKey, Vec<Vec<u8>>), KeylessError> {
    if anchors.is_empty() {
        return fail(
            Check::Chain,
            "no certificate authority of the trusted root is valid at the signing time",
        );
    }
    crate::x509::verify_chain_path_at(&leaf.der, pool, anchors, Some(t)).or_else(|e| fail(Check::Chain, e))
}

fn usage(leaf: &Cert) -> Result<(), KeylessError> {
    let ku: Option<KeyUsage> = leaf.extension(ID_CE_KEY_USAGE).or_else(|e| fail(Check::Usage, e))?;
    if !ku.is_some_and(|k| k.0.contains(KeyUsages::DigitalSignature)) {
        return fail(Check::Usage, "the certificate's key usage is not digitalSignature");
    }
    let eku: Option<ExtendedKeyUsage> = leaf.extension(ID_CE_EXT_KEY_USAGE).or_else(|e| fail(Check::Usage, e))?;
    if !eku.is_some_and(|e| e.0.contains(&ID_KP_CODE_SIGNING)) {
        return fail(
            Check::Usage,
            "the certificate's extended key usage does not include codeSigning",
        );
    }
    Ok(())
}

fn identity(leaf: &Cert, expected: &Identity) -> Result<(String, String), KeylessError> {
    let san: Option<SubjectAltName> = leaf
        .extension(ID_CE_SUBJECT_ALT_NAME)
        .or_else(|e| fail(Check::Identity, e))?;
    let names: Vec<String> = san
        .map(|s| s.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| match n {
            GeneralName::Rfc822Name(s) => Some(s.to_string()),
            GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
            GeneralName::OtherName(o) => o
                .value
                .decode_as::<der::asn1::Utf8StringRef<'_>>()
                .ok()
                .map(|s| s.to_string()),
            _ => None,
        })
        .collect();
    let Some(found) = names.iter().find(|n| expected.identity.matches(n)) else {
        return fail(
            Check::Identity,
            format!("the certificate names {names:?}, not the expected identity"),
        );
    };
    let issuer = oidc_issuer(leaf)?;
    if issuer != expected.issuer {
        return fail(
            Check::Identity,
            format!("the certificate's OIDC issuer is {issuer:?}, not {:?}", expected.issuer),
        );
    }
    Ok((found.clone(), issuer))
}

/// The OIDC issuer: the DER UTF8String of 1.3.6.1.4.1.57264.1.8, or the
/// raw bytes of the deprecated 1.3.6.1.4.1.57264.1.1.
fn oidc_issuer(leaf: &Cert) -> Result<String, KeylessError> {
    let exts = leaf.cert.tbs_certificate.extensions.iter().flatten();
    let mut v2 = None;
    let mut v1 = None;
    for e in exts {
        if e.extn_id == OIDC_ISSUER_V2 {
            let s = der::asn1::Utf8StringRef::from_der(e.extn_value.as_bytes())
                .or_else(|e| fail(Check::Identity, format!("the OIDC issuer extension: {e}")))?;
            v2 = Some(s.to_string());
        } else if e.extn_id == OIDC_ISSUER_V1 {
            v1 = Some(
                String::from_utf8(e.extn_value.as_bytes().to_vec())
                    .or_else(|_| fail(Check::Identity, "the OIDC issuer extension is not UTF-8"))?,
            );
        }
    }
    match (v2, v1) {
        (Some(a), Some(b)) if a != b => fail(Check::Identity, "the two OIDC issuer extensions disagree"),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => fail(Check::Identity, "the certificate has no OIDC issuer extension"),
    }
}

fn sct(leaf: &Cert, cas: &CaCertificates, root: &TrustedRoot) -> Result<(), KeylessError> {
    let mut tbs = leaf.cert.tbs_certificate.clone();
    let exts = tbs.extensions.take().unwrap_or_default();
    let (list, rest): (Vec<_>, Vec<_>) = exts.into_iter().partition(|e| e.extn_id == SCT_LIST);
    let [list] = &list[..] else {
        return fail(Check::Sct, "the certificate carries no single embedded SCT list");
    };
    tbs.extensions = Some(rest);
    let precert = tbs.to_der().or_else(|e| fail(Check::Sct, e.to_string()))?;
    let lst = der::asn1::OctetStringRef::from_der(list.extn_value.as_bytes())
        .or_else(|e| fail(Check::Sct, format!("the SCT list: {e}")))?;
    let sct = one_sct(lst.as_bytes()).ok_or_else(|| KeylessError {
        check: Check::Sct,
        message: "the SCT list must hold exactly one well-formed SCT".into(),
    })?;
    let issuer_spki = issuer_spki(leaf, cas)?;
    let issuer_key_hash = Sha256::digest(&issuer_spki);
    let mut signed = vec![0u8, 0u8];
    signed.extend_from_slice(&sct.timestamp.to_be_bytes());
    signed.extend_from_slice(&1u16.to_be_bytes());
    signed.extend_from_slice(&issuer_key_hash);
    let len = u32::try_from(precert.len()).or_else(|_| fail(Check::Sct, "certificate too large"))?;
    signed.extend_from_slice(&len.to_be_bytes()[1..]);
    signed.extend_from_slice(&precert);
    signed.extend_from_slice(&(sct.extensions.len() as u16).to_be_bytes());
    signed.extend_from_slice(sct.extensions);
    let log = root
        .ctlog(sct.log_id, sct.timestamp / 1000)
        .or_else(|why| fail(Check::Sct, format!("the SCT's log: {why}")))?;
    if (sct.hash, sct.sig_alg) != (4, 3) {
        return fail(Check::Sct, "the SCT is not ECDSA with SHA-256");
    }
    if !log.verify(&signed, sct.signature) {
        return fail(Check::Sct, "the SCT's signature does not verify with the CT log's key");
    }
    Ok(())
}

/// The SPKI of the CA that issued `leaf` (a certificate of the trusted root).
fn issuer_spki(leaf: &Cert, (pool, anchors): &CaCertificates) -> Result<Vec<u8>, KeylessError> {
    for der in pool.iter().chain(anchors) {
        let Ok(c) = x509_cert::Certificate::from_der(der) else {
            continue;
        };
        if c.tbs_certificate.subject == leaf.cert.tbs_certificate.issuer {
            return c
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .or_else(|e| fail(Check::Sct, e.to_string()));
        }
    }
    fail(Check::Sct, "the certificate's issuer is not in the trusted root")
}

struct Sct<'a> {
    log_id: &'a [u8],
    timestamp: u64,
    extensions: &'a [u8],
    hash: u8,
    sig_alg: u8,
    signature: &'a [u8],
}

/// The one SCT of an RFC 6962 `SignedCertificateTimestampList`.
fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (h, t) = (b.get(..n)?, b.get(n..)?);
    *b = t;
    Some(h)
}

fn one_sct(b: &[u8]) -> Option<Sct<'_>> {
    let u16_at = |s: &[u8]| usize::from(u16::from_be_bytes([s[0], s[1]]));
    let mut b = b;
    let total = u16_at(take(&mut b, 2)?);
    if total != b.len() {
        return None;
    }
    let n = u16_at(take(&mut b, 2)?);
    let mut s = take(&mut b, n)?;
    if !b.is_empty() || take(&mut s, 1)? != [0] {
        return None;
    }
    let log_id = take(&mut s, 32)?;
    let timestamp = u64::from_be_bytes(take(&mut s, 8)?.try_into().ok()?);
    let ext_len = u16_at(take(&mut s, 2)?);
    let extensions = take(&mut s, ext_len)?;
    let alg = take(&mut s, 2)?;
    let sig_len = u16_at(take(&mut s, 2)?);
    let signature = take(&mut s, sig_len)?;
    s.is_empty().then_some(Sct {
        log_id,
        timestamp,
        extensions,
        hash: alg[0],
        sig_alg: alg[1],
        signature,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DsseBody {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: DsseSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DsseSpec {
    // The envelope hash covers uncanonicalized JSON, which cannot be
    // recomputed (the reference does not check it either): payload hash and
    // signatures are checked instead.
    #[serde(rename = "envelopeHash")]
    _envelope_hash: HashIn,
    payload_hash: HashIn,
    signatures: Vec<BodySig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HashIn {
    algorithm: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BodySig {
    signature: String,
    verifier: String,
}

/// The entry's body, in the kind the reference writes a DSSE envelope as:
/// `dsse` 0.0.1 on Rekor v1, `hashedrekord` 0.0.2 on Rekor v2. Other kinds
/// (`intoto`, which cosign writes) are refused, as the reference refuses them.
fn log_entry(
    entry: &EntryIn,
    body: &[u8],
    payload: &[u8],
    pae: &[u8],
    sig: &[u8],
    leaf_der: &[u8],
    key: &PublicKey,
) -> Result<(), KeylessError> {
    match (entry.kind_version.kind.as_str(), entry.kind_version.version.as_str()) {
        ("dsse", "0.0.1") => dsse_v001(entry, body, payload, sig, leaf_der),
        ("hashedrekord", "0.0.2") => hashedrekord_v002(body, pae, sig, leaf_der, key),
        (kind, version) => fail(
            Check::LogEntry,
            format!("log entries of kind {kind}/{version} are not ones a DSSE envelope is recorded as"),
        ),
    }
}

/// The `dsse` 0.0.1 body as Rekor v1 canonicalized it: this payload's
/// hash, and exactly this signature by exactly this certificate.
fn dsse_v001(entry: &EntryIn, body: &[u8], payload: &[u8], sig: &[u8], leaf_der: &[u8]) -> Result<(), KeylessError> {
    let d: DsseBody =
        serde_json::from_slice(body).or_else(|e| fail(Check::LogEntry, format!("not a dsse 0.0.1 entry body: {e}")))?;
    if (d.kind.as_str(), d.api_version.as_str())
        != (entry.kind_version.kind.as_str(), entry.kind_version.version.as_str())
    {
        return fail(Check::LogEntry, "the entry body's kind is not the entry's kindVersion");
    }
    if d.spec.payload_hash.algorithm != "sha256" || d.spec.payload_hash.value != hex::encode(Sha256::digest(payload)) {
        return fail(Check::LogEntry, "the entry's payload hash is not this payload's");
    }
    let [s] = &d.spec.signatures[..] else {
        return fail(Check::LogEntry, "the entry must record exactly one signature");
    };
    if B64.decode(&s.signature).ok().as_deref() != Some(sig) {
        return fail(Check::LogEntry, "the entry's signature is not the envelope's");
    }
    let pem = B64
        .decode(&s.verifier)
        .ok()
        .and_then(|p| String::from_utf8(p).ok())
        .and_then(|p| crate::keys::pem_certificates(&p).ok());
    if pem.as_deref() != Some(&[leaf_der.to_vec()][..]) {
        return fail(Check::LogEntry, "the entry's verifier is not the bundle's certificate");
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct V2Body {
    kind: String,
    api_version: String,
    spec: V2Spec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct V2Spec {
    hashed_rekord_v002: HashedRekordV002,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HashedRekordV002 {
    data: V2Hash,
    signature: V2Signature,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct V2Hash {
    algorithm: String,
    digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct V2Signature {
    content: String,
    verifier: V2Verifier,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct V2Verifier {
    x509_certificate: Raw,
    key_details: String,
}

/// The `hashedrekord` 0.0.2 body Rekor v2 records a DSSE envelope as
/// (rekor-v2 spec 6.1.4): the digest of PAE(payloadType, payload) under the
/// hash of the leaf key's algorithm, this signature, this certificate.
fn hashedrekord_v002(
    body: &[u8],
    pae: &[u8],
    sig: &[u8],
    leaf_der: &[u8],
    key: &PublicKey,
) -> Result<(), KeylessError> {
    let d: V2Body = serde_json::from_slice(body)
        .or_else(|e| fail(Check::LogEntry, format!("not a hashedrekord 0.0.2 entry body: {e}")))?;
    if (d.kind.as_str(), d.api_version.as_str()) != ("hashedrekord", "0.0.2") {
        return fail(Check::LogEntry, "the entry body's kind is not the entry's kindVersion");
    }
    let (details, algorithm, hash) = match key {
        PublicKey::P256(_) => ("PKIX_ECDSA_P256_SHA_256", "SHA2_256", EcdsaDigest::Sha256),
        PublicKey::P384(_) => ("PKIX_ECDSA_P384_SHA_384", "SHA2_384", EcdsaDigest::Sha384),
        PublicKey::P521(_) => ("PKIX_ECDSA_P521_SHA_512", "SHA2_512", EcdsaDigest::Sha512),
        _ => return fail(Check::LogEntry, "the certificate's key is not one Rekor v2 records"),
    };
    let digest = hash.digest(pae);
    let h = &d.spec.hashed_rekord_v002;
    if h.data.algorithm != algorithm || B64.decode(&h.data.digest).ok() != Some(digest) {
        return fail(Check::LogEntry, "the entry's digest is not this envelope's");
    }
    if B64.decode(&h.signature.content).ok().as_deref() != Some(sig) {
        return fail(Check::LogEntry, "the entry's signature is not the envelope's");
    }
    let v = &h.signature.verifier;
    if v.key_details != details || B64.decode(&v.x509_certificate.raw_bytes).ok().as_deref() != Some(leaf_der) {
        return fail(Check::LogEntry, "the entry's verifier is not the bundle's certificate");
    }
    Ok(())
}

/// The inclusion proof, folded to its root, which the checkpoint (signed
/// by the entry's log, at the proof's tree size) must name.
fn inclusion(entry: &EntryIn, body: &[u8], root: &TrustedRoot, t: u64) -> Result<(), KeylessError> {
    let Some(p) = &entry.inclusion_proof else {
        return fail(Check::Inclusion, "no inclusion proof");
    };
    let index = number(&p.log_index, Check::Inclusion, "inclusionProof.logIndex")?;
    // A Rekor v1 entry's index is global over the log's shards and its
    // proof's is the shard's (the SET binds the first); Rekor v2 has one
    // index, which nothing else binds, so the two must be one.
    if entry.inclusion_promise.is_none() && number(&entry.log_index, Check::Inclusion, "logIndex")? != index {
        return fail(Check::Inclusion, "the entry's log index is not its inclusion proof's");
    }
    let size = number(&p.tree_size, Check::Inclusion, "treeSize")?;
    let root_hash = b64(&p.root_hash, Check::Inclusion, "rootHash")?;
    let hashes = p
        .hashes
        .iter()
        .map(|h| {
            b64(h, Check::Inclusion, "a proof hash")?
                .try_into()
                .or_else(|_| fail(Check::Inclusion, "a proof hash is not 32 bytes"))
        })
        .collect::<Result<Vec<[u8; 32]>, _>>()?;
    let leaf = modelgate_tlog::leaf_hash(body);
    let folded = modelgate_tlog::root_from_inclusion_proof(&leaf, index, size, &hashes)
        .or_else(|e| fail(Check::Inclusion, format!("the inclusion proof: {e}")))?;
    if folded[..] != root_hash[..] {
        return fail(Check::Inclusion, "the inclusion proof does not fold to its root hash");
    }
    let Some(cp) = &p.checkpoint else {
        return fail(Check::Inclusion, "no checkpoint");
    };
    let log_id = b64(&entry.log_id.key_id, Check::Inclusion, "logId")?;
    let log = root
        .tlog(&log_id, t)
        .or_else(|why| fail(Check::Inclusion, format!("the entry's log: {why}")))?;
    let (cp_size, cp_root) = checkpoint(&cp.envelope, &log_id, log)?;
    if cp_size != size || cp_root != root_hash {
        return fail(
            Check::Inclusion,
            format!("the checkpoint is of size {cp_size} and another root; the proof is for size {size}"),
        );
    }
    Ok(())
}

/// A Rekor checkpoint (a signed note): its size and root, once a signature
/// whose key hint is the log id's first four bytes verifies with the log's key.
fn checkpoint(text: &str, log_id: &[u8], key: &PublicKey) -> Result<(u64, Vec<u8>), KeylessError> {
    let bad = |m: &str| fail::<(u64, Vec<u8>)>(Check::Inclusion, format!("the checkpoint: {m}"));
    let Some((note, sigs)) = text.split_once("\n\n") else {
        return bad("not a signed note");
    };
    let note = format!("{note}\n");
    let mut lines = note.lines();
    let (_origin, size, root) = (lines.next(), lines.next(), lines.next());
    let (Some(size), Some(root)) = (size.and_then(|s| s.parse().ok()), root.and_then(|r| B64.decode(r).ok())) else {
        return bad("no size and root");
    };
    for line in sigs.lines() {
        let Some(sig) = line.strip_prefix("\u{2014} ").and_then(|l| l.split(' ').nth(1)) else {
            return bad("a malformed signature line");
        };
        let Ok(sig) = B64.decode(sig) else {
            return bad("a signature is not base64");
        };
        if sig.len() > 4 && sig[..4] == log_id[..4] {
            if key.verify_pure(note.as_bytes(), &sig[4..]) {
                return Ok((size, root));
            }
            return bad("the log's signature does not verify");
        }
    }
    bad("no signature by the entry's log")
}
