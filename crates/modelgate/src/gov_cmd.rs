//! Governance commands: build an entry, gather signatures, submit it to an
//! authority; and administer the trust root with the offline root keys.
//!
//! Several signers, one entry: `modelgate approve … --key A --out x.dsse.json`
//! writes a signed entry without submitting it; each further approver runs
//! `modelgate cosign x.dsse.json --key B` (which shows what they sign); then
//! `modelgate submit x.dsse.json`. With `--authority` and no `--out`, a
//! single-signer command submits at once.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use clap::Args;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use modelgate_governance::{
    to_canonical, ApprovalEntry, EntryPayload, Envelope, ExceptionEntry, ModelEntry, PolicySetEntry, RevocationEntry,
    RiskTier,
};
use serde_json::Value;

use crate::oms_cmd::read_limited;
use crate::Failure;

fn usage(m: impl Into<String>) -> Failure {
    Failure::Usage(m.into())
}

/// Where to submit, and with which token.
#[derive(Args, Clone)]
pub struct Remote {
    /// The authority's base URL.
    #[arg(long, value_name = "URL", env = "MODELGATE_AUTHORITY")]
    authority: Option<String>,
    /// A write-API token (see `modelgate authority token create`).
    #[arg(long, value_name = "TOKEN", env = "MODELGATE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Sign with, and where to put the result.
#[derive(Args, Clone)]
pub struct Signing {
    /// Governance key: Ed25519 PKCS#8 PEM (from `modelgate keygen
    /// --algorithm ed25519`) or a `pkcs11:` URI naming an Ed25519 key on a
    /// token (see docs/keys.md).
    #[arg(long, value_name = "KEY|URI")]
    key: PathBuf,
    /// Write the signed entry here instead of submitting it (others can
    /// `modelgate cosign` it before `modelgate submit`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    remote: Remote,
}

/// The authority named on the command line, with the token.
fn client(remote: &Remote) -> Result<modelgate_authority::client::Client, Failure> {
    let base = remote
        .authority
        .as_deref()
        .ok_or_else(|| usage("give --authority URL (or MODELGATE_AUTHORITY)"))?;
    Ok(modelgate_authority::client::Client::new(base, remote.token.as_deref()))
}

/// A client's failure as the command's: a refusal of what was sent is a
/// verification failure (exit 1), anything else a usage one (exit 2).
fn failure(e: modelgate_authority::client::ClientError) -> Failure {
    if e.is_decision() {
        Failure::Invalid(e.to_string())
    } else {
        Failure::Usage(e.to_string())
    }
}

/// GET `path` from the authority; the body on 200.
pub fn get(remote: &Remote, path: &str) -> Result<Vec<u8>, Failure> {
    client(remote)?.get(path).map_err(|e| match e {
        // A read that is refused: the authority's answer is the verdict.
        e @ modelgate_authority::client::ClientError::Refused { .. } => Failure::Invalid(e.to_string()),
        e => Failure::Usage(e.to_string()),
    })
}

/// POST `entry` to the authority's `path` with the token (required).
fn post_entry(remote: &Remote, path: &str, entry: &[u8]) -> Result<(u16, Value), Failure> {
    if remote.token.is_none() {
        return Err(usage("give --token (or MODELGATE_TOKEN)"));
    }
    client(remote)?.post(path, entry).map_err(failure)
}

pub fn submit_bytes(remote: &Remote, entry: &[u8]) -> Result<(), Failure> {
    let (_, v) = post_entry(remote, "/api/v1/entries", entry)?;
    println!("accepted at index {}", v["index"]);
    Ok(())
}

/// A key on a token: its URI as messages show it (no PIN), and the key.
pub type TokenKey = (String, Arc<dyn modelgate_signer::Signer>);

/// The key on a token that `path` names when it is a `pkcs11:` URI; `None`
/// for a file.
pub fn token_key(path: &Path) -> Result<Option<TokenKey>, Failure> {
    let Some(uri) = path.to_str().filter(|p| modelgate_signer::uri::Pkcs11Uri::is(p)) else {
        return Ok(None);
    };
    let key = modelgate_signer::open_token(uri, None).map_err(|e| usage(e.to_string()))?;
    Ok(Some((modelgate_signer::uri::Pkcs11Uri::redacted(uri), key)))
}

/// A governance key: an Ed25519 PKCS#8 PEM file, or a `pkcs11:` URI
/// naming an Ed25519 key on a token.
pub fn load_key(path: &Path) -> Result<Arc<dyn modelgate_signer::Signer>, Failure> {
    if let Some((shown, key)) = token_key(path)? {
        modelgate_signer::ed25519_public(key.as_ref()).map_err(|e| usage(format!("{shown}: {e}")))?;
        return Ok(key);
    }
    let pem = String::from_utf8(read_limited(path, 64 * 1024, "key")?)
        .map_err(|_| usage(format!("{} is not a PEM file", path.display())))?;
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        usage(format!(
            "{}: not an Ed25519 PKCS#8 private key ({e}); make one with `modelgate keygen --algorithm ed25519`",
            path.display()
        ))
    })?;
    Ok(Arc::new(key))
}

/// Sign `payload`, then write it to `--out` or submit it.
pub fn finish(payload: &impl EntryPayload, s: &Signing) -> Result<(), Failure> {
    let key = load_key(&s.key)?;
    let entry = payload.sign(&[key.as_ref()]).map_err(|e| usage(e.to_string()))?;
    match &s.out {
        Some(out) => {
            crate::oms_cmd::write_new(out, &entry, 0o644, false)?;
            eprintln!(
                "wrote the signed entry to {}; others may `modelgate cosign` it, then `modelgate submit` it",
                out.display()
            );
            Ok(())
        }
        None => submit_bytes(&s.remote, &entry),
    }
}

/// POSIX seconds, a UTC date and time, or `+N[smhd]` from now.
fn parse_time(s: &str) -> Result<u64, Failure> {
    modelgate_governance::time::parse_when(s, modelgate_governance::time::now()).ok_or_else(|| {
        usage(format!(
            "time {s:?}: give POSIX seconds, a UTC date (2027-03-01T12:00), or +N followed by s, m, h or d (e.g. +90d)"
        ))
    })
}

#[derive(Args)]
pub struct ApproveArgs {
    /// The model's root digest (`modelgate digest MODEL`).
    digest: String,
    /// Scope pattern granted (repeat): `prod/credit/*`, `prod/credit/scoring`, `*`.
    #[arg(long = "scope", value_name = "PATTERN", required = true)]
    scopes: Vec<String>,
    /// Valid from (POSIX seconds or +N[smhd]); default now.
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Valid until (POSIX seconds or +N[smhd], e.g. +90d).
    #[arg(long, value_name = "TIME")]
    until: String,
    /// Risk tier: low, medium, high, critical (sets how many approvers must sign).
    #[arg(long, value_name = "TIER")]
    tier: String,
    /// Change or risk ticket.
    #[arg(long, value_name = "TICKET")]
    ticket: String,
    #[command(flatten)]
    signing: Signing,
}

pub fn approve(a: ApproveArgs) -> Result<(), Failure> {
    let from = parse_time(a.from.as_deref().unwrap_or("+0s"))?;
    let p = ApprovalEntry::new(
        &a.digest,
        a.scopes,
        from,
        parse_time(&a.until)?,
        tier(&a.tier)?,
        &a.ticket,
    );
    finish(&p, &a.signing)
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The model's root digest.
    digest: String,
    /// Why.
    #[arg(long)]
    reason: String,
    /// Incident or change ticket.
    #[arg(long)]
    ticket: String,
    #[command(flatten)]
    signing: Signing,
}

#[derive(Args)]
pub struct ExceptionArgs {
    /// The model's root digest.
    digest: String,
    /// Scope pattern it may run in without an approval (repeat).
    #[arg(long = "scope", value_name = "PATTERN", required = true)]
    scopes: Vec<String>,
    /// When the exception ends (POSIX seconds or +N[smhd], e.g. +7d); mandatory.
    #[arg(long, value_name = "TIME")]
    expires: String,
    /// Risk tier the model runs under meanwhile (low, medium, high, critical).
    #[arg(long, value_name = "TIER")]
    tier: String,
    /// Change or risk ticket; mandatory.
    #[arg(long)]
    ticket: String,
    /// Why the exception is granted.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    signing: Signing,
}

fn tier(t: &str) -> Result<RiskTier, Failure> {
    RiskTier::parse(t).ok_or_else(|| usage(format!("--tier {t:?}: one of low, medium, high, critical")))
}

/// Grant a time-bounded exception: the model may run in the scopes
/// without an approval until it expires (approvers sign it, as many as the
/// trust root's `exception` threshold; no signer of the model may).
pub fn exception(a: ExceptionArgs) -> Result<(), Failure> {
    let expires = parse_time(&a.expires)?;
    let p = ExceptionEntry::new(&a.digest, a.scopes, expires, tier(&a.tier)?, &a.ticket, &a.reason);
    finish(&p, &a.signing)
}

pub fn revoke(a: RevokeArgs) -> Result<(), Failure> {
    finish(&RevocationEntry::new(&a.digest, &a.reason, &a.ticket), &a.signing)
}

#[derive(Args)]
pub struct PolicyArgs {
    /// The Cedar policy file.
    file: PathBuf,
    /// A name for the set.
    #[arg(long, default_value = "policies")]
    name: String,
    /// The id of the policy set in force that this one replaces (`none` for
    /// the log's first). Asked of the authority when not given; the fold
    /// accepts a policy set only when this names the set in force, so an
    /// older set cannot be put back by submitting it again.
    #[arg(long, value_name = "ID|none")]
    replaces: Option<String>,
    #[command(flatten)]
    signing: Signing,
}

pub fn policy_publish(a: PolicyArgs) -> Result<(), Failure> {
    let text = String::from_utf8(read_limited(&a.file, 60 * 1024, "policy file")?)
        .map_err(|_| usage(format!("{} is not UTF-8 text", a.file.display())))?;
    modelgate_governance::policy::compile(&text).map_err(|e| Failure::Invalid(format!("{}: {e}", a.file.display())))?;
    let replaces = match a.replaces.as_deref() {
        Some(id) => modelgate_governance::policy::parse_replaces(id).ok_or_else(|| {
            usage(format!(
                "--replaces {id:?} is neither a policy set id (64 hex digits) nor none"
            ))
        })?,
        None => {
            if a.signing.remote.authority.is_none() {
                return Err(usage(
                    "give --replaces ID (or none for the first policy set), or --authority to ask it for the set in force",
                ));
            }
            let v: Value = serde_json::from_slice(&get(&a.signing.remote, "/api/v1/policy")?)
                .map_err(|e| Failure::Invalid(format!("the authority's /api/v1/policy: {e}")))?;
            v["id"].as_str().unwrap_or_default().to_owned()
        }
    };
    finish(&PolicySetEntry::new(&a.name, &text, &replaces), &a.signing)
}

#[derive(Args)]
pub struct RegisterArgs {
    /// The model directory or file.
    model: PathBuf,
    /// Its OMS signature (default: MODEL/model.sig, or MODEL.sig for a file).
    #[arg(long, value_name = "FILE")]
    signature: Option<PathBuf>,
    /// Model name.
    #[arg(long)]
    name: String,
    /// Model version.
    #[arg(long = "model-version", value_name = "VERSION")]
    model_version: String,
    #[command(flatten)]
    signing: Signing,
}

pub fn register(a: RegisterArgs) -> Result<(), Failure> {
    let sig = a
        .signature
        .clone()
        .unwrap_or_else(|| modelgate_oms::default_signature(&a.model));
    let bundle = read_limited(&sig, modelgate_oms::BUNDLE_BYTES_MAX, "signature")?;
    finish(&ModelEntry::new(&a.name, &a.model_version, &bundle), &a.signing)
}

#[derive(Args)]
pub struct CosignArgs {
    /// A signed entry file (from `--out`), signed again in place.
    file: PathBuf,
    /// Governance key: Ed25519 PKCS#8 PEM or a `pkcs11:` URI.
    #[arg(long, value_name = "KEY|URI")]
    key: PathBuf,
}

pub fn cosign(a: CosignArgs) -> Result<(), Failure> {
    let bytes = read_limited(&a.file, 1 << 20, "entry")?;
    let mut env = Envelope::parse(&bytes).map_err(|e| Failure::Invalid(format!("{}: {e}", a.file.display())))?;
    let payload: Value = serde_json::from_slice(&env.payload).map_err(|e| usage(e.to_string()))?;
    eprintln!(
        "signing this {} entry:\n{}",
        payload["type"].as_str().unwrap_or("?"),
        serde_json::to_string_pretty(&payload).unwrap_or_default()
    );
    env.add_signature(load_key(&a.key)?.as_ref())
        .map_err(|e| Failure::Invalid(e.to_string()))?;
    let out = env.to_bytes().map_err(|e| usage(e.to_string()))?;
    crate::oms_cmd::write_atomic(&a.file, &out)?;
    eprintln!("{} now carries {} signatures", a.file.display(), env.signatures.len());
    Ok(())
}

#[derive(Args)]
pub struct SubmitArgs {
    /// A signed entry file (`-` for standard input).
    file: PathBuf,
    /// An approval short of its threshold: leave it with the authority for
    /// cosigners (its signatures are pooled with every copy posted; once they
    /// meet the threshold it goes into the log). The console shows who signed.
    #[arg(long)]
    pending: bool,
    #[command(flatten)]
    remote: Remote,
}

pub fn submit(a: SubmitArgs) -> Result<(), Failure> {
    let bytes = crate::log_cmd::read_input(&a.file, 1 << 20, "entry")?;
    if a.pending {
        return submit_pending(&a.remote, &bytes);
    }
    submit_bytes(&a.remote, &bytes)
}

fn submit_pending(remote: &Remote, entry: &[u8]) -> Result<(), Failure> {
    let (status, v) = post_entry(remote, "/api/v1/pending", entry)?;
    println!("{}", modelgate_authority::client::describe_pending(status, &v));
    Ok(())
}

#[derive(Args)]
pub struct TrustEditArgs {
    /// Start from this trust-root document (JSON) instead of the authority's
    /// (the authority, from --authority or MODELGATE_AUTHORITY, is then not asked).
    #[arg(long, value_name = "FILE")]
    current: Option<PathBuf>,
    /// Fetch the trust root in force from this authority.
    #[arg(long, value_name = "URL", env = "MODELGATE_AUTHORITY")]
    authority: Option<String>,
    /// Write the next version's document here.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// --current is already a draft of the next version: edit it without
    /// bumping root_version (to make several changes, one command each).
    #[arg(long, requires = "current")]
    amend: bool,
    /// Add (or replace) a principal: ID.
    #[arg(long = "principal", value_name = "ID")]
    principal: Option<String>,
    /// Roles of --principal (repeat): root, approver, model-signer, policy-admin, node-admin, witness.
    #[arg(long = "role", value_name = "ROLE", requires = "principal")]
    roles: Vec<String>,
    /// Governance public key of --principal (Ed25519 SPKI PEM from
    /// `modelgate keygen`, or a `pkcs11:` URI: read from the token), repeatable.
    #[arg(long = "key", value_name = "PUB|URI", requires = "principal")]
    keys: Vec<PathBuf>,
    /// Model-signing public key of --principal (EC SPKI PEM, or a
    /// `pkcs11:` URI: read from the token), repeatable.
    #[arg(long = "model-key", value_name = "PUB|URI", requires = "principal")]
    model_keys: Vec<PathBuf>,
    /// Remove a principal (repeat).
    #[arg(long = "remove", value_name = "ID")]
    remove: Vec<String>,
    /// Set a threshold (repeat): root=2, model=1, approval.high=2, revocation=1, ...
    #[arg(long = "threshold", value_name = "NAME=N")]
    thresholds: Vec<String>,
    /// Add a witness cosigner key (C2SP vkey string).
    #[arg(long = "add-witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// Witnesses that must cosign each checkpoint.
    #[arg(long, value_name = "K")]
    witness_quorum: Option<u64>,
    /// Add a keyless (Sigstore) model signer to principal NAME (created as a
    /// model signer if absent): its certificates' --issuer and --identity.
    #[arg(long, value_name = "NAME", requires = "issuer")]
    add_keyless_signer: Option<String>,
    /// The keyless signer's OIDC issuer URL.
    #[arg(long, value_name = "URL", requires = "add_keyless_signer")]
    issuer: Option<String>,
    /// The keyless signer's identity (certificate SAN), exactly.
    #[arg(
        long,
        value_name = "ID",
        requires = "add_keyless_signer",
        conflicts_with = "identity_regexp"
    )]
    identity: Option<String>,
    /// Or an expression the whole SAN must match.
    #[arg(long, value_name = "RE", requires = "add_keyless_signer")]
    identity_regexp: Option<String>,
    /// The Sigstore TrustedRoot (or ClientTrustConfig) keyless signers are
    /// verified against, carried in the trust root (default: the embedded public-good one).
    #[arg(long, value_name = "FILE")]
    sigstore_root: Option<PathBuf>,
}

/// A public key's SPKI PEM, for the trust root: a file's text, or read
/// from the token a `pkcs11:` URI names.
fn pem_text(path: &Path) -> Result<String, Failure> {
    if let Some((shown, key)) = token_key(path)? {
        return modelgate_signer::public_key_pem(key.as_ref()).map_err(|e| usage(format!("{shown}: {e}")));
    }
    String::from_utf8(read_limited(path, 64 * 1024, "public key")?)
        .map_err(|_| usage(format!("{} is not PEM", path.display())))
}

pub fn trust_edit(a: TrustEditArgs) -> Result<(), Failure> {
    let doc: Value = match (&a.current, &a.authority) {
        (Some(f), _) => serde_json::from_slice(&read_limited(f, 1 << 20, "trust root")?)
            .map_err(|e| usage(format!("{}: {e}", f.display())))?,
        (None, Some(_)) => {
            let remote = Remote {
                authority: a.authority.clone(),
                token: None,
            };
            serde_json::from_slice(&get(&remote, "/api/v1/trust-root")?).map_err(|e| usage(e.to_string()))?
        }
        (None, None) => return Err(usage("give --current FILE or --authority URL")),
    };
    let principal = match &a.principal {
        Some(id) => Some(modelgate_governance::trust_edit::PrincipalEdit {
            id: id.clone(),
            roles: a.roles.clone(),
            keys: a.keys.iter().map(|k| pem_text(k)).collect::<Result<Vec<_>, _>>()?,
            model_keys: a
                .model_keys
                .iter()
                .map(|k| pem_text(k))
                .collect::<Result<Vec<_>, _>>()?,
        }),
        None => None,
    };
    let edit = modelgate_governance::trust_edit::TrustRootEdit {
        amend: a.amend,
        remove: a.remove.clone(),
        principal,
        thresholds: a.thresholds.clone(),
        witnesses: a.witnesses.clone(),
        witness_quorum: a.witness_quorum,
        keyless: a.add_keyless_signer.clone().map(|name| {
            let (identity, identity_regexp) = (a.identity.clone(), a.identity_regexp.clone());
            let issuer = a.issuer.clone().unwrap_or_default();
            (
                name,
                modelgate_governance::KeylessIdentity {
                    issuer,
                    identity,
                    identity_regexp,
                },
            )
        }),
        sigstore_root: match &a.sigstore_root {
            Some(f) => Some(
                serde_json::from_slice(&read_limited(f, 4 << 20, "Sigstore root")?)
                    .map_err(|e| usage(format!("{}: {e}", f.display())))?,
            ),
            None => None,
        },
    };
    // A draft that is not a valid trust root is a verdict; an edit that
    // does not apply is a usage error.
    let (doc, version) = modelgate_governance::trust_edit::edit_trust_root(doc, &edit).map_err(|e| match e {
        modelgate_governance::GovernanceError::Edit(m) => usage(m),
        e => Failure::Invalid(e.to_string()),
    })?;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| usage(e.to_string()))?;
    crate::oms_cmd::write_new(&a.out, format!("{text}\n").as_bytes(), 0o644, false)?;
    eprintln!("wrote trust root version {version} to {}; sign it with `modelgate trust sign` (threshold of the current AND the new root keys)", a.out.display());
    Ok(())
}

#[derive(Args)]
pub struct TrustSignArgs {
    /// The next trust-root document (JSON, from `modelgate trust edit`).
    doc: PathBuf,
    /// Root key(s) to sign with (repeat): Ed25519 PKCS#8 PEM files or
    /// `pkcs11:` URIs, each root key on its own token.
    #[arg(long = "key", value_name = "KEY|URI", required = true)]
    keys: Vec<PathBuf>,
    /// Write the signed entry here (then `modelgate cosign` for more root keys, `modelgate submit`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub fn trust_sign(a: TrustSignArgs) -> Result<(), Failure> {
    let doc: Value = serde_json::from_slice(&read_limited(&a.doc, 1 << 20, "trust root")?)
        .map_err(|e| usage(format!("{}: {e}", a.doc.display())))?;
    let keys = a.keys.iter().map(|k| load_key(k)).collect::<Result<Vec<_>, _>>()?;
    let bytes = to_canonical(&doc).map_err(|e| usage(e.to_string()))?;
    let entry = Envelope::sign(&bytes, &keys.iter().map(|k| k.as_ref()).collect::<Vec<_>>())
        .map_err(|e| usage(e.to_string()))?;
    crate::oms_cmd::write_new(&a.out, &entry, 0o644, false)?;
    eprintln!(
        "wrote {} with {} signature(s); submit it with a root token",
        a.out.display(),
        keys.len()
    );
    Ok(())
}
