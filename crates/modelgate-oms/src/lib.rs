//! OpenSSF Model Signing (OMS v1.0) for modelgate: hash a model, sign it, verify it.
//!
//! A model (a directory or a single file) is hashed into a [`Manifest`] of resources
//! (files, or shards of files), wrapped in an in-toto Statement with the OMS v1.0
//! predicate, signed as a DSSE envelope and stored as a Sigstore bundle v0.3 JSON,
//! byte for byte as the reference `model-signing` 1.1.1 package writes it. Bundles
//! from the reference verify here, and ours verify there; the interoperability tests
//! run both directions against the real package. Bundles in the forms the Go client
//! (`model-transparency-go`) writes verify too: protojson statements and bundles, RSA
//! and Ed25519ph keys, a certificate leaf without its chain (see `bundle` and `keys`).
//! Resource hashes: SHA-256, BLAKE3, and BLAKE2b-512 (which the reference's API and the
//! Go client write); the root digest is always SHA-256 over the resource digests.
//!
//! What verification guarantees when it returns `Ok`:
//! - the DSSE signature verifies with the given public key, or with the leaf of a
//!   certificate chain that validates to one of the given trusted certificates;
//! - the statement is exactly the OMS v1.0 shape (no unknown fields, one subject, the
//!   subject digest equal to the root digest of the listed resources);
//! - the model on disk, hashed the way the signer declared, has exactly the signed
//!   resources: any missing, extra or changed file is an error that names it (unless
//!   the caller opted into [`VerifyOptions::ignore_unsigned_files`]).
//!
//! Keyless Sigstore bundles (a Fulcio certificate with a Rekor v1 or v2 entry, and
//! RFC 3161 timestamps) verify offline against a pinned trusted root
//! ([`Trust::Keyless`], the `keyless`, `trusted_root` and [`rfc3161`] modules).
//! Encrypted PEM keys are refused. Hashing never follows a symbolic link unless allowed, and even then
//! never out of the model root (the kernel enforces it, see the `walk` module).
//!
//! Our own code where no crate fits, each explained in its module: the Python-exact
//! JSON printer (`pyjson`), and X.509 chain validation with the reference's OpenSSL
//! semantics (`x509`).

#![forbid(unsafe_code)]

mod bundle;
mod error;
mod hash;
mod keyless;
mod keys;
mod manifest;
pub mod progress;
mod pyjson;
pub mod rfc3161;
mod statement;
pub mod trusted_root;
mod walk;
mod x509;

use std::path::Path;

pub use bundle::{pae, pae_typed, Bundle, Envelope, Material, BUNDLE_BYTES_MAX, MEDIA_TYPE, PAYLOAD_TYPE};
pub use error::{Error, Mismatch, Result, TreeProblem};
pub use hash::{hash_model, hash_model_filtered, HashOptions, HashProgress};
pub use keyless::{verify_keyless, Check, Identity, IdentityMatch, KeylessError, KeylessSigner};
pub use keys::{generate, Curve, EcdsaDigest, KeyAlgorithm, PrivateKey, PublicKey};
pub use manifest::{HashAlgorithm, Manifest, Method, Resource, Serialization, DEFAULT_SHARD_SIZE};
pub use statement::{decode as decode_statement, encode as encode_statement, PREDICATE_TYPE, STATEMENT_TYPE};
pub use walk::{default_signature, ignore_rules, IgnorePath, DEFAULT_IGNORES};

/// The key material used to sign.
pub enum Signer {
    /// A bare key; the bundle carries the key's hint.
    Key(PrivateKey),
    /// A key with its certificate and the chain up to (not necessarily including) a root.
    Certificate {
        /// The private key matching the leaf certificate.
        key: PrivateKey,
        /// The leaf certificate, DER.
        leaf: Vec<u8>,
        /// Further certificates of the chain, DER, leaf's issuer first.
        chain: Vec<Vec<u8>>,
    },
}

impl Signer {
    /// A signer with a certificate, checking that the certificate is for this key.
    pub fn with_certificate(key: PrivateKey, leaf_pem: &str, chain_pems: &[String]) -> Result<Self> {
        let leaf = keys::pem_certificates(leaf_pem)
            .map_err(|reason| Error::Key {
                what: "signing certificate".to_owned(),
                reason,
            })?
            .remove(0);
        let cert = x509::Cert::parse(&leaf, "signing certificate").map_err(|reason| Error::Key {
            what: "signing certificate".to_owned(),
            reason,
        })?;
        let cert_key = cert.public_key().map_err(|reason| Error::Key {
            what: "signing certificate".to_owned(),
            reason,
        })?;
        if cert_key != key.public_key() {
            return Err(Error::Key {
                what: "signing certificate".to_owned(),
                reason: "its public key does not match the private key".to_owned(),
            });
        }
        let mut chain = Vec::new();
        for pem in chain_pems {
            chain.extend(keys::pem_certificates(pem).map_err(|reason| Error::Key {
                what: "certificate chain".to_owned(),
                reason,
            })?);
        }
        Ok(Signer::Certificate { key, leaf, chain })
    }

    fn key(&self) -> &PrivateKey {
        match self {
            Signer::Key(k) | Signer::Certificate { key: k, .. } => k,
        }
    }
}

/// Signs a manifest, returning the bundle JSON bytes.
pub fn sign_manifest(manifest: &Manifest, signer: &Signer) -> Result<Vec<u8>> {
    if manifest.resources.is_empty() {
        return Err(Error::EmptyModel);
    }
    let payload = statement::encode(manifest)?;
    let signature = signer.key().sign(&pae(&payload))?;
    let material = match signer {
        Signer::Key(k) => Material::PublicKey {
            hint: Some(k.public_key().hint()?),
        },
        Signer::Certificate { leaf, chain, .. } => {
            let mut all = vec![leaf.clone()];
            all.extend(chain.iter().cloned());
            Material::CertificateChain(all)
        }
    };
    let bundle = Bundle {
        material,
        envelope: Envelope {
            payload,
            payload_type: PAYLOAD_TYPE.to_owned(),
            signature,
        },
    };
    // Assert what we write is what we would accept: a bundle we cannot read back
    // must never reach the disk.
    let json = bundle.to_json()?;
    let reread = Bundle::parse(&json)?;
    let pk = signer.key().public_key();
    if reread != bundle || !pk.verify(&pae(&reread.envelope.payload), &reread.envelope.signature) {
        return Err(Error::Signature(
            "internal: the bundle just written does not verify".to_owned(),
        ));
    }
    Ok(json)
}

/// What a verifier trusts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Exactly this public key.
    PublicKey(PublicKey),
    /// Certificates (DER) trusted as roots of a chain.
    Certificates(Vec<Vec<u8>>),
    /// Keyless Sigstore: a Fulcio certificate naming this identity, with
    /// its Rekor evidence, checked against this trusted root offline.
    Keyless(std::sync::Arc<trusted_root::TrustedRoot>, Identity),
}

impl Trust {
    /// Keyless trust, as `modelgate verify` takes it: a Sigstore trusted
    /// root document (`None`: the embedded public-good one), the identity
    /// exactly or as an anchored expression, and the OIDC issuer.
    pub fn keyless(
        root: Option<&[u8]>,
        identity: Option<&str>,
        regexp: Option<&str>,
        issuer: &str,
    ) -> std::result::Result<Self, String> {
        let root = match root {
            Some(json) => trusted_root::TrustedRoot::parse(json),
            None => trusted_root::TrustedRoot::public_good(),
        }
        .map_err(|e| format!("Sigstore trusted root: {e}"))?;
        let identity = match (identity, regexp) {
            (Some(id), _) => IdentityMatch::Exact(id.to_owned()),
            (None, Some(re)) => IdentityMatch::regexp(re)?,
            (None, None) => return Err("give --identity ID or --identity-regexp RE".into()),
        };
        Ok(Trust::Keyless(
            std::sync::Arc::new(root),
            Identity {
                identity,
                issuer: issuer.to_owned(),
            },
        ))
    }

    /// Trust the certificates found in these PEM texts.
    pub fn certificates_from_pems(pems: &[String]) -> Result<Self> {
        let mut all = Vec::new();
        for pem in pems {
            all.extend(keys::pem_certificates(pem).map_err(|reason| Error::Key {
                what: "trusted certificates".to_owned(),
                reason,
            })?);
        }
        Ok(Trust::Certificates(all))
    }
}

/// Checks the bundle's signature and statement (not the model files) and returns the
/// manifest it vouches for.
pub fn verify_bundle(bundle_json: &[u8], trust: &Trust) -> Result<Manifest> {
    verify_bundle_signer(bundle_json, trust).map(|(m, _)| m)
}

/// [`verify_bundle`], with who signed a keyless bundle (identity, issuer,
/// log index, signing time); `None` for a key or certificate signature.
pub fn verify_bundle_signer(bundle_json: &[u8], trust: &Trust) -> Result<(Manifest, Option<KeylessSigner>)> {
    if let Trust::Keyless(root, identity) = trust {
        let (payload, payload_type, signer) =
            verify_keyless(bundle_json, root, identity).map_err(|e| Error::Signature(e.to_string()))?;
        if payload_type != PAYLOAD_TYPE {
            return Err(Error::Signature(format!(
                "payloadType is {payload_type:?}, expected {PAYLOAD_TYPE:?}"
            )));
        }
        return Ok((statement::decode(&payload)?, Some(signer)));
    }
    verify_keyed_bundle(bundle_json, trust).map(|m| (m, None))
}

fn verify_keyed_bundle(bundle_json: &[u8], trust: &Trust) -> Result<Manifest> {
    let bundle = Bundle::parse(bundle_json)?;
    if bundle.envelope.payload_type != PAYLOAD_TYPE {
        return Err(Error::Signature(format!(
            "payloadType is {:?}, expected {PAYLOAD_TYPE:?}",
            bundle.envelope.payload_type
        )));
    }
    let env = &bundle.envelope;
    let key = match (&bundle.material, trust) {
        (Material::Keyless, _) => {
            return Err(Error::Signature(
                "a keyless Sigstore bundle: verify it with --identity and --identity-provider (the signer's \
                 OIDC identity and issuer), not a key or certificates"
                    .to_owned(),
            ))
        }
        (_, Trust::Keyless(..)) => {
            return Err(Error::Signature(
                "the bundle is not keyless: verify it with the signer's public key or certificate chain".to_owned(),
            ))
        }
        (Material::PublicKey { hint }, Trust::PublicKey(pk)) => {
            if let Some(hint) = hint {
                if *hint != pk.hint()? {
                    return Err(Error::Signature(
                        "the bundle was signed for a different public key (publicKey.hint does not match)".to_owned(),
                    ));
                }
            }
            pk.clone()
        }
        (Material::CertificateChain(certs), Trust::Certificates(roots)) => {
            x509::verify_chain(&certs[0], &certs[1..], roots).map_err(Error::Signature)?
        }
        (Material::PublicKey { .. }, Trust::Certificates(_)) => {
            return Err(Error::Signature(
                "the bundle was signed with a bare key; verify it with a public key, not certificates".to_owned(),
            ))
        }
        (Material::CertificateChain(_), Trust::PublicKey(_)) => {
            return Err(Error::Signature(
                "the bundle was signed with a certificate; verify it with the trusted certificate chain".to_owned(),
            ))
        }
    };
    let signed = key.verify(&pae(&env.payload), &env.signature)
        || compat_v02_signature(&key, &bundle.material, &env.payload, &env.signature);
    if !signed {
        return Err(Error::Signature(
            "the DSSE signature does not verify with the key".to_owned(),
        ));
    }
    statement::decode(&env.payload)
}

/// Reference v0.2 signed a malformed PAE; with certificates it always hashed with SHA-256.
fn compat_v02_signature(key: &PublicKey, material: &Material, payload: &[u8], sig: &[u8]) -> bool {
    use sha2::Digest as _;
    let msg = bundle::pae_v02(payload);
    match material {
        Material::CertificateChain(_) => key.verify_prehash(&sha2::Sha256::digest(&msg), sig),
        _ => key.verify(&msg, sig),
    }
}

/// How to re-hash the model when verifying.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Extra paths to leave out, besides the signed ignore list and git metadata.
    pub ignore: Vec<IgnorePath>,
    /// Follow links inside the model root.
    pub allow_symlinks: bool,
    /// Hash only the files the signature names; extra files are then not an error.
    pub ignore_unsigned_files: bool,
    /// Worker threads; `None` for one per core.
    pub threads: Option<usize>,
}

/// A successful verification.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed manifest.
    pub manifest: Manifest,
    /// Its root digest: the model's identity.
    pub root_digest: [u8; 32],
}

impl Verified {
    /// `modelgate verify --json`'s answer for a model that verified.
    pub fn to_json(&self, model: &str) -> serde_json::Value {
        serde_json::json!({
            "verified": true,
            "model": model,
            "root_digest": format!("sha256:{}", hex::encode(self.root_digest)),
            "method": match self.manifest.serialization.method {
                Method::Files => "files",
                Method::Shards { .. } => "shards",
            },
            "resources": self.manifest.resources.len(),
        })
    }
}

/// `modelgate verify --json`'s answer for a model that did not verify:
/// `kind` is `verification_failed` (checked, and not what it must be) or
/// `bad_input`; a mismatch lists the files missing, extra and changed.
pub fn refusal_json(model: &str, kind: &str, message: &str, mismatch: Option<&Mismatch>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "verified": false,
        "model": model,
        "error": {"kind": kind, "message": message},
    });
    if let Some(m) = mismatch {
        v["error"]["missing"] = serde_json::json!(m.missing);
        v["error"]["extra"] = serde_json::json!(m.extra);
        v["error"]["changed"] = serde_json::json!(m.changed);
    }
    v
}

/// Verifies `model` against a bundle: signature, statement, then every file.
pub fn verify_model(
    model: &Path,
    bundle_json: &[u8],
    trust: &Trust,
    opts: &VerifyOptions,
    progress: Option<&HashProgress>,
) -> Result<Verified> {
    let signed = verify_bundle(bundle_json, trust)?;
    let hash_opts = verify_hash_options(&signed, opts)?;
    let actual = if opts.ignore_unsigned_files {
        let names: std::collections::HashSet<String> = signed
            .resources
            .iter()
            .map(|r| manifest::ResourceKey::parse(&r.name, signed.serialization.method).map(|k| k.path))
            .collect::<Result<_>>()?;
        hash_model_filtered(model, &hash_opts, progress, |rel| names.contains(rel))?
    } else {
        hash_model(model, &hash_opts, progress)?
    };
    let mismatch = signed.diff(&actual)?;
    if !mismatch.is_empty() {
        return Err(Error::Mismatch(mismatch));
    }
    Ok(Verified {
        root_digest: signed.root_digest(),
        manifest: signed,
    })
}

/// The hashing configuration a signed manifest declares, plus the verifier's ignores.
pub fn verify_hash_options(signed: &Manifest, opts: &VerifyOptions) -> Result<HashOptions> {
    let ser = &signed.serialization;
    let mut ignore = opts.ignore.clone();
    for p in DEFAULT_IGNORES {
        ignore.push(IgnorePath::parse(p)?);
    }
    for p in &ser.ignore_paths {
        // A signed ignore path that tries to leave the model can only be ignored.
        if let Ok(rule) = IgnorePath::parse(p) {
            ignore.push(rule);
        }
    }
    Ok(HashOptions {
        method: ser.method,
        hash: ser.hash,
        // Following links is the verifier's decision; a signature cannot grant it.
        allow_symlinks: opts.allow_symlinks,
        ignore,
        threads: opts.threads,
    })
}
