//! `keygen`, `sign`, `verify`, `digest`: the model-signing commands.
//!
//! Flags follow the contract (and the reference CLI where they overlap), so
//! scripts written against `model_signing` carry over.

use std::fs;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use modelgate_oms::{
    default_signature, hash_model, ignore_rules, sign_manifest, verify_model, Error, HashAlgorithm, HashOptions,
    KeyAlgorithm, PrivateKey, PublicKey, Signer, Trust, VerifyOptions, BUNDLE_BYTES_MAX, DEFAULT_SHARD_SIZE,
};

use crate::Failure;
use modelgate_oms::progress::Progress;

/// Key files are small; a "key" larger than this is the wrong file.
const KEY_FILE_BYTES_MAX: u64 = 1 << 20;

#[derive(Args)]
pub struct KeygenArgs {
    /// Key algorithm.
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    algorithm: KeyAlgorithm,
    /// Output prefix: writes PREFIX.key and PREFIX.pub.
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MethodArg {
    /// One resource per file.
    Files,
    /// Files cut into shards hashed in parallel (large files hash on every core).
    Shards,
}

/// How the model is hashed; shared by `sign` and `digest`.
#[derive(Args)]
pub struct HashingArgs {
    /// Serialization method.
    #[arg(long, value_enum, default_value = "files")]
    method: MethodArg,
    /// Shard size in bytes, for --method shards.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_SHARD_SIZE)]
    shard_size: u64,
    /// Hash algorithm. With blake3, --method shards falls back to files, as in the
    /// reference: BLAKE3 is already parallel within a file.
    #[arg(long = "hash", value_enum, default_value = "sha256")]
    hash: HashAlgorithm,
    /// Paths to leave out, absolute (inside the model) or relative to the model root.
    /// Git metadata (.git, .gitattributes, .github, .gitignore) is always left out.
    #[arg(long, value_name = "PATH", num_args = 1..)]
    ignore_paths: Vec<PathBuf>,
    /// Follow symbolic links that stay inside the model root (refused by default;
    /// links leaving the root or forming a cycle are always refused).
    #[arg(long)]
    allow_symlinks: bool,
}

#[derive(Args)]
pub struct SignArgs {
    /// The model: a directory or a single file.
    model: PathBuf,
    /// Private key: a PEM file (PKCS#8 or SEC1; ECDSA P-256, P-384 or
    /// P-521), or a key on a PKCS#11 token as an RFC 7512 URI
    /// (`pkcs11:token=T;object=LABEL?pin-source=file:PIN_FILE`; P-256 or P-384).
    #[arg(long, value_name = "KEY|URI")]
    key: PathBuf,
    /// Signing certificate (PEM) for --key: sign with a certificate instead of a bare key.
    #[arg(long, value_name = "CERT", requires = "cert_chain")]
    signing_cert: Option<PathBuf>,
    /// The rest of the certificate chain (PEM files), issuer of the leaf first.
    #[arg(long, value_name = "PEM", num_args = 1.., requires = "signing_cert")]
    cert_chain: Vec<PathBuf>,
    /// Where to write the signature [default: MODEL/model.sig, or MODEL.sig for a file].
    #[arg(long, value_name = "PATH")]
    signature: Option<PathBuf>,
    #[command(flatten)]
    hashing: HashingArgs,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("trust").required(true).args(["public_key", "cert_chain", "identity", "identity_regexp"]))]
pub struct VerifyArgs {
    /// The model: a directory or a single file.
    model: PathBuf,
    /// The signer's public key (SPKI PEM), for bundles signed with a bare key: ECDSA
    /// P-256/P-384/P-521, or RSA (2048-4096 bits) and Ed25519 as the Go client signs.
    #[arg(long, value_name = "PUB")]
    public_key: Option<PathBuf>,
    /// Trusted CA certificates (PEM), for bundles signed with a certificate.
    #[arg(long, value_name = "PEM", num_args = 1..)]
    cert_chain: Vec<PathBuf>,
    /// Keyless: the signer's identity, the certificate's SAN (an e-mail or a
    /// workflow URI), exactly. Verified offline against the Sigstore trusted root.
    #[arg(
        long,
        value_name = "ID",
        requires = "identity_provider",
        conflicts_with = "identity_regexp"
    )]
    identity: Option<String>,
    /// Keyless: a regular expression the whole SAN must match (anchored).
    #[arg(long, value_name = "RE", requires = "identity_provider")]
    identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer that must have vouched for the identity.
    #[arg(long, value_name = "URL")]
    identity_provider: Option<String>,
    /// Keyless: a Sigstore TrustedRoot or ClientTrustConfig (JSON) to verify
    /// with instead of the embedded public-good one.
    #[arg(long, value_name = "FILE")]
    trust_root: Option<PathBuf>,
    /// The signature [default: MODEL/model.sig, or MODEL.sig for a file].
    #[arg(long, value_name = "PATH")]
    signature: Option<PathBuf>,
    /// Further paths to leave out (the signature's own ignore list always applies).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    ignore_paths: Vec<PathBuf>,
    /// Do not fail on files the signature does not cover (signed files must still match).
    #[arg(long)]
    ignore_unsigned_files: bool,
    /// Follow symbolic links that stay inside the model root.
    #[arg(long)]
    allow_symlinks: bool,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DigestArgs {
    /// The model: a directory or a single file.
    model: PathBuf,
    /// A signature file to leave out [default: MODEL/model.sig].
    #[arg(long, value_name = "PATH")]
    signature: Option<PathBuf>,
    #[command(flatten)]
    hashing: HashingArgs,
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

pub fn keygen(a: KeygenArgs) -> Result<(), Failure> {
    let (private, public) = modelgate_oms::generate(a.algorithm)?;
    let key_path = with_suffix(&a.out, "key");
    let pub_path = with_suffix(&a.out, "pub");
    write_new(&key_path, private.as_bytes(), 0o600, a.force)?;
    write_new(&pub_path, public.as_bytes(), 0o644, a.force)?;
    println!("private key: {} (keep it secret)", key_path.display());
    println!("public key:  {}", pub_path.display());
    Ok(())
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

pub(crate) fn write_new(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> Result<(), Failure> {
    modelgate_node::files::write_new(path, data, mode, overwrite).map_err(|e| match e {
        modelgate_node::NodeError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
            usage(format!("{} exists; pass --force to overwrite it", path.display()))
        }
        e => usage(format!("couldn't write {e}")),
    })
}

pub(crate) fn read_limited(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Failure> {
    let meta = fs::metadata(path).map_err(|e| usage(format!("couldn't read {what} {}: {e}", path.display())))?;
    if meta.len() > max {
        return Err(usage(format!(
            "{what} {} is {} bytes, more than the {max} allowed",
            path.display(),
            meta.len()
        )));
    }
    fs::read(path).map_err(|e| usage(format!("couldn't read {what} {}: {e}", path.display())))
}

fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    String::from_utf8(read_limited(path, KEY_FILE_BYTES_MAX, what)?)
        .map_err(|_| usage(format!("{what} {} is not text (PEM expected)", path.display())))
}

fn hash_options(h: &HashingArgs, model: &Path, signature: Option<&Path>) -> Result<HashOptions, Failure> {
    let (mut opts, note) = HashOptions::requested(h.method == MethodArg::Shards, h.shard_size, h.hash)?;
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    opts.allow_symlinks = h.allow_symlinks;
    opts.ignore = ignore_rules(model, &h.ignore_paths, signature)?;
    Ok(opts)
}

fn hash_with_progress(model: &Path, opts: &HashOptions) -> Result<modelgate_oms::Manifest, Failure> {
    let progress = Progress::start("hashing");
    Ok(hash_model(model, opts, Some(progress.counter()))?)
}

pub fn sign(a: SignArgs) -> Result<(), Failure> {
    let signature = a.signature.clone().unwrap_or_else(|| default_signature(&a.model));
    let key = match crate::gov_cmd::token_key(&a.key)? {
        Some((shown, token)) => PrivateKey::from_token(token, &shown)?,
        None => PrivateKey::from_pem(&read_text(&a.key, "private key")?, &a.key.display().to_string())?,
    };
    let signer = match &a.signing_cert {
        None => Signer::Key(key),
        Some(cert) => {
            let leaf = read_text(cert, "signing certificate")?;
            let chain = a
                .cert_chain
                .iter()
                .map(|p| read_text(p, "certificate chain"))
                .collect::<Result<Vec<_>, _>>()?;
            Signer::with_certificate(key, &leaf, &chain)?
        }
    };
    let opts = hash_options(&a.hashing, &a.model, Some(&signature))?;
    let manifest = hash_with_progress(&a.model, &opts)?;
    let bundle = sign_manifest(&manifest, &signer)?;
    write_atomic(&signature, &bundle)?;
    println!(
        "signed {} ({} resources) root digest sha256:{} -> {}",
        a.model.display(),
        manifest.resources.len(),
        hex(&manifest.root_digest()),
        signature.display()
    );
    Ok(())
}

/// Writes through a temporary file (fsynced) and a rename, so a crash leaves the old
/// file or the new one, never half of one.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Failure> {
    modelgate_node::files::write_atomic(path, data).map_err(|e| usage(format!("couldn't write {e}")))
}

pub(crate) fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

pub fn verify(a: VerifyArgs) -> Result<(), Failure> {
    let model = a.model.display().to_string();
    let outcome = run_verify(&a);
    if a.json {
        println!(
            "{}",
            match &outcome {
                Ok(v) => v.to_json(&model),
                Err((Failure::Invalid(m), mismatch)) =>
                    modelgate_oms::refusal_json(&model, "verification_failed", m, mismatch.as_ref()),
                Err((Failure::Usage(m) | Failure::Contained(m) | Failure::Child(_, m), _)) =>
                    modelgate_oms::refusal_json(&model, "bad_input", m, None),
            }
        );
    }
    let v = outcome.map_err(|(f, _)| f)?;
    if !a.json {
        println!(
            "verified {model} ({} resources) root digest sha256:{}",
            v.manifest.resources.len(),
            hex(&v.root_digest)
        );
    }
    Ok(())
}

type VerifyOutcome = Result<modelgate_oms::Verified, (Failure, Option<modelgate_oms::Mismatch>)>;

fn run_verify(a: &VerifyArgs) -> VerifyOutcome {
    let plain = |f: Failure| (f, None);
    let signature = a.signature.clone().unwrap_or_else(|| default_signature(&a.model));
    let bundle = read_limited(&signature, BUNDLE_BYTES_MAX, "signature").map_err(plain)?;
    let trust = match &a.public_key {
        None if a.identity_provider.is_some() => keyless_trust(a).map_err(plain)?,
        Some(p) => {
            let pem = read_text(p, "public key").map_err(plain)?;
            Trust::PublicKey(PublicKey::from_pem(&pem, &p.display().to_string()).map_err(|e| plain(e.into()))?)
        }
        None => {
            let pems = a
                .cert_chain
                .iter()
                .map(|p| read_text(p, "certificate chain"))
                .collect::<Result<Vec<_>, _>>()
                .map_err(plain)?;
            Trust::certificates_from_pems(&pems).map_err(|e| plain(e.into()))?
        }
    };
    let ignore = ignore_rules(&a.model, &a.ignore_paths, Some(&signature)).map_err(|e| plain(e.into()))?;
    let opts = VerifyOptions {
        ignore,
        allow_symlinks: a.allow_symlinks,
        ignore_unsigned_files: a.ignore_unsigned_files,
        threads: None,
    };
    let progress = Progress::start("verifying");
    verify_model(&a.model, &bundle, &trust, &opts, Some(progress.counter())).map_err(|e| match e {
        Error::Mismatch(m) => (Failure::Invalid(Error::Mismatch(m.clone()).to_string()), Some(m)),
        e => plain(e.into()),
    })
}

fn keyless_trust(a: &VerifyArgs) -> Result<Trust, Failure> {
    let root = a
        .trust_root
        .as_ref()
        .map(|f| read_limited(f, 4 << 20, "trust root"))
        .transpose()?;
    let issuer = a.identity_provider.as_deref().unwrap_or_default();
    Trust::keyless(
        root.as_deref(),
        a.identity.as_deref(),
        a.identity_regexp.as_deref(),
        issuer,
    )
    .map_err(usage)
}

pub fn digest(a: DigestArgs) -> Result<(), Failure> {
    let signature = a.signature.clone().unwrap_or_else(|| default_signature(&a.model));
    let opts = hash_options(&a.hashing, &a.model, Some(&signature))?;
    let manifest = hash_with_progress(&a.model, &opts)?;
    if manifest.resources.is_empty() {
        return Err(Error::EmptyModel.into());
    }
    println!("{}", hex(&manifest.root_digest()));
    Ok(())
}
