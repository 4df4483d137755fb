//! The verified-digest cache: what a node already proved about a model's
//! files, so that a restart does not re-read every byte.
//!
//! After a file's digests matched the signed manifest, its identity is
//! recorded with them: device, inode, size, and mtime and ctime to the
//! nanosecond. ctime cannot be set from user space (restoring an mtime with
//! `touch -d` moves it), and a file renamed over another has another inode,
//! so a file whose identity still matches has not been written since it was
//! hashed. Any file whose identity differs is hashed again before the model
//! serves. What this does not cover is said in ARCHITECTURE.md: root on the
//! node (who can change the clock, or the block device under the file
//! system), and bytes changed through a mapping the kernel does not account
//! in ctime.
//!
//! The cache file is authenticated with HMAC-SHA256 under a key only this
//! node holds (`digest-cache.key`, mode 0600, in its data directory). A
//! cache that does not verify (edited, truncated, another node's) is
//! discarded whole, and the reason is given to the caller to log: every file
//! is then hashed again. The file is replaced atomically after each
//! verification, so a crash leaves the old cache or the new one.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::NodeError;

const FORMAT: &str = "modelgate-digest-cache/v1";

/// A file's identity: if any part differs, the file may have changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileId {
    /// The identity of the file at `path` (not following a final symlink).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from(&std::fs::symlink_metadata(path)?))
    }
}

impl From<&std::fs::Metadata> for FileId {
    fn from(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// One resource's digest, as the manifest names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedResource {
    /// `path` or `path:start:end`.
    pub name: String,
    /// The digest algorithm label.
    pub algorithm: String,
    /// The digest, hex.
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    id: FileId,
    /// How the digests were made (method, hash, shard size).
    method: String,
    resources: Vec<CachedResource>,
    /// The kernel's fs-verity digest (SHA-256, hex) of the file when it was
    /// sealed before it was hashed: the file's content is bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fs_verity: Option<String>,
}

/// One file whose digests matched the signed manifest, to record.
#[derive(Clone, Debug)]
pub struct VerifiedFile {
    /// Its path.
    pub path: PathBuf,
    /// Its identity before it was read (and still after).
    pub id: FileId,
    /// Its fs-verity digest (hex), when it was sealed before it was read.
    pub fs_verity: Option<String>,
    /// Its digests.
    pub resources: Vec<CachedResource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    format: String,
    entries: BTreeMap<PathBuf, Entry>,
}

/// [`Body`] as written, borrowing the entries.
#[derive(Serialize)]
struct BodyRef<'a> {
    format: &'a str,
    entries: &'a BTreeMap<PathBuf, Entry>,
}

/// The cache of one node.
pub struct DigestCache {
    path: PathBuf,
    key: [u8; 32],
    entries: Mutex<BTreeMap<PathBuf, Entry>>,
}

impl std::fmt::Debug for DigestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestCache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn mac(key: &[u8; 32], body: &[u8]) -> Result<Hmac<Sha256>, String> {
    let mut m = <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(key).map_err(|e| e.to_string())?;
    m.update(body);
    Ok(m)
}

impl DigestCache {
    /// The cache in `data_dir` (its key made on first use). Returns the
    /// cache and, when an existing cache was discarded, why.
    pub fn open(data_dir: &Path) -> Result<(Self, Option<String>), NodeError> {
        std::fs::create_dir_all(data_dir).map_err(|e| NodeError::io(data_dir, e))?;
        let key_path = data_dir.join("digest-cache.key");
        let key = match std::fs::read(&key_path) {
            Ok(k) => k
                .try_into()
                .map_err(|_| NodeError::Config(format!("{} is not a 32-byte key", key_path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = [0u8; 32];
                rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut k)
                    .map_err(|e| NodeError::Config(format!("the operating system's random source failed: {e}")))?;
                crate::files::write_new(&key_path, &k, 0o600, false)?;
                k
            }
            Err(e) => return Err(NodeError::io(&key_path, e)),
        };
        let path = data_dir.join("digest-cache.json");
        let (entries, discarded) = match std::fs::read(&path) {
            Ok(bytes) => match Self::decode(&key, &bytes) {
                Ok(e) => (e, None),
                Err(why) => (
                    BTreeMap::new(),
                    Some(format!("{}: {why}; every file is hashed again", path.display())),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), None),
            Err(e) => (
                BTreeMap::new(),
                Some(format!("{}: {e}; every file is hashed again", path.display())),
            ),
        };
        Ok((
            Self {
                path,
                key,
                entries: Mutex::new(entries),
            },
            discarded,
        ))
    }

    fn decode(key: &[u8; 32], bytes: &[u8]) -> Result<BTreeMap<PathBuf, Entry>, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())?;
        let (body, tag) = text
            .strip_suffix('\n')
            .and_then(|t| t.rsplit_once('\n'))
            .ok_or("no authentication line")?;
        let tag = tag.strip_prefix("hmac-sha256 ").ok_or("no authentication line")?;
        let tag = hex::decode(tag).map_err(|_| "the authentication tag is not hex".to_owned())?;
        mac(key, body.as_bytes())?
            .verify_slice(&tag)
            .map_err(|_| "it is not authenticated by this node's key (edited, or another node's)".to_owned())?;
        let b: Body = serde_json::from_str(body).map_err(|e| format!("authenticated but unreadable: {e}"))?;
        if b.format != FORMAT {
            return Err(format!("format {:?}, this modelgate reads {FORMAT}", b.format));
        }
        Ok(b.entries)
    }

    /// The verified digests of `file` made by `method`, if its identity is
    /// still `id`.
    pub fn lookup(&self, file: &Path, id: &FileId, method: &str) -> Option<Vec<CachedResource>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(file)
            .filter(|e| e.id == *id && e.method == method)
            .map(|e| e.resources.clone())
    }

    /// The verified digests of `file` made by `method`, if the kernel's
    /// fs-verity digest of it is still `fs_verity`: a sealed file cannot be
    /// written, so its identity does not matter.
    pub fn lookup_sealed(&self, file: &Path, fs_verity: &str, method: &str) -> Option<Vec<CachedResource>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(file)
            .filter(|e| e.fs_verity.as_deref() == Some(fs_verity) && e.method == method)
            .map(|e| e.resources.clone())
    }

    /// Record verified digests (files of one model, all under `dir`), drop
    /// entries under `dir` for files not in `files`, and write the cache.
    pub fn record(&self, dir: &Path, method: &str, files: Vec<VerifiedFile>) -> Result<(), NodeError> {
        let mut entries = self.entries.lock().map_err(|_| NodeError::Poisoned("digest cache"))?;
        let keep: std::collections::BTreeSet<&PathBuf> = files.iter().map(|f| &f.path).collect();
        let stale: Vec<PathBuf> = entries
            .keys()
            .filter(|p| p.starts_with(dir) && !keep.contains(p))
            .cloned()
            .collect();
        for p in stale {
            entries.remove(&p);
        }
        for f in files {
            entries.insert(
                f.path,
                Entry {
                    id: f.id,
                    method: method.to_owned(),
                    resources: f.resources,
                    fs_verity: f.fs_verity,
                },
            );
        }
        self.write(&entries)
    }

    /// Forget every file under `dir`: what the cache said of them was
    /// proven wrong (a full re-hash disagreed), so nothing of it is trusted.
    pub fn forget(&self, dir: &Path) -> Result<(), NodeError> {
        let mut entries = self.entries.lock().map_err(|_| NodeError::Poisoned("digest cache"))?;
        entries.retain(|p, _| !p.starts_with(dir));
        self.write(&entries)
    }

    fn write(&self, entries: &BTreeMap<PathBuf, Entry>) -> Result<(), NodeError> {
        let body = serde_json::to_string(&BodyRef {
            format: FORMAT,
            entries,
        })
        .map_err(|e| NodeError::Config(format!("encoding the digest cache: {e}")))?;
        let tag = hex::encode(
            mac(&self.key, body.as_bytes())
                .map_err(NodeError::Config)?
                .finalize()
                .into_bytes(),
        );
        crate::files::write_atomic(&self.path, format!("{body}\nhmac-sha256 {tag}\n").as_bytes())
    }
}
