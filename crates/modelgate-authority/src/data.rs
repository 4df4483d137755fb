//! The authority's data directory: what lives where, and `init`.
//!
//! ```text
//! DIR/authority.skey               the log's note key (signs checkpoints), 0600
//! DIR/authority-cosigner.skey      the freshness cosignature key, 0600
//! DIR/trust-root.dsse.json         trust root v1, the log's entry 0: nodes pin this file
//! DIR/governance.db                the governance log (SQLite)
//! DIR/tokens.json                  write-API tokens, stored as SHA-256 hashes
//! DIR/state.snapshot               the folded state, signed (restarts refold only what follows it)
//! DIR/pending.json                 approvals short of their threshold, waiting for cosigners
//! DIR/offline-root-keys/root-N.key the root keys (PKCS#8 PEM, 0600): move them offline
//! ```
//!
//! A root of k of n keys ([`RootKeys`]) makes n keys and signs trust root v1
//! with every one of them, so each key is proven to work before it leaves the
//! machine; from then on any k of them sign a rotation.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::SigningKey;
use modelgate_governance::{to_canonical, Envelope};
use modelgate_store::Log;
use modelgate_tlog::{KeyType, SignerKey};
use serde_json::json;

use crate::error::AuthorityError;

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The log's note key.
    pub fn log_key(&self) -> PathBuf {
        self.root.join("authority.skey")
    }

    /// The cosigner key.
    pub fn cosigner_key(&self) -> PathBuf {
        self.root.join("authority-cosigner.skey")
    }

    /// Trust root v1: entry 0, the file nodes pin.
    pub fn trust_root(&self) -> PathBuf {
        self.root.join("trust-root.dsse.json")
    }

    /// The SQLite store.
    pub fn store(&self) -> PathBuf {
        self.root.join("governance.db")
    }

    /// The signed snapshot of the folded state (a cache for restarts).
    pub fn snapshot(&self) -> PathBuf {
        self.root.join("state.snapshot")
    }

    /// Approvals waiting for cosigners.
    pub fn pending(&self) -> PathBuf {
        self.root.join("pending.json")
    }

    /// The nodes' replicated lineage logs and their index.
    pub fn lineage(&self) -> PathBuf {
        self.root.join("lineage")
    }

    /// The token file.
    pub fn tokens(&self) -> PathBuf {
        self.root.join("tokens.json")
    }

    /// Where init leaves the first root key.
    pub fn offline_root_key(&self) -> PathBuf {
        self.offline_root_key_n(1)
    }

    /// Where init leaves root key `n` (1-based).
    pub fn offline_root_key_n(&self, n: usize) -> PathBuf {
        self.root.join("offline-root-keys").join(format!("root-{n}.key"))
    }

    /// True when `init` completed here (it writes the trust root last; the
    /// log itself may be in another database, checked when it is opened).
    pub fn is_initialised(&self) -> bool {
        self.log_key().exists() && self.cosigner_key().exists() && self.trust_root().exists()
    }

    /// True when the directory is missing or holds nothing.
    pub fn is_empty(&self) -> bool {
        match fs::read_dir(&self.root) {
            Ok(mut entries) => entries.next().is_none(),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    /// Read a note signer key file.
    pub fn read_signer(&self, path: &Path) -> Result<SignerKey, AuthorityError> {
        let text = fs::read_to_string(path)
            .map_err(|e| AuthorityError::io(format!("couldn't read {}: {e}", path.display())))?;
        SignerKey::parse(text.trim()).map_err(|e| AuthorityError::config(format!("{}: {e}", path.display())))
    }
}

/// What `init` created.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The log's verifier key (give it to nodes and auditors).
    pub log_vkey: String,
    /// The cosigner's verifier key.
    pub cosigner_vkey: String,
    /// Where the first root key is (it belongs offline).
    pub root_key: PathBuf,
    /// Every root key made, in order (principals `root-1` … `root-n`).
    pub root_keys: Vec<PathBuf>,
    /// How many of them sign a trust-root rotation.
    pub root_threshold: usize,
    /// The trust root file nodes pin.
    pub trust_root: PathBuf,
}

impl InitReport {
    /// What an operator must know and do next, line by line: where each
    /// key is and that the root keys belong offline.
    pub fn instructions(&self, dir: &Path, store: &crate::store::StoreAt) -> Vec<String> {
        let mut out = vec![
            format!("authority initialised in {}", dir.display()),
            format!("  governance log: {}", store.describe()),
            format!("  trust root v1 (nodes pin this file): {}", self.trust_root.display()),
        ];
        let on_tokens = self
            .root_keys
            .iter()
            .any(|k| k.to_str().is_some_and(|k| k.starts_with("pkcs11:")));
        if on_tokens {
            out.push(format!(
                "  root keys on tokens ({} of {} sign a new trust-root version):",
                self.root_threshold,
                self.root_keys.len()
            ));
            out.extend(self.root_keys.iter().map(|k| format!("    {}", k.display())));
            out.push("    Nothing private was written here. Keep each token with its custodian; a rotation".into());
            out.push("    is signed with `modelgate trust sign --key pkcs11:…` (see docs/keys.md).".into());
        } else if self.root_keys.len() == 1 {
            out.push(format!("  root key: {}", self.root_key.display()));
            out.push("    It signs trust-root versions. Move it OFFLINE now (and delete it here);".into());
            out.push("    bring it back only to sign the next trust root with `modelgate trust sign`.".into());
        } else {
            out.push(format!(
                "  root keys ({} of {} sign a new trust-root version):",
                self.root_threshold,
                self.root_keys.len()
            ));
            out.extend(self.root_keys.iter().map(|k| format!("    {}", k.display())));
            out.push("    Give each to its custodian OFFLINE now (and delete them here); a rotation".into());
            out.push(format!(
                "    is signed by any {} of them with `modelgate trust sign`.",
                self.root_threshold
            ));
        }
        out.push(format!("  cosigner key (freshness): {}", self.cosigner_vkey));
        out.push("authority verifier key (give it to nodes and auditors):".into());
        out
    }
}

/// Write a file that must not exist yet, with `mode`, fsynced.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), AuthorityError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| AuthorityError::io(format!("couldn't create {}: {e}", path.display())))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| AuthorityError::io(format!("couldn't write {}: {e}", path.display())))
}

fn seed() -> Result<[u8; 32], AuthorityError> {
    let mut s = [0u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut s)
        .map_err(|e| AuthorityError::io(format!("the operating system's random source failed: {e}")))?;
    Ok(s)
}

/// How many root keys `init` makes, and how many of them a rotation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootKeys {
    /// n: keys made, one principal each (`root-1` … `root-n`).
    pub count: usize,
    /// k: signatures a new trust-root version needs.
    pub threshold: usize,
}

impl RootKeys {
    /// At most this many keys: a ceremony with more custodians is done by
    /// rotation, where each brings a key made on their own machine.
    pub const MAX: usize = 16;

    /// One key, threshold one.
    pub const SINGLE: RootKeys = RootKeys { count: 1, threshold: 1 };

    /// k of n, checked: 1 ≤ k ≤ n ≤ [`RootKeys::MAX`].
    pub fn new(count: usize, threshold: usize) -> Result<Self, AuthorityError> {
        if count == 0 || count > Self::MAX {
            return Err(AuthorityError::config(format!(
                "root keys: {count} asked, between 1 and {} allowed",
                Self::MAX
            )));
        }
        if threshold == 0 || threshold > count {
            return Err(AuthorityError::config(format!(
                "root threshold {threshold}: must be between 1 and the number of root keys ({count})"
            )));
        }
        Ok(Self { count, threshold })
    }
}

/// Keys `init` uses from PKCS#11 tokens instead of making them as files,
/// each a `pkcs11:` URI (RFC 7512) naming an Ed25519 key. The log key and
/// the cosigner are recorded in the data directory by URI (`PKCS11+KEY+…`
/// lines) and opened by `serve`; root keys stay on their tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenKeys {
    /// The log key (checkpoints).
    pub log: Option<String>,
    /// The cosigner (the authority's own freshness cosignatures).
    pub cosigner: Option<String>,
    /// Root keys, `root-1` … `root-n` in order; when given, they are the
    /// whole root role (none is made as a file).
    pub roots: Vec<String>,
}

/// Create a new authority in `dir` for the log `origin` with one root key.
/// See [`init_with`].
pub fn init(dir: &Path, origin: &str) -> Result<InitReport, AuthorityError> {
    init_with(dir, origin, RootKeys::SINGLE)
}

/// Create a new authority in `dir` for the log `origin`: keys, a first
/// trust root whose `root` role is `roots.count` new keys with threshold
/// `roots.threshold` (signed by all of them), and the store with the trust
/// root as entry 0. Refuses a directory that already holds anything.
pub fn init_with(dir: &Path, origin: &str, roots: RootKeys) -> Result<InitReport, AuthorityError> {
    init_at(
        dir,
        origin,
        roots,
        &crate::store::StoreAt::Sqlite(DataDir::new(dir).store()),
    )
}

/// The first trust root: one root principal per key, `threshold` of them
/// to change it, the authority's keys, default thresholds; signed by every
/// root key and accepted by the fold before anything is written.
fn genesis_trust_root(
    keys: &[&dyn modelgate_signer::Signer],
    threshold: usize,
    log_key: &SignerKey,
    cosigner: &SignerKey,
) -> Result<Vec<u8>, AuthorityError> {
    let principals: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            (
                format!("root-{}", i + 1),
                json!({"roles": ["root"], "keys": [B64.encode(k.public_key())], "model_keys": []}),
            )
        })
        .collect();

    let doc = json!({
        "type": "trust-root", "version": 1, "root_version": 1,
        "principals": principals,
        "thresholds": {"root": threshold, "model": 1, "approval": {"low": 1, "medium": 1, "high": 2, "critical": 2},
                       "revocation": 1, "exception": 1, "policy": 1, "enrollment": 1},
        "authority": {"log": log_key.verifier().to_string(), "cosigner": cosigner.verifier().to_string()},
        "witnesses": [], "witness_quorum": 0,
        "freshness": {"max_staleness_seconds": 30, "anchor_max_age_seconds": 60}
    });
    let payload = to_canonical(&doc).map_err(|e| AuthorityError::config(e.to_string()))?;
    let genesis = Envelope::sign(&payload, keys).map_err(|e| AuthorityError::config(e.to_string()))?;
    // The fold must accept it before anything is written.
    modelgate_governance::State::new(&genesis)
        .map_err(|e| AuthorityError::config(format!("generated trust root: {e}")))?;

    Ok(genesis)
}

/// The offline root keys, PKCS#8 v1 (RFC 8410, which OpenSSL and Python's
/// cryptography read), each beside its public key.
fn write_root_keys(d: &DataDir, keys: &[SigningKey]) -> Result<(), AuthorityError> {
    for (i, root) in keys.iter().enumerate() {
        let pem = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: root.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(Default::default())
        .map_err(|e| AuthorityError::config(e.to_string()))?;
        let pub_pem = root
            .verifying_key()
            .to_public_key_pem(Default::default())
            .map_err(|e| AuthorityError::config(e.to_string()))?;
        let path = d.offline_root_key_n(i + 1);
        write_new(&path, pem.as_bytes(), 0o600)?;
        write_new(&path.with_extension("pub"), pub_pem.as_bytes(), 0o644)?;
    }
    Ok(())
}

/// [`init_with`], the governance log in `store_at` (a SQLite file or a
/// PostgreSQL database, which must hold no log yet).
pub fn init_at(
    dir: &Path,
    origin: &str,
    roots: RootKeys,
    store_at: &crate::store::StoreAt,
) -> Result<InitReport, AuthorityError> {
    init_keys(dir, origin, roots, store_at, &TokenKeys::default())
}

/// The authority's own keys: each from its token when `tokens` names one,
/// else made now. Every token is opened before anything is written.
fn own_keys(origin: &str, tokens: &TokenKeys) -> Result<(SignerKey, SignerKey), AuthorityError> {
    let key = |uri: &Option<String>, t: KeyType| match uri {
        Some(u) => SignerKey::from_token(origin, t, u).map_err(|e| AuthorityError::config(e.to_string())),
        None => SignerKey::from_seed(origin, t, &seed()?).map_err(|e| AuthorityError::config(e.to_string())),
    };
    Ok((
        key(&tokens.log, KeyType::Ed25519)?,
        key(&tokens.cosigner, KeyType::CosignatureV1)?,
    ))
}

/// The store `init` writes the log to, created and checked empty: a
/// database that already holds a log is refused before anything is written
/// in the data directory.
fn empty_store(
    dir: &Path,
    store_at: &crate::store::StoreAt,
) -> Result<Box<dyn modelgate_store::LogStore>, AuthorityError> {
    if let crate::store::StoreAt::Sqlite(_) = store_at {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AuthorityError::io(format!("couldn't create {}: {e}", dir.display())))?;
    }
    let already = |held: u64| {
        AuthorityError::config(format!(
            "the log store {} already holds a log of {held} entries; init only creates a new one",
            store_at.describe()
        ))
    };
    // Read first: a database another authority sequences is named as
    // holding a log, not as locked.
    if let Ok(reader) = store_at.open_reader() {
        let held = modelgate_store::LogStore::size(&reader).map_err(AuthorityError::store)?;
        if held > 0 {
            return Err(already(held));
        }
    }
    let store = store_at
        .open_for_init(&crate::store::holder_name())
        .map_err(AuthorityError::store)?;
    let held = modelgate_store::LogStore::size(&store).map_err(AuthorityError::store)?;
    if held > 0 {
        return Err(already(held));
    }
    Ok(store)
}

/// [`init_at`], with the keys `tokens` names on PKCS#11 tokens.
pub fn init_keys(
    dir: &Path,
    origin: &str,
    roots: RootKeys,
    store_at: &crate::store::StoreAt,
    tokens: &TokenKeys,
) -> Result<InitReport, AuthorityError> {
    let roots = match tokens.roots.len() {
        0 => RootKeys::new(roots.count, roots.threshold)?,
        n if roots.count == 1 || roots.count == n => RootKeys::new(n, roots.threshold)?,
        n => {
            return Err(AuthorityError::config(format!(
                "{n} root keys on tokens, but {} root keys asked: give one or the other",
                roots.count
            )))
        }
    };
    let d = DataDir::new(dir);
    if !d.is_empty() {
        return Err(AuthorityError::config(format!(
            "{} is not empty; init only creates a new authority (use `serve` to run an existing one)",
            dir.display()
        )));
    }
    if !modelgate_tlog::is_valid_key_name(origin) {
        return Err(AuthorityError::config(format!(
            "origin {origin:?} must be non-empty, without spaces or '+' (e.g. example.com/governance)"
        )));
    }
    let store = empty_store(dir, store_at)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join("offline-root-keys"))
        .map_err(|e| AuthorityError::io(format!("couldn't create {}: {e}", dir.display())))?;
    let (log_key, cosigner) = own_keys(origin, tokens)?;
    let token_roots = tokens
        .roots
        .iter()
        .map(|u| modelgate_signer::open_token(u, None).map_err(|e| AuthorityError::config(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let file_roots: Vec<SigningKey> = if token_roots.is_empty() {
        (0..roots.count)
            .map(|_| seed().map(|s| SigningKey::from_bytes(&s)))
            .collect::<Result<_, _>>()?
    } else {
        vec![]
    };
    let signers: Vec<&dyn modelgate_signer::Signer> = token_roots
        .iter()
        .map(|k| k.as_ref())
        .chain(file_roots.iter().map(|k| k as &dyn modelgate_signer::Signer))
        .collect();
    let genesis = genesis_trust_root(&signers, roots.threshold, &log_key, &cosigner)?;
    write_root_keys(&d, &file_roots)?;
    write_new(
        &d.log_key(),
        format!("{}\n", log_key.to_private_string()).as_bytes(),
        0o600,
    )?;
    write_new(
        &d.cosigner_key(),
        format!("{}\n", cosigner.to_private_string()).as_bytes(),
        0o600,
    )?;
    write_new(&d.tokens(), b"{\"tokens\":[]}\n", 0o600)?;
    let mut log = Log::open(store, log_key.clone()).map_err(AuthorityError::store)?;
    log.append(std::slice::from_ref(&genesis))
        .map_err(AuthorityError::store)?;
    log.close().map_err(AuthorityError::store)?;
    // Last: its presence marks a complete init.
    write_new(&d.trust_root(), &genesis, 0o644)?;
    Ok(report(&d, roots, tokens, &log_key, &cosigner))
}

/// What `init` made and where: the root keys as files, or by URI.
fn report(d: &DataDir, roots: RootKeys, tokens: &TokenKeys, log_key: &SignerKey, cosigner: &SignerKey) -> InitReport {
    let by_uri = |u: &String| PathBuf::from(modelgate_signer::uri::Pkcs11Uri::redacted(u));
    InitReport {
        log_vkey: log_key.verifier().to_string(),
        cosigner_vkey: cosigner.verifier().to_string(),
        root_key: tokens.roots.first().map_or_else(|| d.offline_root_key(), by_uri),
        root_keys: if tokens.roots.is_empty() {
            (1..=roots.count).map(|n| d.offline_root_key_n(n)).collect()
        } else {
            tokens.roots.iter().map(by_uri).collect()
        },
        root_threshold: roots.threshold,
        trust_root: d.trust_root(),
    }
}
