//! The integrity check: every file of a model hashes to what its signed
//! manifest says (EG-MODEL-001 runtime integrity).
//!
//! One function serves both of its uses:
//!
//! - the lifecycle's step before the model serves, which trusts what the
//!   verified-digest cache vouches for (a file whose identity, or whose
//!   fs-verity digest, is what it was when it last matched) and reads the
//!   rest;
//! - the background full re-verification, which reads every byte whatever
//!   the cache says, paced so that it does not starve inference, and on any
//!   mismatch forgets what the cache said of the model: the next check
//!   reads everything again and contains it.
//!
//! With fs-verity on, each file is sealed before it is read (see
//! [`crate::fs_verity`]), so the bytes hashed are the bytes the kernel then
//! checks on every read; the cache binds the measured digest.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;

use modelgate_oms::{IgnorePath, Manifest, Method, VerifyOptions};

/// Progress, pace and cancellation of a check's reads.
pub use modelgate_oms::HashProgress;

use crate::digest_cache::{CachedResource, DigestCache, FileId, VerifiedFile};
use crate::fs_verity::{self, Seal};
use crate::lifecycle::{read_bundle, Failure, ModelSpec};
use crate::ContainmentReason;

/// How a check reads the model.
#[derive(Clone, Copy, Debug, Default)]
pub struct IntegrityOptions<'a> {
    /// The node's verified-digest cache: recorded into after a match.
    pub cache: Option<&'a DigestCache>,
    /// Whether to trust what `cache` vouches for (false: read every byte).
    pub trust_cache: bool,
    /// Seal each file with fs-verity before it is read, where the kernel can.
    pub fs_verity: bool,
    /// Progress, pace and cancellation of the reads.
    pub progress: Option<&'a HashProgress>,
}

/// What a check that passed saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Manifest resources matched.
    pub resources: usize,
    /// Files not read: the cache vouched for them.
    pub vouched: usize,
    /// Files sealed with fs-verity.
    pub sealed: usize,
    /// Files read.
    pub read: usize,
    /// With fs-verity asked for, why some file could not be sealed.
    pub unsealed: Option<String>,
}

impl Verified {
    /// As the lifecycle step's detail.
    pub fn detail(&self) -> String {
        let mut d = format!(
            "{} files match the signed manifest ({} vouched for by the verified-digest cache, {} read",
            self.resources, self.vouched, self.read
        );
        if self.sealed > 0 {
            d.push_str(&format!(", {} sealed with fs-verity", self.sealed));
        }
        d.push(')');
        if let Some(why) = &self.unsealed {
            d.push_str(&format!("; fs-verity not used: {why}"));
        }
        d
    }
}

/// A file the check read, with what it knew of it before.
struct Read {
    rel: String,
    path: PathBuf,
    id: FileId,
    fs_verity: Option<String>,
}

fn modified(e: String) -> Failure {
    (ContainmentReason::UnauthorizedModification, e)
}

/// The signed manifest of `spec` and the options it must be hashed with.
fn signed(spec: &ModelSpec) -> Result<(Manifest, modelgate_oms::HashOptions), Failure> {
    let bundle = read_bundle(&spec.bundle)?;
    let parsed =
        modelgate_oms::Bundle::parse(&bundle).map_err(|e| (ContainmentReason::SignatureInvalid, e.to_string()))?;
    let signed = modelgate_oms::decode_statement(&parsed.envelope.payload)
        .map_err(|e| (ContainmentReason::SignatureInvalid, e.to_string()))?;
    let mut opts = VerifyOptions::default();
    if let Ok(Some(rule)) = IgnorePath::from_user_path(&spec.dir, &spec.bundle) {
        opts.ignore.push(rule);
    }
    let hash_opts = modelgate_oms::verify_hash_options(&signed, &opts).map_err(|e| modified(e.to_string()))?;
    Ok((signed, hash_opts))
}

/// Check `spec`'s files against its signed manifest, as `o` says.
pub fn verify(spec: &ModelSpec, o: IntegrityOptions<'_>) -> Result<Verified, Failure> {
    let (signed, hash_opts) = signed(spec)?;
    let method = format!("{:?} {:?}", hash_opts.method, hash_opts.hash);
    let single = !spec.dir.is_dir();
    let path_of = |rel: &str| if single { spec.dir.clone() } else { spec.dir.join(rel) };
    let reused = RefCell::new(Vec::new());
    let read = RefCell::new(Vec::new());
    let unsealed = RefCell::new(None);
    // Each file is sealed first (when asked), then its identity taken, before
    // it is read: a file the cache vouches for is not read, and one that
    // changes while it is read is not recorded.
    let hashed = modelgate_oms::hash_model_filtered(&spec.dir, &hash_opts, o.progress, |rel| {
        let path = path_of(rel);
        let fs_verity = match o.fs_verity.then(|| fs_verity::seal(&path)) {
            Some(Seal::Sealed(d)) => Some(d),
            Some(Seal::Unavailable(why)) => {
                unsealed.borrow_mut().get_or_insert(why);
                None
            }
            None => None,
        };
        let Ok(id) = FileId::of(&path) else { return true };
        let vouched = o.cache.filter(|_| o.trust_cache).and_then(|c| match &fs_verity {
            Some(d) => c.lookup_sealed(&path, d, &method),
            None => c.lookup(&path, &id, &method),
        });
        if let Some(resources) = vouched {
            reused.borrow_mut().push(VerifiedFile {
                path,
                id,
                fs_verity,
                resources,
            });
            return false;
        }
        read.borrow_mut().push(Read {
            rel: rel.to_owned(),
            path,
            id,
            fs_verity,
        });
        true
    });
    // Every byte was to be read and something disagrees with what the cache
    // vouched for (a digest, or a read the kernel refused): none of it is
    // trusted again for this model. A failure to write the cache costs
    // nothing here: the model is contained anyway.
    let distrust = || {
        if let Some(c) = o.cache.filter(|_| !o.trust_cache) {
            let _ = c.forget(&spec.dir);
        }
    };
    let fresh = match hashed {
        Ok(m) => m,
        // Stopped, not disproven: the cache stands.
        Err(e @ modelgate_oms::Error::Cancelled) => return Err(modified(e.to_string())),
        Err(e) => {
            distrust();
            return Err(modified(e.to_string()));
        }
    };
    let reused = reused.into_inner();
    let read = read.into_inner();
    let mut resources = fresh.resources.clone();
    for f in &reused {
        for r in &f.resources {
            resources.push(modelgate_oms::Resource {
                name: r.name.clone(),
                algorithm: r.algorithm.clone(),
                digest: hex::decode(&r.digest).map_err(|e| modified(format!("the digest cache: {e}")))?,
            });
        }
    }
    let actual = Manifest::new(fresh.model_name.clone(), fresh.serialization.clone(), resources)
        .map_err(|e| modified(e.to_string()))?;
    let diff = signed.diff(&actual).map_err(|e| modified(e.to_string()))?;
    if !diff.is_empty() {
        distrust();
        return Err(modified(format!(
            "changed {:?}, missing {:?}, extra {:?}",
            diff.changed, diff.missing, diff.extra
        )));
    }
    let verified = Verified {
        resources: actual.resources.len(),
        vouched: reused.len(),
        sealed: reused.iter().filter(|f| f.fs_verity.is_some()).count()
            + read.iter().filter(|f| f.fs_verity.is_some()).count(),
        read: read.len(),
        unsealed: unsealed.into_inner(),
    };
    if let Some(c) = o.cache {
        // A cache that cannot be written costs a re-hash at the next start, nothing else.
        let _ = c.record(&spec.dir, &method, recorded(reused, read, &fresh, hash_opts.method));
    }
    Ok(verified)
}

/// What to record: the files vouched for, and those read whose identity
/// did not change while they were read (their digest vouches for nothing).
fn recorded(reused: Vec<VerifiedFile>, read: Vec<Read>, fresh: &Manifest, method: Method) -> Vec<VerifiedFile> {
    let mut by_file: BTreeMap<&str, Vec<CachedResource>> = BTreeMap::new();
    for r in &fresh.resources {
        by_file
            .entry(resource_file(&r.name, method))
            .or_default()
            .push(CachedResource {
                name: r.name.clone(),
                algorithm: r.algorithm.clone(),
                digest: hex::encode(&r.digest),
            });
    }
    let mut files = reused;
    for f in read {
        if FileId::of(&f.path).ok() != Some(f.id) {
            continue;
        }
        files.push(VerifiedFile {
            resources: by_file.remove(f.rel.as_str()).unwrap_or_default(),
            path: f.path,
            id: f.id,
            fs_verity: f.fs_verity,
        });
    }
    files
}

/// The file a manifest resource is part of: `path`, or `path:start:end`.
fn resource_file(name: &str, method: Method) -> &str {
    match method {
        Method::Files => name,
        Method::Shards { .. } => name.rsplitn(3, ':').nth(2).unwrap_or(name),
    }
}
