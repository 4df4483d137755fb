//! Write-API bearer tokens. Only their SHA-256 is stored; the token itself is
//! shown once, when created. The file is re-read when it changes, so tokens
//! created while the authority runs work at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::AuthorityError;

/// What a token may submit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenRole {
    /// Any entry.
    Admin,
    /// Trust-root versions.
    Root,
    /// Model registrations.
    ModelSigner,
    /// Approvals, revocations, exceptions.
    Approver,
    /// Policy sets.
    PolicyAdmin,
    /// Node enrollments.
    NodeAdmin,
    /// Node anchors and containment reports.
    Node,
}

impl TokenRole {
    /// Parse a role name.
    pub fn parse(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!("unknown role {s:?}; one of admin, root, model-signer, approver, policy-admin, node-admin, node")
        })
    }

    /// May this role submit an entry of `kind`?
    pub fn may_submit(self, kind: &str) -> bool {
        match self {
            TokenRole::Admin => true,
            TokenRole::Root => kind == "trust-root",
            TokenRole::ModelSigner => kind == "model",
            TokenRole::Approver => matches!(kind, "approval" | "revocation" | "exception"),
            TokenRole::PolicyAdmin => kind == "policy-set",
            TokenRole::NodeAdmin => kind == "node-enrollment",
            TokenRole::Node => matches!(kind, "node-anchor" | "containment-report"),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRecord {
    name: String,
    role: TokenRole,
    sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenRecord>,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn read(path: &Path) -> Result<TokenFile, AuthorityError> {
    let text =
        fs::read_to_string(path).map_err(|e| AuthorityError::Io(format!("couldn't read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| AuthorityError::Config(format!("{}: {e}", path.display())))
}

/// Create a token with `role`; returns the token (shown once).
///
/// Safe to run concurrently (several `authority token create` at once, or
/// beside a running authority): the read-modify-write holds an exclusive
/// lock on `PATH.lock`, and each writer writes its own temporary file before
/// the rename, so no token is lost and no reader sees half a file.
pub fn create(path: &Path, role: TokenRole, name: &str) -> Result<String, AuthorityError> {
    let lock_path = path.with_extension("json.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| AuthorityError::Io(format!("couldn't open {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| AuthorityError::Io(format!("couldn't lock {}: {e}", lock_path.display())))?;
    let mut file = if path.exists() {
        read(path)?
    } else {
        TokenFile::default()
    };
    let mut raw = [0u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw)
        .map_err(|e| AuthorityError::Io(format!("the operating system's random source failed: {e}")))?;
    let token = format!("mgt_{}", hex::encode(raw));
    file.tokens.push(TokenRecord {
        name: name.to_owned(),
        role,
        sha256: hash(&token),
    });
    let text = serde_json::to_string_pretty(&file).map_err(|e| AuthorityError::Config(e.to_string()))?;
    // Write beside and rename, so a reader never sees half a file.
    let tmp = path.with_extension(format!("json.tmp-{}-{}", std::process::id(), hex::encode(&raw[..4])));
    crate::data::write_new(&tmp, format!("{text}\n").as_bytes(), 0o600)?;
    let renamed = fs::rename(&tmp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed.map_err(|e| AuthorityError::Io(format!("couldn't replace {}: {e}", path.display())))?;
    drop(lock);
    Ok(token)
}

/// A file's modification time and inode.
type FileId = (SystemTime, u64);

/// The token file, cached until it changes on disk.
pub struct Tokens {
    path: PathBuf,
    /// The file's identity when read (mtime, inode: every write is a new
    /// file renamed into place) and its tokens.
    cache: Mutex<Option<(FileId, Vec<TokenRecord>)>>,
}

impl Tokens {
    /// Tokens from `path`.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            cache: Mutex::new(None),
        }
    }

    /// The role and name of `token`, if it is known.
    pub fn check(&self, token: &str) -> Result<Option<(TokenRole, String)>, AuthorityError> {
        use std::os::unix::fs::MetadataExt as _;
        let modified = fs::metadata(&self.path)
            .and_then(|m| Ok((m.modified()?, m.ino())))
            .map_err(|e| AuthorityError::Io(format!("couldn't read {}: {e}", self.path.display())))?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| AuthorityError::Io("token cache lock poisoned".into()))?;
        if cache.as_ref().is_none_or(|(m, _)| *m != modified) {
            *cache = Some((modified, read(&self.path)?.tokens));
        }
        let h = hash(token);
        Ok(cache
            .as_ref()
            .and_then(|(_, t)| t.iter().find(|r| r.sha256 == h))
            .map(|r| (r.role, r.name.clone())))
    }
}
