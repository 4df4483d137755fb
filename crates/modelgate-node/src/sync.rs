//! Verified synchronization with the governance log.
//!
//! A node trusts nothing the authority says that it cannot check itself:
//!
//! 1. the checkpoint must carry the log key's signature, the configured
//!    witness quorum, and the authority's timestamped cosignature no older
//!    than `max_staleness` (and not from the future beyond a small skew);
//! 2. it must be consistent with the last checkpoint this node trusted
//!    (persisted, so rollback and fork protection survive restarts): a
//!    smaller size is a rollback, a different root at the same size or a
//!    consistency proof that fails is a fork;
//! 3. the new entries are fetched as C2SP entry bundles and their leaf
//!    hashes must rebuild exactly the checkpoint's root;
//! 4. each entry is folded with the node's own copy of the rules, which
//!    verifies every approver signature against the pinned trust root;
//! 5. the resulting state digest must equal the one the authority publishes.
//!
//! Only then is the new view returned; the caller swaps it in atomically.
//! Every failure maps to a named containment reason. I/O is injected through
//! [`Fetch`], so this module is pure logic and tests can serve anything.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::{ContainmentReason, State};
use modelgate_tlog::{
    decode_entry_bundle, encode_index, leaf_hash, verify_consistency, Checkpoint, CompactTree, Hash, Note, VerifierKey,
    TILE_WIDTH,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How far in the future an authority timestamp may be (clock skew).
pub const FUTURE_SKEW_SECONDS: u64 = 30;

/// Reads from the authority (an HTTP client in production).
pub trait Fetch {
    /// GET `path` (e.g. `/log/checkpoint`); the body of a 200 response.
    fn get(&self, path: &str) -> Result<Vec<u8>, crate::FetchError>;
}

/// Why a sync failed, with the containment reason it triggers.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{reason:?}: {detail}")]
pub struct SyncError {
    /// The containment reason.
    pub reason: ContainmentReason,
    /// What exactly failed.
    pub detail: String,
}

fn fail(reason: ContainmentReason, detail: impl Into<String>) -> SyncError {
    SyncError {
        reason,
        detail: detail.into(),
    }
}

/// What a node persists between runs: the last checkpoint it trusted, and
/// the compact range of its tree (so the next sync needs no old entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trusted {
    /// Tree size.
    pub size: u64,
    /// Root (base64).
    pub root: String,
    /// The governance state digest at that size (hex).
    pub state_digest: String,
}

/// A verified view of the governance log.
#[derive(Clone, Debug)]
pub struct View {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The authority's cosignature time.
    pub authority_time: u64,
    /// The folded state at the checkpoint's size. Shared: a view is
    /// re-published on every fresh cosignature, and a state of 10,000
    /// models is megabytes that must not be copied each time.
    pub state: Arc<State>,
    /// The tree's compact range at that size.
    pub tree: CompactTree,
    /// The checkpoint note exactly as the authority served it (signed by the
    /// log, cosigned): what this node shows its peers.
    pub note: Arc<Vec<u8>>,
}

impl View {
    /// The staleness bound in force: the trust root's signed
    /// `max_staleness_seconds`, or the node's own `node_max` when that is
    /// tighter. A node's configuration may only tighten the signed bound.
    pub fn staleness_bound(&self, node_max: u64) -> u64 {
        self.state
            .trust_root()
            .map_or(node_max, |r| r.doc.freshness.max_staleness_seconds.min(node_max))
    }

    /// What to persist.
    pub fn trusted(&self) -> Trusted {
        Trusted {
            size: self.checkpoint.size,
            root: B64.encode(self.checkpoint.root),
            state_digest: hex::encode(self.state.digest()),
        }
    }
}

/// The synchronizer: the pinned trust root, freshness bound, and the view
/// it last verified.
pub struct Syncer {
    /// The state before entry 0 (the pinned root checked), the base of a refold.
    genesis: State,
    /// The pinned trust root, whose keys verify checkpoints before the first sync.
    pinned_root: modelgate_governance::TrustRoot,
    max_staleness: u64,
    view: Option<View>,
    trusted: Option<Trusted>,
}

impl Syncer {
    /// A syncer for the log whose entry 0 is `pinned`. `trusted` is what a
    /// previous run persisted (its checkpoint must be extended, never
    /// rolled back or forked); `None` on a node's first start.
    pub fn new(pinned: &[u8], max_staleness: u64, trusted: Option<Trusted>) -> Result<Self, SyncError> {
        // Checked once here; every later use clones the results.
        let bad = |e: String| fail(ContainmentReason::SignatureInvalid, format!("pinned trust root: {e}"));
        let genesis = State::new(pinned).map_err(|e| bad(e.to_string()))?;
        let mut first = genesis.clone();
        first.apply(pinned).map_err(|e| bad(e.to_string()))?;
        let pinned_root = first
            .trust_root()
            .cloned()
            .ok_or_else(|| bad("the pinned entry set no trust root".into()))?;
        Ok(Self {
            genesis,
            pinned_root,
            max_staleness,
            view: None,
            trusted,
        })
    }

    /// The last verified view.
    pub fn view(&self) -> Option<&View> {
        self.view.as_ref()
    }

    /// One round: fetch, verify everything, and return the new view (also
    /// kept as the current one). On error nothing changes.
    pub fn sync(&mut self, fetch: &dyn Fetch, now: u64) -> Result<&View, SyncError> {
        use ContainmentReason::*;
        let note = fetch
            .get("/log/checkpoint")
            .map_err(|e| fail(SyncInterrupted, format!("checkpoint: {e}")))?;
        // Keys come from the trust root in force in our own verified state,
        // or from the pinned one before the first sync.
        let root_doc = match self.view.as_ref().and_then(|v| v.state.trust_root()) {
            Some(r) => r.clone(),
            None => self.pinned_root.clone(),
        };
        // The signed bound holds whatever the node's configuration says; the
        // configuration may only tighten it.
        let bound = self.max_staleness.min(root_doc.doc.freshness.max_staleness_seconds);
        let (checkpoint, authority_time) = verify_checkpoint(&note, &root_doc, now, bound)?;
        self.extends_trusted(fetch, &checkpoint)?;
        // The same checkpoint, freshly cosigned: nothing to fold, and its
        // state digest was compared with the authority's when we reached it.
        if let Some(v) = &self.view {
            if checkpoint.size == v.checkpoint.size {
                let view = View {
                    checkpoint,
                    authority_time,
                    state: Arc::clone(&v.state),
                    tree: v.tree.clone(),
                    note: Arc::new(note),
                };
                self.view = Some(view);
                return self.view.as_ref().ok_or_else(|| fail(StateDivergence, "view vanished"));
            }
        }
        let (state, tree) = self.fold_to(fetch, &checkpoint)?;
        same_digest_as_authority(fetch, &state, checkpoint.size)?;
        self.view = Some(View {
            checkpoint,
            authority_time,
            state: Arc::new(state),
            tree,
            note: Arc::new(note),
        });
        self.view.as_ref().ok_or_else(|| fail(StateDivergence, "view vanished"))
    }

    /// The checkpoint extends what was trusted before (this run's view, or
    /// the persisted checkpoint): never smaller, never another root at the
    /// same size, and consistent by the authority's proof when larger.
    fn extends_trusted(&self, fetch: &dyn Fetch, checkpoint: &Checkpoint) -> Result<(), SyncError> {
        use ContainmentReason::*;
        let (old_size, old_root) = match (&self.view, &self.trusted) {
            (Some(v), _) => (v.checkpoint.size, v.checkpoint.root),
            (None, Some(t)) => {
                let raw = B64
                    .decode(&t.root)
                    .ok()
                    .and_then(|b| <Hash>::try_from(b).ok())
                    .ok_or_else(|| fail(StateDivergence, "persisted root is not a hash"))?;
                (t.size, raw)
            }
            (None, None) => (0, modelgate_tlog::EMPTY_ROOT),
        };
        if checkpoint.size < old_size {
            return Err(fail(
                CoordinationInconsistent,
                format!(
                    "rollback: the authority serves size {} after {old_size} was trusted",
                    checkpoint.size
                ),
            ));
        }
        if checkpoint.size == old_size && checkpoint.root != old_root {
            return Err(fail(
                CoordinationInconsistent,
                format!("fork: a different root at the trusted size {old_size}"),
            ));
        }
        if old_size > 0 && checkpoint.size > old_size {
            let body = fetch
                .get(&format!(
                    "/api/v1/proof/consistency?from={old_size}&to={}",
                    checkpoint.size
                ))
                .map_err(|e| fail(SyncInterrupted, format!("consistency proof: {e}")))?;
            let proof = parse_proof(&body).map_err(|e| fail(CoordinationInconsistent, e))?;
            verify_consistency(old_size, checkpoint.size, &proof, &old_root, &checkpoint.root).map_err(|e| {
                fail(
                    CoordinationInconsistent,
                    format!(
                        "fork: checkpoint {} does not extend the trusted {old_size}: {e}",
                        checkpoint.size
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Fetch and fold the entries we do not have, on a copy (a refused
    /// entry leaves the verified view as it was), and prove they are the
    /// checkpoint's. On a first start with a persisted checkpoint the log is
    /// refolded from 0 (the state is not persisted), and the state at the
    /// persisted size must be the one persisted, however far the log grew.
    fn fold_to(&self, fetch: &dyn Fetch, checkpoint: &Checkpoint) -> Result<(State, CompactTree), SyncError> {
        use ContainmentReason::*;
        let (mut state, mut tree, from) = match &self.view {
            Some(v) => ((*v.state).clone(), v.tree.clone(), v.checkpoint.size),
            None => (self.genesis.clone(), CompactTree::new(), 0),
        };
        let check_at = match (&self.view, &self.trusted) {
            (None, Some(t)) => Some((t.size, t.state_digest.clone())),
            _ => None,
        };
        let mut replayed_at_trusted = None;
        let mut index = from;
        while index < checkpoint.size {
            let (start, width, path, data) = entry_bundle(fetch, index, checkpoint.size)?;
            let entries = decode_entry_bundle(&data, width)
                .map_err(|e| fail(CoordinationInconsistent, format!("{path}: {e}")))?;
            for e in &entries[(index - start) as usize..] {
                tree.append(leaf_hash(e), |_, _, _| {});
                state.apply(e).map_err(|err| {
                    let reason = if err.rule == modelgate_governance::Rule::Entry {
                        SignatureInvalid
                    } else {
                        UnverifiableTransition
                    };
                    fail(reason, format!("entry refused by this node's rules: {err}"))
                })?;
                index += 1;
                if check_at.as_ref().is_some_and(|(n, _)| index == *n) {
                    replayed_at_trusted = Some(hex::encode(state.digest()));
                }
            }
        }
        if tree.root() != checkpoint.root {
            return Err(fail(
                CoordinationInconsistent,
                "the entries served do not hash to the checkpoint's root",
            ));
        }
        // Compared only now that the entries are proven to be the log's.
        if let (Some((n, persisted)), Some(replayed)) = (&check_at, &replayed_at_trusted) {
            if persisted != replayed {
                return Err(fail(
                    StateDivergence,
                    format!("the state replayed to the persisted size {n} ({replayed}) differs from the persisted one ({persisted})"),
                ));
            }
        }
        Ok((state, tree))
    }
}

/// The entry bundle holding entry `index` of a log of `size`: its first
/// index, its width, its path and its bytes.
fn entry_bundle(fetch: &dyn Fetch, index: u64, size: u64) -> Result<(u64, u16, String, Vec<u8>), SyncError> {
    let bundle = index / u64::from(TILE_WIDTH);
    let start = bundle * u64::from(TILE_WIDTH);
    let width = (size - start).min(u64::from(TILE_WIDTH)) as u16;
    let suffix = if width == TILE_WIDTH {
        String::new()
    } else {
        format!(".p/{width}")
    };
    let path = format!("/log/tile/entries/{}{suffix}", encode_index(bundle));
    let data = fetch
        .get(&path)
        .map_err(|e| fail(ContainmentReason::SyncInterrupted, format!("{path}: {e}")))?;
    Ok((start, width, path, data))
}

/// Our state's digest is the one the authority publishes at that size.
fn same_digest_as_authority(fetch: &dyn Fetch, state: &State, size: u64) -> Result<(), SyncError> {
    use ContainmentReason::*;
    let published = fetch
        .get(&format!("/api/v1/state?size={size}"))
        .map_err(|e| fail(SyncInterrupted, format!("state digest: {e}")))?;
    let published: serde_json::Value =
        serde_json::from_slice(&published).map_err(|e| fail(GovernanceMismatch, format!("state summary: {e}")))?;
    let ours = hex::encode(state.digest());
    if published["digest"].as_str() != Some(ours.as_str()) {
        return Err(fail(
            GovernanceMismatch,
            format!(
                "state digest at size {size}: ours {ours}, the authority's {}",
                published["digest"]
            ),
        ));
    }
    Ok(())
}

/// Verify a checkpoint against a trust root: log signature, origin, witness
/// quorum, and a fresh authority cosignature. Returns the checkpoint and
/// the authority's timestamp.
pub fn verify_checkpoint(
    note: &[u8],
    root: &modelgate_governance::TrustRoot,
    now: u64,
    max_staleness: u64,
) -> Result<(Checkpoint, u64), SyncError> {
    use ContainmentReason::*;
    let policy = modelgate_tlog::CheckpointPolicy::new(
        root.log_key.clone(),
        root.witness_keys.clone(),
        root.doc.witness_quorum as usize,
    )
    .map_err(|e| fail(CoordinationInconsistent, format!("trust root's witness policy: {e}")))?;
    let verified = policy.verify(note).map_err(|e| {
        // Short of the witness quorum: not trusted, but not proof of
        // anything either (a witness may be down); the node keeps its view
        // until it is stale, then contains with SyncInterrupted.
        let reason = match e {
            modelgate_tlog::Error::QuorumNotMet { .. } => SyncInterrupted,
            _ => SignatureInvalid,
        };
        fail(reason, format!("checkpoint: {e}"))
    })?;
    let parsed = Note::parse(note).map_err(|e| fail(SignatureInvalid, e.to_string()))?;
    let cosigner: &VerifierKey = &root.cosigner_key;
    let cos = parsed.verify(std::slice::from_ref(cosigner)).map_err(|e| {
        fail(
            SyncInterrupted,
            format!("no valid freshness cosignature by the authority: {e}"),
        )
    })?;
    let time = cos
        .verified
        .first()
        .and_then(|(_, t)| *t)
        .ok_or_else(|| fail(SyncInterrupted, "the authority's cosignature has no timestamp"))?;
    if time > now + FUTURE_SKEW_SECONDS {
        return Err(fail(
            SyncInterrupted,
            format!("the authority's timestamp {time} is in the future (now {now})"),
        ));
    }
    if now.saturating_sub(time) > max_staleness {
        return Err(fail(
            SyncInterrupted,
            format!(
                "stale view: the authority's timestamp is {} s old (max {max_staleness})",
                now - time
            ),
        ));
    }
    Ok((verified.checkpoint, time))
}

fn parse_proof(body: &[u8]) -> Result<Vec<Hash>, String> {
    parse_consistency(body).map(|(hashes, _)| hashes)
}

/// The authority's consistency-proof answer (`/api/v1/proof/consistency`):
/// the proof's hashes, and the root at `from` it implies when given.
pub fn parse_consistency(body: &[u8]) -> Result<(Vec<Hash>, Option<Hash>), String> {
    let hash = |h: &serde_json::Value| -> Result<Hash, String> {
        h.as_str()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|b| <Hash>::try_from(b).ok())
            .ok_or_else(|| "proof hash is not base64 SHA-256".to_string())
    };
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("proof: {e}"))?;
    let hashes = v["hashes"]
        .as_array()
        .ok_or("proof has no hashes")?
        .iter()
        .map(hash)
        .collect::<Result<_, _>>()?;
    let from_root = v.get("from_root").map(hash).transpose()?;
    Ok((hashes, from_root))
}
