//! The state digest, maintained incrementally.
//!
//! The digest commits to every record of the state, so two folds that
//! disagree about any record disagree about the digest. Hashing the whole
//! state's canonical JSON after every entry made each read after a commit
//! cost the size of the state (187 ms at 30,000 approvals); instead each
//! record is hashed once when it changes, records sit in 4,096 buckets by the
//! SHA-256 of their key, buckets in 64 groups, and only what changed is
//! hashed again (a record, its bucket, its group, its collection).
//!
//! The encoding (all hashes SHA-256, integers 8-byte big-endian):
//!
//! ```text
//! record     = H("modelgate/state-record/v2\n" || name || "\n" || canonical JSON of the record)
//! bucket b   = H(for each record whose H(key) starts with the 12 bits b, in H(key) order:
//!                H(key) || record)                                    (all zero when empty)
//! group g    = H(bucket[64g] || .. || bucket[64g + 63])
//! collection = H("modelgate/state-collection/v2\n" || name || "\n" || count || group[0] .. group[63])
//! digest     = H("modelgate/governance-state/v2\n" || size || trust-root record || policy record
//!                || models || approvals || revocations || exceptions || nodes)
//! ```
//!
//! where the trust-root and policy records are all zero when absent, and the
//! five collections are keyed by model digest, approval id, revoked model,
//! exception id and node id.

use std::collections::BTreeSet;
use std::sync::Mutex;

use modelgate_tlog::Hash;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::canonical::to_canonical;

const BUCKETS: usize = 4096;
const GROUPS: usize = 64;
const ZERO: Hash = [0; 32];

/// The keyed collections of the state, in digest order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Collection {
    Models,
    Approvals,
    Revocations,
    Exceptions,
    Nodes,
}

impl Collection {
    const ALL: [Collection; 5] = [
        Collection::Models,
        Collection::Approvals,
        Collection::Revocations,
        Collection::Exceptions,
        Collection::Nodes,
    ];

    fn name(self) -> &'static str {
        match self {
            Collection::Models => "models",
            Collection::Approvals => "approvals",
            Collection::Revocations => "revocations",
            Collection::Exceptions => "exceptions",
            Collection::Nodes => "nodes",
        }
    }
}

/// Hash one record. A record that cannot be encoded (none of the state's
/// can: plain strings and integers below 2^53) still gets a distinct hash
/// rather than a colliding one.
pub(crate) fn record_hash(name: &str, record: &impl Serialize) -> Hash {
    let mut h = Sha256::new();
    h.update(b"modelgate/state-record/v2\n");
    h.update(name.as_bytes());
    h.update(b"\n");
    match serde_json::to_value(record)
        .map_err(|e| e.to_string())
        .and_then(|v| to_canonical(&v).map_err(|e| e.to_string()))
    {
        Ok(bytes) => h.update(bytes),
        Err(e) => h.update(format!("unencodable record: {e}")),
    }
    h.finalize().into()
}

/// One collection's record hashes: per bucket, (H(key), record hash)
/// sorted by H(key) — 64 bytes a record, whatever the key's length.
#[derive(Clone, Default)]
struct Set {
    buckets: Vec<Vec<(Hash, Hash)>>,
    bucket_digests: Vec<Hash>,
    group_digests: Vec<Hash>,
    dirty_buckets: BTreeSet<usize>,
    count: u64,
    digest: Option<Hash>,
}

impl Set {
    fn new() -> Self {
        Self {
            buckets: vec![Vec::new(); BUCKETS],
            bucket_digests: vec![ZERO; BUCKETS],
            group_digests: vec![ZERO; GROUPS],
            ..Self::default()
        }
    }

    fn put(&mut self, key: &str, hash: Option<Hash>) {
        let k: Hash = Sha256::digest(key.as_bytes()).into();
        let b = (usize::from(k[0]) << 4) | usize::from(k[1] >> 4);
        let bucket = &mut self.buckets[b];
        match (bucket.binary_search_by(|(x, _)| x.cmp(&k)), hash) {
            (Ok(i), Some(h)) => bucket[i].1 = h,
            (Ok(i), None) => {
                bucket.remove(i);
                self.count -= 1;
            }
            (Err(i), Some(h)) => {
                bucket.insert(i, (k, h));
                self.count += 1;
            }
            (Err(_), None) => {}
        }
        self.dirty_buckets.insert(b);
        self.digest = None;
    }

    fn digest(&mut self, name: &str) -> Hash {
        let mut groups = BTreeSet::new();
        for b in std::mem::take(&mut self.dirty_buckets) {
            self.bucket_digests[b] = if self.buckets[b].is_empty() {
                ZERO
            } else {
                let mut h = Sha256::new();
                for (k, r) in &self.buckets[b] {
                    h.update(k);
                    h.update(r);
                }
                h.finalize().into()
            };
            groups.insert(b / (BUCKETS / GROUPS));
        }
        for g in groups {
            let mut h = Sha256::new();
            let per = BUCKETS / GROUPS;
            for d in &self.bucket_digests[g * per..(g + 1) * per] {
                h.update(d);
            }
            self.group_digests[g] = h.finalize().into();
        }
        *self.digest.get_or_insert_with(|| {
            let mut h = Sha256::new();
            h.update(b"modelgate/state-collection/v2\n");
            h.update(name.as_bytes());
            h.update(b"\n");
            h.update(self.count.to_be_bytes());
            for d in &self.group_digests {
                h.update(d);
            }
            h.finalize().into()
        })
    }
}

#[derive(Clone)]
struct Inner {
    sets: Vec<Set>,
    /// Keys whose record changed since their hash was last taken.
    dirty: BTreeSet<(Collection, String)>,
    trust_root: Option<Hash>,
    policy: Option<Hash>,
    /// The singletons changed since their hash was last taken.
    trust_root_dirty: bool,
    policy_dirty: bool,
    top: Option<(u64, Hash)>,
    /// False for a copy that keeps no cache (see [`DigestCache::untracked`]):
    /// changes are not recorded, and the first digest hashes every record.
    tracking: bool,
}

/// What the digest needs to read from the state.
pub(crate) trait Records {
    /// The record under `key` in `c`, hashed; `None` if there is none.
    fn record(&self, c: Collection, key: &str) -> Option<Hash>;
    /// The trust-root record, hashed.
    fn trust_root_record(&self) -> Option<Hash>;
    /// The policy record, hashed.
    fn policy_record(&self) -> Option<Hash>;
    /// Every key of `c`.
    fn keys(&self, c: Collection) -> Vec<String>;
}

/// The digest's cache: record hashes by bucket and what changed since.
pub(crate) struct DigestCache(Mutex<Inner>);

impl Clone for DigestCache {
    fn clone(&self) -> Self {
        let inner = match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        Self(Mutex::new(inner))
    }
}

impl std::fmt::Debug for DigestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestCache")
    }
}

impl DigestCache {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Inner {
            sets: Collection::ALL.iter().map(|_| Set::new()).collect(),
            dirty: BTreeSet::new(),
            trust_root: None,
            policy: None,
            trust_root_dirty: true,
            policy_dirty: true,
            top: None,
            tracking: true,
        }))
    }

    /// A cache that records nothing, for a copy of a state whose digest is
    /// not asked for (the authority's working copy): it costs no memory per
    /// record. Its first digest hashes every record, and it tracks from then.
    pub(crate) fn untracked() -> Self {
        let c = Self::new();
        if let Ok(mut i) = c.0.lock() {
            i.tracking = false;
            i.sets.clear();
        }
        c
    }

    fn inner(&mut self) -> &mut Inner {
        match self.0.get_mut() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        }
    }

    /// The record under `key` in `c` changed.
    pub(crate) fn touch(&mut self, c: Collection, key: &str) {
        let i = self.inner();
        if i.tracking {
            i.dirty.insert((c, key.to_owned()));
        }
        i.top = None;
    }

    /// The trust root changed.
    pub(crate) fn touch_trust_root(&mut self) {
        let i = self.inner();
        i.trust_root_dirty = true;
        i.top = None;
    }

    /// The policy changed.
    pub(crate) fn touch_policy(&mut self) {
        let i = self.inner();
        i.policy_dirty = true;
        i.top = None;
    }

    /// The digest of a state of `size` entries whose records `r` reads.
    pub(crate) fn digest(&self, size: u64, r: &impl Records) -> Hash {
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let i = &mut *g;
        if let Some((s, d)) = i.top {
            if s == size {
                return d;
            }
        }
        if !i.tracking {
            i.sets = Collection::ALL.iter().map(|_| Set::new()).collect();
            for c in Collection::ALL {
                for k in r.keys(c) {
                    i.dirty.insert((c, k));
                }
            }
            i.trust_root_dirty = true;
            i.policy_dirty = true;
            i.tracking = true;
        }
        for (c, key) in std::mem::take(&mut i.dirty) {
            let h = r.record(c, &key);
            i.sets[c as usize].put(&key, h);
        }
        if i.trust_root_dirty {
            i.trust_root = r.trust_root_record();
            i.trust_root_dirty = false;
        }
        if i.policy_dirty {
            i.policy = r.policy_record();
            i.policy_dirty = false;
        }
        let mut h = Sha256::new();
        h.update(b"modelgate/governance-state/v2\n");
        h.update(size.to_be_bytes());
        h.update(i.trust_root.unwrap_or(ZERO));
        h.update(i.policy.unwrap_or(ZERO));
        for c in Collection::ALL {
            h.update(i.sets[c as usize].digest(c.name()));
        }
        let d: Hash = h.finalize().into();
        i.top = Some((size, d));
        d
    }
}
