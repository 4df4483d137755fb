//! The manifest: which resources (files, or shards of files) a model has, and their digests.
//!
//! Names, ordering and the root digest follow the reference `model-signing` 1.1.1
//! exactly, because the root digest is what other tools and our governance log use to
//! name a model: resources are sorted by path component (then shard start and end),
//! and the root digest is SHA-256 over the concatenated raw resource digests.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Mismatch, Result};
use crate::walk::component_cmp;

/// The shard size the reference uses when none is given: 10^9 bytes.
pub const DEFAULT_SHARD_SIZE: u64 = 1_000_000_000;

/// The hash applied to each resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum HashAlgorithm {
    /// SHA-256 (the reference default).
    Sha256,
    /// BLAKE3, parallel within a file.
    Blake3,
    /// BLAKE2b-512: the reference's `blake2` (named `blake2b` in what it writes) and
    /// the Go client's `blake2b`. The reference's own verifier (1.1.1) cannot re-hash
    /// its blake2b bundles; ours can.
    Blake2b,
}

impl HashAlgorithm {
    /// The length of one digest.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 | HashAlgorithm::Blake3 => 32,
            HashAlgorithm::Blake2b => 64,
        }
    }

    /// The name used in the manifest's `hash_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Blake3 => "blake3",
            HashAlgorithm::Blake2b => "blake2b",
        }
    }

    /// Parses a `hash_type` value.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sha256" => Ok(HashAlgorithm::Sha256),
            "blake3" => Ok(HashAlgorithm::Blake3),
            "blake2b" => Ok(HashAlgorithm::Blake2b),
            other => Err(Error::Statement(format!(
                "unsupported hash_type {other:?} (expected sha256, blake3 or blake2b)"
            ))),
        }
    }
}

/// How a model is cut into resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// One resource per file.
    Files,
    /// Files cut into shards of `shard_size` bytes; an empty file has no shard.
    Shards {
        /// Bytes per shard (the last shard of a file may be shorter).
        shard_size: u64,
    },
}

/// The serialization parameters recorded in (and read back from) the signed predicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    /// Files or shards.
    pub method: Method,
    /// The per-resource hash.
    pub hash: HashAlgorithm,
    /// Whether symbolic links inside the root were followed.
    pub allow_symlinks: bool,
    /// Paths (relative to the model root) left out of the manifest.
    pub ignore_paths: Vec<String>,
}

impl Serialization {
    /// The `algorithm` string the reference writes on each resource.
    pub fn resource_algorithm(&self) -> String {
        match self.method {
            Method::Files => self.hash.as_str().to_owned(),
            Method::Shards { shard_size } => format!("{}-sharded-{shard_size}", self.hash.as_str()),
        }
    }
}

/// One named, hashed piece of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `path` for files, `path:start:end` for shards.
    pub name: String,
    /// The digest algorithm label (`sha256`, `blake3`, `sha256-sharded-N`).
    pub algorithm: String,
    /// The raw digest bytes.
    pub digest: Vec<u8>,
}

/// The parsed name of a resource, used for ordering and for reporting by file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceKey {
    pub path: String,
    pub range: Option<(u64, u64)>,
}

impl ResourceKey {
    pub fn parse(name: &str, method: Method) -> Result<Self> {
        match method {
            Method::Files => Ok(ResourceKey {
                path: name.to_owned(),
                range: None,
            }),
            Method::Shards { .. } => {
                let parts: Vec<&str> = name.split(':').collect();
                let bad = || Error::Statement(format!("shard resource name {name:?} is not path:start:end"));
                if parts.len() != 3 {
                    return Err(bad());
                }
                let start = parts[1].parse::<u64>().map_err(|_| bad())?;
                let end = parts[2].parse::<u64>().map_err(|_| bad())?;
                if end <= start {
                    return Err(bad());
                }
                Ok(ResourceKey {
                    path: parts[0].to_owned(),
                    range: Some((start, end)),
                })
            }
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        component_cmp(&self.path, &other.path).then(self.range.cmp(&other.range))
    }
}

/// A model's manifest: its name, how it was serialized, and its sorted resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Informative only (the final path component); not covered by comparisons.
    pub model_name: String,
    /// How the resources were produced.
    pub serialization: Serialization,
    /// The resources, in canonical order.
    pub resources: Vec<Resource>,
}

impl Manifest {
    /// Builds a manifest, sorting resources into the canonical order and refusing
    /// duplicate names (a duplicate would let one entry shadow another).
    pub fn new(model_name: String, serialization: Serialization, resources: Vec<Resource>) -> Result<Self> {
        let mut keyed = resources
            .into_iter()
            .map(|r| Ok((ResourceKey::parse(&r.name, serialization.method)?, r)))
            .collect::<Result<Vec<_>>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        for pair in keyed.windows(2) {
            if pair[0].1.name == pair[1].1.name {
                return Err(Error::Statement(format!(
                    "resource {:?} is listed twice",
                    pair[0].1.name
                )));
            }
        }
        Ok(Manifest {
            model_name,
            serialization,
            resources: keyed.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// SHA-256 over the raw resource digests in canonical order: the model's identity.
    pub fn root_digest(&self) -> [u8; 32] {
        root_digest_of(self.resources.iter().map(|r| r.digest.as_slice()))
    }

    /// What differs between `self` (signed) and `actual` (on disk), by file path.
    pub fn diff(&self, actual: &Manifest) -> Result<Mismatch> {
        let method = self.serialization.method;
        let signed = by_name(self);
        let found = by_name(actual);
        let mut changed = BTreeSet::new();
        let mut missing_parts = BTreeSet::new();
        let mut extra_parts = BTreeSet::new();
        for (name, digest) in &signed {
            match found.get(name) {
                Some(d) if d == digest => {}
                Some(_) => {
                    changed.insert(ResourceKey::parse(name, method)?.path);
                }
                None => {
                    missing_parts.insert(ResourceKey::parse(name, method)?.path);
                }
            }
        }
        for name in found.keys() {
            if !signed.contains_key(name) {
                extra_parts.insert(ResourceKey::parse(name, actual.serialization.method)?.path);
            }
        }
        // A file present on both sides whose shards do not line up has changed size:
        // report it once, as changed, rather than as both missing and extra.
        let signed_files: BTreeSet<String> = signed
            .keys()
            .map(|n| ResourceKey::parse(n, method).map(|k| k.path))
            .collect::<Result<_>>()?;
        let found_files: BTreeSet<String> = found
            .keys()
            .map(|n| ResourceKey::parse(n, actual.serialization.method).map(|k| k.path))
            .collect::<Result<_>>()?;
        let mut missing = Vec::new();
        for p in missing_parts {
            if found_files.contains(&p) {
                changed.insert(p);
            } else {
                missing.push(p);
            }
        }
        let mut extra = Vec::new();
        for p in extra_parts {
            if signed_files.contains(&p) {
                changed.insert(p);
            } else {
                extra.push(p);
            }
        }
        let mut changed: Vec<String> = changed.into_iter().collect();
        for list in [&mut missing, &mut extra, &mut changed] {
            list.sort_by(|a, b| component_cmp(a, b));
        }
        Ok(Mismatch {
            missing,
            extra,
            changed,
        })
    }
}

fn by_name(m: &Manifest) -> BTreeMap<&str, (&str, &[u8])> {
    m.resources
        .iter()
        .map(|r| (r.name.as_str(), (r.algorithm.as_str(), r.digest.as_slice())))
        .collect()
}

/// SHA-256 over digests in the order given.
pub fn root_digest_of<'a>(digests: impl Iterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for d in digests {
        h.update(d);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ser(method: Method) -> Serialization {
        Serialization {
            method,
            hash: HashAlgorithm::Sha256,
            allow_symlinks: false,
            ignore_paths: vec![],
        }
    }

    fn res(name: &str, d: u8) -> Resource {
        Resource {
            name: name.into(),
            algorithm: "sha256".into(),
            digest: vec![d; 32],
        }
    }

    #[test]
    fn shards_sort_numerically_within_a_file() {
        let m = Manifest::new(
            "m".into(),
            ser(Method::Shards { shard_size: 10 }),
            vec![
                res("a:10:20", 1),
                res("a:0:10", 2),
                res("a/b:0:5", 3),
                res("a:100:110", 4),
            ],
        )
        .unwrap();
        let names: Vec<_> = m.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a:0:10", "a:10:20", "a:100:110", "a/b:0:5"]);
    }

    #[test]
    fn duplicates_are_refused() {
        let err = Manifest::new("m".into(), ser(Method::Files), vec![res("a", 1), res("a", 2)]).unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn diff_reports_by_file() {
        let signed = Manifest::new(
            "m".into(),
            ser(Method::Files),
            vec![res("a", 1), res("b", 2), res("c", 3)],
        )
        .unwrap();
        let actual = Manifest::new(
            "m".into(),
            ser(Method::Files),
            vec![res("a", 1), res("b", 9), res("d", 4)],
        )
        .unwrap();
        let d = signed.diff(&actual).unwrap();
        assert_eq!(d.changed, ["b"]);
        assert_eq!(d.missing, ["c"]);
        assert_eq!(d.extra, ["d"]);
    }

    #[test]
    fn resized_sharded_file_is_changed_not_missing() {
        let s = ser(Method::Shards { shard_size: 10 });
        let signed = Manifest::new("m".into(), s.clone(), vec![res("a:0:10", 1), res("a:10:15", 2)]).unwrap();
        let actual = Manifest::new("m".into(), s, vec![res("a:0:10", 1), res("a:10:20", 2)]).unwrap();
        let d = signed.diff(&actual).unwrap();
        assert_eq!(d.changed, ["a"]);
        assert!(d.missing.is_empty() && d.extra.is_empty());
    }
}
