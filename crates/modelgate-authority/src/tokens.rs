//! Write-API bearer tokens. Only their SHA-256 is stored; the token itself is
//! shown once, when created. The file is re-read when it changes, so tokens
//! created while the authority runs work at once.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
    pub fn parse(s: &str) -> Result<Self, AuthorityError> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            AuthorityError::config(format!(
                "unknown role {s:?}; one of admin, root, model-signer, approver, policy-admin, node-admin, node"
            ))
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
        fs::read_to_string(path).map_err(|e| AuthorityError::io(format!("couldn't read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| AuthorityError::config(format!("{}: {e}", path.display())))
}

/// A new token of `role` for the authority whose data directory is `data`
/// (refused when it is not an initialised authority).
pub fn create_for(data: &Path, role: TokenRole, name: &str) -> Result<String, AuthorityError> {
    let d = crate::DataDir::new(data);
    if !d.is_initialised() {
        return Err(AuthorityError::config(format!(
            "{} is not an initialised authority",
            data.display()
        )));
    }
    create(&d.tokens(), role, name)
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
        .map_err(|e| AuthorityError::io(format!("couldn't open {}: {e}", lock_path.display())))?;
    lock.lock()
        .map_err(|e| AuthorityError::io(format!("couldn't lock {}: {e}", lock_path.display())))?;
    let mut file = if path.exists() {
        read(path)?
    } else {
        TokenFile::default()
    };
    let mut raw = [0u8; 32];
    rand_core::RngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw)
        .map_err(|e| AuthorityError::io(format!("the operating system's random source failed: {e}")))?;
    let token = format!("mgt_{}", hex::encode(raw));
    file.tokens.push(TokenRecord {
        name: name.to_owned(),
        role,
        sha256: hash(&token),
    });
    let text = serde_json::to_string_pretty(&file).map_err(|e| AuthorityError::config(e.to_string()))?;
    // Write beside and rename, so a reader never sees half a file.
    let tmp = path.with_extension(format!("json.tmp-{}-{}", std::process::id(), hex::encode(&raw[..4])));
    crate::data::write_new(&tmp, format!("{text}\n").as_bytes(), 0o600)?;
    let renamed = fs::rename(&tmp, path);
    if renamed.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    renamed.map_err(|e| AuthorityError::io(format!("couldn't replace {}: {e}", path.display())))?;
    drop(lock);
    Ok(token)
}

/// A file's modification time and inode.
type FileId = (SystemTime, u64);

/// Without a watcher: how long a known token is trusted without looking at
/// the file again (a removed token stops working within this).
const RECHECK: Duration = Duration::from_secs(1);

struct Cached {
    /// The watcher's generation this copy was read at.
    generation: u64,
    id: FileId,
    checked: Instant,
    tokens: Vec<TokenRecord>,
}

/// The token file, read again when it changes.
///
/// An inotify watcher on the file's directory counts every change to the
/// file (a write, a rename over it, a removal); a request compares that
/// count with its copy's and reads the file only when it moved, so no
/// request costs a system call. The kernel queues the event before the
/// `rename` of `authority token create` returns and the watcher counts it
/// at once, so a new token works (and a removed one stops) as soon as that
/// thread has run, well under a millisecond on an idle machine. Where inotify is
/// not available the file is looked at (one `stat`) at most once a second
/// for a known token, and at once for an unknown one.
pub struct Tokens {
    path: PathBuf,
    cache: Mutex<Option<Cached>>,
    /// Changes seen by the watcher; `None` when there is no watcher.
    changes: Option<Arc<AtomicU64>>,
    /// Times the file was looked at (its metadata read).
    looks: AtomicU64,
}

impl Tokens {
    /// Tokens from `path`, watched for changes.
    pub fn new(path: &Path) -> Self {
        let changes = match watch(path) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("{}: {e}; the file is checked once a second instead", path.display());
                None
            }
        };
        Self {
            path: path.to_owned(),
            cache: Mutex::new(None),
            changes,
            looks: AtomicU64::new(0),
        }
    }

    /// The role and name of `token`, if it is known.
    pub fn check(&self, token: &str) -> Result<Option<(TokenRole, String)>, AuthorityError> {
        use std::os::unix::fs::MetadataExt as _;
        let h = hash(token);
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| AuthorityError::io("token cache lock poisoned"))?;
        let find = |c: &Option<Cached>| {
            c.as_ref()
                .and_then(|c| c.tokens.iter().find(|r| r.sha256 == h))
                .map(|r| (r.role, r.name.clone()))
        };
        let generation = self.changes.as_ref().map(|c| c.load(Ordering::Acquire));
        let look = match (generation, cache.as_ref()) {
            (_, None) => true,
            (Some(g), Some(c)) => g != c.generation,
            (None, Some(c)) => find(&cache).is_none() || c.checked.elapsed() >= RECHECK,
        };
        if !look {
            return Ok(find(&cache));
        }
        self.looks.fetch_add(1, Ordering::Relaxed);
        let id = fs::metadata(&self.path)
            .and_then(|m| Ok((m.modified()?, m.ino())))
            .map_err(|e| AuthorityError::io(format!("couldn't read {}: {e}", self.path.display())))?;
        let generation = generation.unwrap_or(0);
        match cache.as_mut() {
            Some(c) if c.id == id => {
                c.checked = Instant::now();
                c.generation = generation;
            }
            _ => {
                *cache = Some(Cached {
                    generation,
                    id,
                    checked: Instant::now(),
                    tokens: read(&self.path)?.tokens,
                })
            }
        }
        Ok(find(&cache))
    }
}

/// Count changes to `path` (events in its directory naming it) on a thread
/// of its own.
fn watch(path: &Path) -> Result<Arc<AtomicU64>, String> {
    use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_owned();
    let name = path.file_name().ok_or("the token file has no name")?.to_owned();
    let fd = inotify::init(CreateFlags::CLOEXEC).map_err(|e| format!("inotify: {e}"))?;
    let flags = WatchFlags::CLOSE_WRITE
        | WatchFlags::MODIFY
        | WatchFlags::MOVED_TO
        | WatchFlags::MOVED_FROM
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::ATTRIB;
    inotify::add_watch(&fd, &dir, flags).map_err(|e| format!("watching {}: {e}", dir.display()))?;
    let changes = Arc::new(AtomicU64::new(1));
    let counter = Arc::clone(&changes);
    std::thread::Builder::new()
        .name("modelgate-tokens-watch".into())
        .spawn(move || {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
            let mut reader = inotify::Reader::new(&fd, &mut buf);
            loop {
                match reader.next() {
                    Ok(ev) => {
                        if ev.file_name().is_some_and(|n| n.to_bytes() == name.as_encoded_bytes()) {
                            counter.fetch_add(1, Ordering::Release);
                        }
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        // Without events the cache could go stale for ever: from now
                        // on every request reads the file's metadata again.
                        tracing::error!("watching the token file stopped: {e}");
                        counter.store(u64::MAX, Ordering::Release);
                        return;
                    }
                }
            }
        })
        .map_err(|e| format!("starting the watcher: {e}"))?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_tokens_work_at_once_and_removed_ones_stop_at_once() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tokens.json");
        let t1 = create(&path, TokenRole::Approver, "a").unwrap();
        let tokens = Tokens::new(&path);
        assert_eq!(tokens.check(&t1).unwrap().map(|t| t.0), Some(TokenRole::Approver));
        let t2 = create(&path, TokenRole::Node, "b").unwrap();
        // Works as soon as the watcher has seen the rename (well under a
        // millisecond on an idle machine; bounded here generously).
        let deadline = Instant::now() + Duration::from_millis(200);
        while tokens.check(&t2).unwrap().is_none() {
            assert!(Instant::now() < deadline, "a new token does not work");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(tokens.check(&t2).unwrap().map(|t| t.0), Some(TokenRole::Node));
        assert!(tokens.check("mgt_unknown").unwrap().is_none());
        // The file replaced without t1: gone as soon as the watcher saw it.
        let text = std::fs::read_to_string(&path).unwrap();
        let mut f: serde_json::Value = serde_json::from_str(&text).unwrap();
        f["tokens"].as_array_mut().unwrap().remove(0);
        std::fs::write(path.with_extension("new"), f.to_string()).unwrap();
        std::fs::rename(path.with_extension("new"), &path).unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        while tokens.check(&t1).unwrap().is_some() {
            assert!(Instant::now() < deadline, "a removed token still works");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(tokens.check(&t2).unwrap().is_some());
    }

    #[test]
    fn a_known_token_costs_no_look_at_the_file() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("tokens.json");
        let t = create(&path, TokenRole::Approver, "a").unwrap();
        let tokens = Tokens::new(&path);
        assert!(tokens.changes.is_some(), "no watcher on this system");
        assert!(tokens.check(&t).unwrap().is_some());
        let looks = tokens.looks.load(Ordering::Relaxed);
        for _ in 0..1000 {
            assert!(tokens.check(&t).unwrap().is_some());
            assert!(tokens.check("mgt_unknown").unwrap().is_none());
        }
        assert_eq!(
            tokens.looks.load(Ordering::Relaxed),
            looks,
            "requests looked at the file"
        );
        // A change is one look, then none again.
        create(&path, TokenRole::Node, "b").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(tokens.check(&t).unwrap().is_some());
        assert_eq!(tokens.looks.load(Ordering::Relaxed), looks + 1);
    }
}
