//! The in-toto Statement v1 carrying the OMS v1.0 predicate: encoding and strict decoding.
//!
//! Decoding is strict on purpose. The statement is what a signer vouched for, so a
//! field we do not understand might carry meaning we would silently drop: it is refused
//! with its name. The one tolerance is for what earlier reference releases wrote: the
//! v0.2 `Digests/v0.1` predicate type and a `shard_size` written as an integral float.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::manifest::{root_digest_of, HashAlgorithm, Manifest, Method, Resource, Serialization};
use crate::pyjson;

/// in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The OMS v1.0 predicate type.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The predicate type written by reference release v0.2 (one subject per file).
pub const PREDICATE_TYPE_V02: &str = "https://model_signing/Digests/v0.1";

#[derive(Serialize)]
struct StatementOut<'a> {
    #[serde(rename = "_type")]
    type_: &'a str,
    subject: [SubjectOut<'a>; 1],
    #[serde(rename = "predicateType")]
    predicate_type: &'a str,
    predicate: PredicateOut<'a>,
}

#[derive(Serialize)]
struct SubjectOut<'a> {
    name: &'a str,
    digest: DigestOut,
}

#[derive(Serialize)]
struct DigestOut {
    sha256: String,
}

#[derive(Serialize)]
struct PredicateOut<'a> {
    serialization: SerializationOut<'a>,
    resources: Vec<ResourceOut<'a>>,
}

#[derive(Serialize)]
struct SerializationOut<'a> {
    method: &'a str,
    hash_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_size: Option<u64>,
    allow_symlinks: bool,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    ignore_paths: &'a [String],
}

#[derive(Serialize)]
struct ResourceOut<'a> {
    name: &'a str,
    algorithm: &'a str,
    digest: String,
}

/// The exact payload bytes the reference would sign for this manifest.
///
/// Key order inside the predicate follows the reference's source (its printer emits
/// protobuf `Struct` keys in hash order, which varies between runs, so no order is
/// canonical; any verifier reads them as a map). `shard_size` is written as an
/// integer: the reference writes `1000000000.0` and then cannot read it back itself.
pub fn encode(manifest: &Manifest) -> Result<Vec<u8>> {
    let ser = &manifest.serialization;
    let statement = StatementOut {
        type_: STATEMENT_TYPE,
        subject: [SubjectOut {
            name: &manifest.model_name,
            digest: DigestOut {
                sha256: hex::encode(manifest.root_digest()),
            },
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: PredicateOut {
            serialization: SerializationOut {
                method: match ser.method {
                    Method::Files => "files",
                    Method::Shards { .. } => "shards",
                },
                hash_type: ser.hash.as_str(),
                shard_size: match ser.method {
                    Method::Files => None,
                    Method::Shards { shard_size } => Some(shard_size),
                },
                allow_symlinks: ser.allow_symlinks,
                ignore_paths: &ser.ignore_paths,
            },
            resources: manifest
                .resources
                .iter()
                .map(|r| ResourceOut {
                    name: &r.name,
                    algorithm: &r.algorithm,
                    digest: hex::encode(&r.digest),
                })
                .collect(),
        },
    };
    pyjson::to_vec_pretty_ascii(&statement).map_err(|e| Error::Statement(format!("couldn't encode: {e}")))
}

/// Decodes a signed payload into the manifest it vouches for, checking that the
/// subject digest is the root digest of the listed resources (in the listed order).
pub fn decode(payload: &[u8]) -> Result<Manifest> {
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| Error::Statement(format!("payload is not JSON: {e}")))?;
    let top = object(&value, "statement")?;
    let type_ = string(top, "_type", "statement")?;
    if type_ != STATEMENT_TYPE {
        return Err(Error::Statement(format!(
            "_type is {type_:?}, expected {STATEMENT_TYPE:?}"
        )));
    }
    let predicate_type = string(top, "predicateType", "statement")?;
    match predicate_type {
        PREDICATE_TYPE => {
            only_keys(top, &["_type", "subject", "predicateType", "predicate"], "statement")?;
            decode_v1(top)
        }
        PREDICATE_TYPE_V02 => decode_v02(top),
        other => Err(Error::Statement(format!(
            "predicateType is {other:?}, expected {PREDICATE_TYPE:?}"
        ))),
    }
}

fn decode_v1(top: &Map<String, Value>) -> Result<Manifest> {
    let subjects = array(top, "subject", "statement")?;
    if subjects.len() != 1 {
        return Err(Error::Statement(format!(
            "expected exactly one subject, got {}",
            subjects.len()
        )));
    }
    let subject = object(&subjects[0], "subject")?;
    only_keys(subject, &["name", "digest"], "subject")?;
    let model_name = string(subject, "name", "subject")?.to_owned();
    let digest = object(field(subject, "digest", "subject")?, "subject digest")?;
    only_keys(digest, &["sha256"], "subject digest")?;
    let expected_root = hex_digest(string(digest, "sha256", "subject digest")?, 32, "subject digest")?;

    let predicate = object(field(top, "predicate", "statement")?, "predicate")?;
    only_keys(predicate, &["serialization", "resources"], "predicate")?;
    let serialization = decode_serialization(object(
        field(predicate, "serialization", "predicate")?,
        "serialization",
    )?)?;
    let want_algorithm = serialization.resource_algorithm();
    let mut resources = Vec::new();
    for (i, r) in array(predicate, "resources", "predicate")?.iter().enumerate() {
        let ctx = format!("resources[{i}]");
        let r = object(r, &ctx)?;
        only_keys(r, &["name", "algorithm", "digest"], &ctx)?;
        let algorithm = string(r, "algorithm", &ctx)?;
        if algorithm != want_algorithm {
            return Err(Error::Statement(format!(
                "{ctx}: algorithm {algorithm:?} does not match the serialization ({want_algorithm:?})"
            )));
        }
        resources.push(Resource {
            name: string(r, "name", &ctx)?.to_owned(),
            algorithm: algorithm.to_owned(),
            digest: hex_digest(string(r, "digest", &ctx)?, serialization.hash.digest_len(), &ctx)?,
        });
    }
    // A signature over nothing must not pass for a signature over a model (with
    // --ignore-unsigned-files it would otherwise vouch for any file set); OMS §5.2.1
    // requires at least one resource.
    if resources.is_empty() {
        return Err(Error::Statement(
            "the statement lists no resource; a signed model has at least one".to_owned(),
        ));
    }
    // The root digest is recomputed in the order the signer listed the resources,
    // exactly as the reference does, before anything is reordered.
    let root = root_digest_of(resources.iter().map(|r| r.digest.as_slice()));
    if root.as_slice() != expected_root.as_slice() {
        return Err(Error::Statement(format!(
            "subject digest {} is not the root digest of the listed resources ({})",
            hex::encode(&expected_root),
            hex::encode(root)
        )));
    }
    Manifest::new(model_name, serialization, resources)
}

/// Reference v0.2: one in-toto subject per file, SHA-256, files method.
fn decode_v02(top: &Map<String, Value>) -> Result<Manifest> {
    only_keys(top, &["_type", "subject", "predicateType", "predicate"], "statement")?;
    let mut resources = Vec::new();
    for (i, s) in array(top, "subject", "statement")?.iter().enumerate() {
        let ctx = format!("subject[{i}]");
        let s = object(s, &ctx)?;
        only_keys(s, &["name", "digest", "annotations"], &ctx)?;
        // v0.2 signers annotate each subject with how it was hashed. Only
        // whole files with SHA-256 can be checked against a `sha256` digest;
        // anything else is refused rather than verified as something it is not.
        if let Some(a) = s.get("annotations") {
            let a = object(a, &format!("{ctx}.annotations"))?;
            only_keys(a, &["actual_hash_algorithm"], &format!("{ctx}.annotations"))?;
            let how = string(a, "actual_hash_algorithm", &format!("{ctx}.annotations"))?;
            if how != "file-sha256" {
                return Err(Error::Statement(format!(
                    "{ctx}: hashed as {how:?}; a v0.2 statement can be verified only for file-sha256"
                )));
            }
        }
        let digest = object(field(s, "digest", &ctx)?, &ctx)?;
        only_keys(digest, &["sha256"], &ctx)?;
        resources.push(Resource {
            name: string(s, "name", &ctx)?.to_owned(),
            algorithm: "sha256".to_owned(),
            digest: hex_digest(string(digest, "sha256", &ctx)?, 32, &ctx)?,
        });
    }
    if resources.is_empty() {
        return Err(Error::Statement("v0.2 statement lists no file".to_owned()));
    }
    let serialization = Serialization {
        method: Method::Files,
        hash: HashAlgorithm::Sha256,
        allow_symlinks: false,
        ignore_paths: Vec::new(),
    };
    Manifest::new(String::new(), serialization, resources)
}

fn decode_serialization(s: &Map<String, Value>) -> Result<Serialization> {
    only_keys(
        s,
        &["method", "hash_type", "shard_size", "allow_symlinks", "ignore_paths"],
        "serialization",
    )?;
    let hash = HashAlgorithm::parse(string(s, "hash_type", "serialization")?)?;
    let method = match string(s, "method", "serialization")? {
        "files" => {
            if s.contains_key("shard_size") {
                return Err(Error::Statement(
                    "serialization: shard_size given for method files".to_owned(),
                ));
            }
            Method::Files
        }
        "shards" => Method::Shards {
            shard_size: shard_size(field(s, "shard_size", "serialization")?)?,
        },
        other => return Err(Error::Statement(format!("serialization: unknown method {other:?}"))),
    };
    let allow_symlinks = match field(s, "allow_symlinks", "serialization")? {
        Value::Bool(b) => *b,
        _ => {
            return Err(Error::Statement(
                "serialization: allow_symlinks is not a boolean".to_owned(),
            ))
        }
    };
    let ignore_paths = match s.get("ignore_paths") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(p) => Ok(p.clone()),
                _ => Err(Error::Statement(
                    "serialization: ignore_paths holds a non-string".to_owned(),
                )),
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(Error::Statement("serialization: ignore_paths is not a list".to_owned())),
    };
    Ok(Serialization {
        method,
        hash,
        allow_symlinks,
        ignore_paths,
    })
}

/// An integer, or a float with no fractional part (what the reference writes).
fn shard_size(v: &Value) -> Result<u64> {
    let bad = || Error::Statement(format!("serialization: shard_size {v} is not a positive integer"));
    let n = match v.as_u64() {
        Some(n) => n,
        None => {
            let f = v.as_f64().ok_or_else(bad)?;
            // 2^53: beyond it a float no longer names one integer exactly.
            if f.fract() != 0.0 || !(1.0..=9_007_199_254_740_992.0).contains(&f) {
                return Err(bad());
            }
            f as u64
        }
    };
    if n == 0 {
        return Err(bad());
    }
    Ok(n)
}

fn field<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a Value> {
    m.get(key)
        .ok_or_else(|| Error::Statement(format!("{ctx}: missing {key:?}")))
}

fn object<'a>(v: &'a Value, ctx: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .ok_or_else(|| Error::Statement(format!("{ctx} is not a JSON object")))
}

fn array<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a Vec<Value>> {
    field(m, key, ctx)?
        .as_array()
        .ok_or_else(|| Error::Statement(format!("{ctx}: {key:?} is not a list")))
}

fn string<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a str> {
    field(m, key, ctx)?
        .as_str()
        .ok_or_else(|| Error::Statement(format!("{ctx}: {key:?} is not a string")))
}

fn only_keys(m: &Map<String, Value>, allowed: &[&str], ctx: &str) -> Result<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::Statement(format!("{ctx}: unknown field {k:?}"))),
        None => Ok(()),
    }
}

fn hex_digest(s: &str, len: usize, ctx: &str) -> Result<Vec<u8>> {
    let bytes = hex::decode(s).map_err(|_| Error::Statement(format!("{ctx}: digest {s:?} is not hex")))?;
    if bytes.len() != len {
        return Err(Error::Statement(format!(
            "{ctx}: digest is {} bytes, expected {len}",
            bytes.len()
        )));
    }
    Ok(bytes)
}
