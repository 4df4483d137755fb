//! What the pages need that the folded state does not keep: every
//! policy-set and trust-root version (with who signed it) and an hour of
//! each node's heartbeats. Built incrementally from the store (each entry is
//! read once), so a page costs the same with 100,000 entries as with 10.
//! Entries themselves are not kept: a page of the log reads its fifty from
//! the store and [`Index::summarize`]s them, with the trust root in force at
//! each.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use modelgate_authority::Authority;
use modelgate_governance::{Envelope, TrustRoot, TrustRootDoc};
use serde_json::Value;

/// Entries read per refresh, so that a large backlog cannot hold a lock for
/// long (the rest is read on the next refresh).
const BATCH: u64 = 5_000;

/// Heartbeat samples kept per node: an hour at one per 10 s.
pub const HISTORY: usize = 360;

/// One entry, as the log page lists it.
#[derive(Clone, Debug)]
pub struct EntrySummary {
    /// The payload's `type`.
    pub kind: String,
    /// Principals who signed it (key ids where no trust root names them).
    pub signers: Vec<String>,
    /// One line: what it is about (a model digest, a node, a name).
    pub about: String,
}

/// A version of a document (policy set, trust root) and who signed it.
#[derive(Clone, Debug)]
pub struct Version {
    /// Its log index.
    pub index: u64,
    /// The signers.
    pub signers: Vec<String>,
    /// The payload, decoded.
    pub payload: Value,
}

/// One heartbeat sample of a node.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The node's time.
    pub time: u64,
    /// Its counters (`requests`, `denied:CODE`, …), cumulative.
    pub counters: BTreeMap<String, u64>,
    /// Its verified governance size.
    pub checkpoint_size: Option<u64>,
    /// Models contained at that time.
    pub contained: u64,
}

/// The index.
#[derive(Default)]
pub struct Index {
    /// Entries indexed: 0..size.
    pub size: u64,
    /// Policy-set versions, oldest first.
    pub policies: Vec<Version>,
    /// Trust-root versions, oldest first, with their parsed roots.
    pub trust_roots: Vec<(Version, Arc<TrustRoot>)>,
    /// Node id → samples, oldest first.
    pub history: BTreeMap<String, VecDeque<Sample>>,
    /// The last heartbeat time sampled per node.
    sampled: BTreeMap<String, u64>,
    /// Node id → its anchors: (lineage size anchored, entry index), oldest first.
    pub anchors: BTreeMap<String, Vec<(u64, u64)>>,
}

impl Index {
    /// The first anchor of `node` that covers lineage record `record`:
    /// (lineage size anchored, entry index).
    pub fn anchor_covering(&self, node: &str, record: u64) -> Option<(u64, u64)> {
        let a = self.anchors.get(node)?;
        let i = a.partition_point(|(size, _)| *size <= record);
        a.get(i).copied()
    }

    /// The latest version in `versions` logged before `size` (in force in
    /// the state of the log's first `size` entries).
    pub fn in_force(versions: &[Version], size: u64) -> Option<&Version> {
        versions.iter().rev().find(|v| v.index < size)
    }
}

fn decode(bytes: &[u8]) -> Option<(Envelope, Value)> {
    let e = Envelope::parse(bytes).ok()?;
    let p = serde_json::from_slice::<Value>(&e.payload).ok()?;
    Some((e, p))
}

fn about(kind: &str, p: &Value) -> String {
    let s = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
    match kind {
        "model" => format!("{} {}", s("model_name"), s("model_version")),
        "approval" | "revocation" | "exception" => s("model"),
        "policy-set" => s("name"),
        "trust-root" => format!("version {}", p["root_version"]),
        "node-enrollment" | "node-anchor" | "containment-report" => s("node"),
        _ => String::new(),
    }
}

impl Index {
    /// The trust root in force just before entry `index` (for entry 0, its own).
    pub fn root_at(&self, index: u64) -> Option<&Arc<TrustRoot>> {
        self.trust_roots
            .iter()
            .rev()
            .find(|(v, _)| v.index < index || (index == 0 && v.index == 0))
            .map(|(_, r)| r)
    }

    fn signers(&self, env: &Envelope, index: u64) -> Vec<String> {
        let root = self.root_at(index);
        env.signatures
            .iter()
            .map(|(kid, _)| {
                root.and_then(|r| r.principal_of(kid))
                    .map_or_else(|| format!("key {}", &kid[..kid.len().min(12)]), str::to_owned)
            })
            .collect()
    }

    /// What entry `index` is, who signed it and what it is about.
    pub fn summarize(&self, index: u64, bytes: &[u8]) -> EntrySummary {
        let Some((env, payload)) = decode(bytes) else {
            return EntrySummary {
                kind: "other".into(),
                signers: vec![],
                about: String::new(),
            };
        };
        let kind = payload["type"].as_str().unwrap_or("unknown").to_owned();
        let signers = match kind.as_str() {
            // Signed by the node's own key, which no trust root names.
            "node-anchor" | "containment-report" => vec![format!("node {}", payload["node"].as_str().unwrap_or("?"))],
            // The first trust root names its own signers.
            "trust-root" if index == 0 => self.signers(&env, 1),
            _ => self.signers(&env, index),
        };
        EntrySummary {
            about: about(&kind, &payload),
            kind,
            signers,
        }
    }

    fn add(&mut self, index: u64, bytes: &[u8]) {
        let Some((_, payload)) = decode(bytes) else { return };
        match payload["type"].as_str() {
            Some("trust-root") => {
                if let Some(root) = serde_json::from_value::<TrustRootDoc>(payload.clone())
                    .ok()
                    .and_then(|d| TrustRoot::from_doc(d).ok())
                {
                    let root = Arc::new(root);
                    self.trust_roots.push((
                        Version {
                            index,
                            signers: vec![],
                            payload,
                        },
                        root,
                    ));
                    let signers = self.summarize(index, bytes).signers;
                    if let Some(v) = self.trust_roots.last_mut() {
                        v.0.signers = signers;
                    }
                }
            }
            Some("node-anchor") => {
                let size = payload["checkpoint"]
                    .as_str()
                    .and_then(|c| c.lines().nth(1))
                    .and_then(|s| s.parse::<u64>().ok());
                if let (Some(node), Some(size)) = (payload["node"].as_str(), size) {
                    self.anchors.entry(node.to_owned()).or_default().push((size, index));
                }
            }
            Some("policy-set") => {
                let signers = self.summarize(index, bytes).signers;
                self.policies.push(Version {
                    index,
                    signers,
                    payload,
                });
            }
            _ => {}
        }
    }

    /// Read what the authority has appended since the last refresh (at most
    /// [`BATCH`] entries) and sample its nodes' heartbeats.
    pub fn refresh(&mut self, a: &Authority) {
        let size = a.served.read().map_or(0, |s| s.size);
        if size > self.size {
            let end = size.min(self.size + BATCH);
            match a.entries(self.size, end) {
                Ok(entries) => {
                    for (i, e) in entries.iter().enumerate() {
                        self.add(self.size + i as u64, e);
                    }
                    self.size += entries.len() as u64;
                }
                Err(e) => tracing::warn!(error = %e, "console: reading entries for the index"),
            }
        }
        let beats: Vec<_> = a
            .heartbeats
            .lock()
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default();
        for hb in beats {
            let last = self.sampled.get(&hb.node).copied().unwrap_or(0);
            // One sample per 10 s of node time, and never the same heartbeat twice.
            if hb.time <= last || (last != 0 && hb.time < last + 10) {
                continue;
            }
            self.sampled.insert(hb.node.clone(), hb.time);
            let counters = hb.summary["counters"]
                .as_object()
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect())
                .unwrap_or_default();
            let contained = hb.summary["models"]
                .as_object()
                .map_or(0, |m| m.values().filter(|v| v["state"] == "Contained").count() as u64);
            let h = self.history.entry(hb.node.clone()).or_default();
            h.push_back(Sample {
                time: hb.time,
                counters,
                checkpoint_size: hb.summary["checkpoint_size"].as_u64(),
                contained,
            });
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
    }
}
