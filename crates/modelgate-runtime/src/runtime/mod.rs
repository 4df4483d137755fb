//! The node's runtime, shared by `node run`, `exec` and `node serve`: one
//! loop thread syncs with the authority, keeps every model's lifecycle
//! current, anchors the lineage log, sends heartbeats, and publishes a
//! snapshot (what is Serving, under which governance view) that the gateway
//! reads on every request without waiting for the loop.
//!
//! The loop wakes on its interval, and at once when inotify reports a change
//! in a model's files (a changed model is re-verified, whatever its
//! fingerprint says). The fingerprint check stays as the second line: writes
//! through a shared mapping do not raise inotify events.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_governance::{Check, Containment, DecisionRequest, EntryPayload as _, LifecycleStep, NodeAnchorEntry};
use modelgate_node::config::NodeConfig;
use modelgate_node::{ContainmentReason, View};
use modelgate_tlog::SignerKey;
use serde::Serialize;

use crate::authority::{AuthorityClient, HttpAuthority, Reads};
use crate::clock::{Clock, SystemClock};
use crate::lineage::{LineageError, LineageLog, StoreLineage};
use crate::Error;

mod anchors;
mod courier;
mod node;
mod rehash;
mod shared;
mod watch;

use anchors::{append_anchor, load_anchors};
pub use anchors::{Anchor, Anchors, ANCHORS_KEPT};
use courier::*;
pub use node::{Node, Parts};
pub use rehash::FullCheck;
pub use shared::Shared;
use watch::*;

/// Why a model is contained: the reason (§4), the check that failed (§3)
/// and the lifecycle step it stopped at (§9; `None` when it was Serving).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Why {
    /// The containment reason.
    pub reason: ContainmentReason,
    /// The check that failed.
    pub check: Check,
    /// The step the lifecycle stopped at.
    pub step: Option<LifecycleStep>,
    /// When a governance decision refused the model: its reason code
    /// (`Revoked`, …), the code callers are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<modelgate_governance::ReasonCode>,
    /// What exactly failed.
    pub detail: String,
}

impl Why {
    /// A failure outside a lifecycle run (a sync, an anchor, a decision
    /// while Serving).
    pub fn new(reason: ContainmentReason, check: Check, detail: impl Into<String>) -> Self {
        Self {
            reason,
            check,
            step: None,
            decision: None,
            detail: detail.into(),
        }
    }
}

/// A model's state as the gateway sees it.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "state")]
pub enum ModelStatus {
    /// Not yet through the lifecycle.
    Starting,
    /// Through all ten steps.
    Serving {
        /// The model's root digest.
        digest: String,
        /// The approval or exception it serves under.
        basis: String,
    },
    /// Not serving, and why.
    Contained(Why),
}

impl ModelStatus {
    /// The state's name, as events, status, metrics and heartbeats show it.
    pub fn name(&self) -> &'static str {
        match self {
            ModelStatus::Starting => "Starting",
            ModelStatus::Serving { .. } => "Serving",
            ModelStatus::Contained(_) => "Contained",
        }
    }

    /// The lifecycle step the model is at: the first while Starting, the
    /// last (all ten passed) while Serving, the one it stopped at when
    /// Contained (the last passed, when it was contained while Serving).
    pub fn step(&self) -> LifecycleStep {
        match self {
            ModelStatus::Starting => LifecycleStep::Initializing,
            ModelStatus::Serving { .. } => LifecycleStep::AuditVerified,
            ModelStatus::Contained(w) => w.step.unwrap_or(LifecycleStep::AuditVerified),
        }
    }

    /// As `/status`, heartbeats and `node status --json` show it.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({"state": self.name()}));
        v["lifecycle_step"] = serde_json::json!(self.step());
        v["lifecycle_step_number"] = serde_json::json!(self.step().number());
        v
    }
}

/// What the loop publishes after each pass.
pub struct Snapshot {
    /// When (the node's clock).
    pub time: u64,
    /// When, by the monotonic clock.
    pub published: Instant,
    /// The last successful sync, by the monotonic clock, and the view's age
    /// then (seconds): how old the view is does not depend on a wall clock
    /// that may jump back.
    pub synced: Option<(Instant, u64)>,
    /// The verified governance view it was made under.
    pub view: Option<Arc<View>>,
    /// Every configured model's state.
    pub models: BTreeMap<String, ModelStatus>,
}

impl Snapshot {
    /// Why this snapshot no longer proves anything at `t`, if it does not:
    /// no view, a view older than `max` seconds, or a loop that has not
    /// published for `max` seconds (stalled on a hung authority, a stuck store).
    ///
    /// Ages are measured twice, by the node's clock `t` and by the monotonic
    /// clock, and the older one counts: a wall clock that jumps back must not
    /// keep an old view fresh.
    ///
    /// `max` is the node's own bound; the trust root's signed bound applies
    /// when it is tighter.
    pub fn stale(&self, max: u64, t: u64) -> Option<String> {
        let Some(view) = &self.view else {
            return Some("no verified governance view".into());
        };
        let max = view.staleness_bound(max);
        let mono_view = self
            .synced
            .map_or(u64::MAX, |(at, age)| age.saturating_add(at.elapsed().as_secs()));
        let view_age = t.saturating_sub(view.authority_time).max(mono_view);
        let loop_age = t.saturating_sub(self.time).max(self.published.elapsed().as_secs());
        (view_age > max || loop_age > max).then(|| {
            format!(
                "the governance view is {view_age} s old and the node last checked {loop_age} s ago (bound {max} s)"
            )
        })
    }
}

/// Why the loop woke early.
enum Wake {
    /// A model's files changed.
    Files(String),
    /// Something beside the loop (the peer exchange) needs a pass now.
    Pass,
    /// Stop the loop.
    Stop,
}

/// One state change, as `node run` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// When (the node's clock).
    pub time: u64,
    /// The model.
    pub model: String,
    /// `Serving` or `Contained`.
    pub state: &'static str,
    /// For a containment: the reason.
    pub reason: Option<ContainmentReason>,
    /// For a containment: the check that failed.
    pub check: Option<Check>,
    /// For a containment: the lifecycle step it stopped at.
    pub step: Option<LifecycleStep>,
    /// What happened.
    pub detail: String,
}

impl Event {
    /// As one JSON line.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({"model": self.model, "state": self.state}))
    }
}

/// A contained model's lifecycle.
pub type Contained = Box<modelgate_node::lifecycle::Lifecycle<modelgate_node::lifecycle::Contained>>;

/// A model that made it through all ten steps.
pub struct ServingModel {
    /// Its root digest.
    pub digest: String,
    /// The approval or exception it serves under.
    pub basis: String,
}

/// Why a contained lifecycle stopped.
pub fn why(c: &Contained) -> Why {
    let x = c.contained();
    Why {
        reason: x.reason,
        check: x.check,
        step: x.step,
        decision: x.decision,
        detail: x.detail.clone(),
    }
}

/// The node's loop and its state.
pub struct Runtime {
    node: Node,
    shared: Arc<Shared>,
    rx: Receiver<Wake>,
    names: Vec<String>,
    /// Serving models: digest, basis, fingerprint.
    serving: BTreeMap<String, (String, String, Fingerprint)>,
    /// Contained models: why, log size when contained, fingerprint.
    contained: BTreeMap<String, (Why, u64, Fingerprint)>,
    view: Option<Arc<View>>,
    /// The last successful sync (monotonic) and the view's age then.
    synced: Option<(Instant, u64)>,
    dirty: BTreeSet<String>,
    anchor_problem: Option<String>,
    unanchored_since: Option<u64>,
    last_anchor_try: Option<Instant>,
    /// The last anchor did not go through (the authority away, busy, or
    /// taking over): the next try comes after [`ANCHOR_RETRY`], not after a
    /// whole interval, so a short outage does not use up the anchor bound.
    anchor_retry: bool,
    /// The lineage size of the anchor the courier is posting.
    anchor_in_flight: Option<u64>,
    last_heartbeat: Option<Instant>,
    courier: Courier,
    /// Ships lineage to the authority until the runtime is dropped.
    _replicator: Option<crate::replicate::Replicator>,
    /// The serving check repeats the same decision every pass; it changes
    /// only with the state (the cache is keyed by the state digest).
    cache: modelgate_governance::DecisionCache,
    interval: Duration,
}

impl Runtime {
    /// Set up the node from its configuration file and start watching its models.
    pub fn open(config: &Path, interval: Duration) -> Result<Self, Error> {
        Self::new(Parts::from_config(config)?, interval)
    }

    /// Set up the node from its parts and start watching its models; the
    /// loop runs a pass every `interval`, and at once on a file change.
    pub fn new(parts: Parts, interval: Duration) -> Result<Self, Error> {
        let authority = Arc::clone(&parts.authority);
        let clock = Arc::clone(&parts.clock);
        let node = Node::new(parts)?;
        let (tx, rx) = mpsc::sync_channel(WAKE_QUEUE);
        let names: Vec<String> = node.c.models.keys().cloned().collect();
        let models: Vec<(String, PathBuf)> = node.c.models.iter().map(|(n, m)| (n.clone(), m.dir.clone())).collect();
        let changes: Changes = Arc::default();
        if let Err(e) = watch(models, tx.clone(), Arc::clone(&changes)) {
            tracing::warn!("{e}; model files are checked every {} ms instead", interval.as_millis());
        }
        let anchors = load_anchors(&node.c.data_dir.join("anchors.jsonl"));
        let courier = Courier::start(Arc::clone(&authority))?;
        let replicator = match (&node.lineage, node.c.lineage_replication_interval_seconds) {
            (Ok(l), secs) if secs > 0 => Some(crate::replicate::spawn(
                node.c.node.clone(),
                node.key.clone(),
                Arc::clone(l),
                Arc::clone(&authority),
                Duration::from_secs(secs),
            )?),
            _ => None,
        };
        let shared = Arc::new(Shared {
            replication: replicator
                .as_ref()
                .map_or_else(Default::default, |r| Arc::clone(&r.progress)),
            config: node.c.clone(),
            snapshot: RwLock::new(Arc::new(Snapshot {
                time: clock.now(),
                published: Instant::now(),
                synced: None,
                view: None,
                models: names.iter().map(|n| (n.clone(), ModelStatus::Starting)).collect(),
            })),
            lineage: node.lineage.clone(),
            anchors: Mutex::new(Anchors::new(anchors)),
            wake: Mutex::new(tx),
            counters: Mutex::new(BTreeMap::new()),
            changes,
            authority,
            clock,
            split_view: Mutex::new(crate::peers::evidence_containment(&node.c.data_dir)),
            split_views_found: Default::default(),
            stopping: Default::default(),
            rehashing: Mutex::new(None),
            full_checks: Mutex::new(BTreeMap::new()),
            fs_verity: if node.c.fs_verity {
                node.c
                    .models
                    .iter()
                    .map(|(n, m)| (n.clone(), rehash::probe_fs_verity(&m.dir)))
                    .collect()
            } else {
                BTreeMap::new()
            },
        });
        rehash::spawn(
            Arc::clone(&shared),
            rehash::Plan {
                specs: names.iter().map(|n| node.spec(n)).collect(),
                cache: node.digests.clone(),
                every: Duration::from_secs(node.c.rehash_interval_seconds),
                bytes_per_second: node.c.rehash_max_mib_per_second.saturating_mul(1 << 20),
                fs_verity: node.c.fs_verity,
            },
        )?;
        if !node.c.peers.is_empty() {
            let (sh, peers) = (Arc::clone(&shared), node.c.peers.clone());
            let every = Duration::from_secs(node.c.peer_interval_seconds);
            std::thread::Builder::new()
                .name("modelgate-peers".into())
                .spawn(move || crate::peers::run(sh, peers, every))
                .map_err(|e| Error::Start(format!("the peer exchange: {e}")))?;
        }
        Ok(Self {
            node,
            shared,
            rx,
            names,
            serving: BTreeMap::new(),
            contained: BTreeMap::new(),
            view: None,
            synced: None,
            dirty: BTreeSet::new(),
            anchor_problem: None,
            unanchored_since: None,
            last_anchor_try: None,
            anchor_retry: false,
            anchor_in_flight: None,
            last_heartbeat: None,
            courier,
            _replicator: replicator,
            cache: modelgate_governance::DecisionCache::new(1024),
            interval,
        })
    }

    /// What the loop shares with readers.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// Run passes until stopped (`Wake::Stop`), handing each state change to `on_event`.
    pub fn run(mut self, mut on_event: impl FnMut(&Event)) {
        loop {
            for e in self.step() {
                on_event(&e);
            }
            if !self.wait() {
                return;
            }
        }
    }

    /// [`Runtime::run`] on a thread of its own.
    pub fn spawn(self, on_event: impl FnMut(&Event) + Send + 'static) -> Result<std::thread::JoinHandle<()>, Error> {
        std::thread::Builder::new()
            .name("modelgate-node-loop".into())
            .spawn(move || self.run(on_event))
            .map_err(|e| Error::Start(format!("the node loop: {e}")))
    }

    /// Sleep until the interval passes or something wakes the loop.
    /// Returns false when asked to stop.
    fn wait(&mut self) -> bool {
        let go = self.take_wakes();
        // Wakes beyond the queue were coalesced: every model whose change
        // counters differ is re-verified, whether its wake arrived or not.
        if let Ok(c) = self.shared.changes.lock() {
            self.dirty.extend(
                c.iter()
                    .filter(|(_, (seen, done))| seen != done)
                    .map(|(m, _)| m.clone()),
            );
        }
        go && !self.shared.stopping()
    }

    fn take_wakes(&mut self) -> bool {
        match self.rx.recv_timeout(self.interval) {
            Ok(Wake::Files(m)) => {
                self.dirty.insert(m);
                // Let a burst of writes settle for a moment, then go.
                std::thread::sleep(Duration::from_millis(20));
                while let Ok(w) = self.rx.try_recv() {
                    match w {
                        Wake::Files(m) => {
                            self.dirty.insert(m);
                        }
                        Wake::Pass => {}
                        Wake::Stop => return false,
                    }
                }
                true
            }
            Ok(Wake::Pass) => true,
            Ok(Wake::Stop) => false,
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        }
    }

    /// Tell the authority, through the courier (best effort: the containment
    /// itself never waits for it).
    fn report(&self, model_digest: Option<&str>, why: &Why, recovered: bool, t: u64) {
        if let Some(entry) = self.node.report_entry(model_digest, why, recovered, t) {
            if !self.courier.send(Outgoing::Report(entry)) {
                tracing::warn!("the authority is not keeping up; a {:?} report was dropped", why.reason);
            }
        }
    }

    /// Contain `name`; an event and a report when its state or reason changed.
    /// Returns whether it did change.
    fn contain(&mut self, events: &mut Vec<Event>, name: &str, why: Why, t: u64) -> bool {
        let was = self.serving.remove(name).map(|(d, _, _)| d);
        let known = self.contained.get(name).map(|x| (x.0.reason, x.0.check, x.0.decision));
        let changed = was.is_some() || known != Some((why.reason, why.check, why.decision));
        if changed {
            events.push(Event {
                time: t,
                model: name.to_owned(),
                state: "Contained",
                reason: Some(why.reason),
                check: Some(why.check),
                step: why.step,
                detail: why.detail.clone(),
            });
            self.report(was.as_deref(), &why, false, t);
        }
        let size = self.view.as_ref().map_or(0, |v| v.checkpoint.size);
        let fp = fingerprint(&self.node.c.models[name].dir);
        self.contained.insert(name.to_owned(), (why, size, fp));
        changed
    }

    /// One pass: sync, anchor, heartbeat, every model; then publish.
    fn step(&mut self) -> Vec<Event> {
        let t = self.node.now();
        let mut events = Vec::new();
        let sync_failure = self.sync(t);
        self.anchor(t);
        for name in self.names.clone() {
            if let Some(why) = sync_failure.clone().or_else(|| self.node_wide_containment()) {
                self.contain(&mut events, &name, why, t);
                continue;
            }
            self.pass_model(&mut events, &name, t);
        }
        self.publish(t);
        self.heartbeat(t);
        events
    }

    /// Sync once; the containment a failed sync imposes: any failure but an
    /// interruption, or an interruption once the last view is older than its
    /// bound by the wall clock or the monotonic one (a clock set back must
    /// not keep the last view fresh while syncs fail).
    fn sync(&mut self, t: u64) -> Option<Why> {
        match self.node.sync(t) {
            Ok(v) => {
                let same = self
                    .view
                    .as_ref()
                    .is_some_and(|old| old.checkpoint == v.checkpoint && old.authority_time == v.authority_time);
                self.synced = Some((Instant::now(), t.saturating_sub(v.authority_time)));
                if !same {
                    self.view = Some(Arc::new(v.clone()));
                }
                None
            }
            Err(e) => {
                let fatal = e.reason != ContainmentReason::SyncInterrupted;
                let node_max = self.node.c.max_staleness_seconds;
                let max = self.view.as_ref().map_or(node_max, |v| v.staleness_bound(node_max));
                let mono = self
                    .synced
                    .is_none_or(|(at, age)| age.saturating_add(at.elapsed().as_secs()) > max);
                let stale = mono
                    || self
                        .view
                        .as_ref()
                        .is_none_or(|v| t.saturating_sub(v.authority_time) > max);
                if fatal || stale {
                    self.view = None;
                    self.synced = None;
                    Some(Why::new(e.reason, Check::of_reason(e.reason), e.detail))
                } else {
                    None
                }
            }
        }
    }

    /// What contains every model whatever its own state: a proven split
    /// view, or lineage left un-anchored past its bound.
    fn node_wide_containment(&self) -> Option<Why> {
        if let Some(d) = self.shared.split_view() {
            let reason = ContainmentReason::CoordinationInconsistent;
            return Some(Why::new(reason, Check::of_reason(reason), d));
        }
        self.anchor_problem.clone().map(|p| {
            Why::new(
                ContainmentReason::AuditDiscontinuity,
                Check::ExecutionLineageContinuity,
                p,
            )
        })
    }

    /// One model this pass: kept as it is when nothing it depends on moved,
    /// contained when the decision no longer allows it, else taken through
    /// the lifecycle again.
    fn pass_model(&mut self, events: &mut Vec<Event>, name: &str, t: u64) {
        let fp = fingerprint(&self.node.c.models[name].dir);
        // The change generation this pass verifies against (read before
        // hashing: a change during the re-hash leaves the model pending).
        let seen = self.shared.changes.lock().ok().and_then(|c| c.get(name).copied());
        let dirty = self.dirty.remove(name) || seen.is_some_and(|(s, v)| s != v);
        if let Some((digest, _, old_fp)) = self.serving.get(name).cloned() {
            if let Some(why) = self.still_allowed(&digest, t) {
                self.contain(events, name, why, t);
                return;
            }
            if fp == old_fp && !dirty {
                return;
            }
        } else if let Some((why, size, old_fp)) = self.contained.get(name) {
            // Contained: retry when the log or the files changed, or when
            // the cause may pass by itself (the lineage store was busy or
            // unwritable, the authority was away).
            let transient = matches!(
                why.reason,
                ContainmentReason::AuditDiscontinuity | ContainmentReason::SyncInterrupted
            );
            if !transient && self.view.as_ref().is_none_or(|v| v.checkpoint.size == *size) && *old_fp == fp && !dirty {
                return;
            }
        }
        let was_serving = self.serving.get(name).map(|(d, _, _)| d.clone());
        let outcome = self.node.lifecycle(name, self.view.as_deref(), t);
        // Whatever the outcome, the files as of `seen` have been judged:
        // Serving if they verify, Contained (which the gateway refuses) if not.
        if let (Some((s, _)), Ok(mut c)) = (seen, self.shared.changes.lock()) {
            if let Some(e) = c.get_mut(name) {
                e.1 = s;
            }
        }
        match outcome {
            Ok(s) => {
                if was_serving.as_deref() != Some(s.digest.as_str()) {
                    events.push(Event {
                        time: t,
                        model: name.to_owned(),
                        state: "Serving",
                        reason: None,
                        check: None,
                        step: None,
                        detail: format!("{} under {}", s.digest, s.basis),
                    });
                    if let Some((was, _, _)) = self.contained.remove(name) {
                        let why = Why {
                            detail: "recovered through the full lifecycle".into(),
                            ..was
                        };
                        self.report(Some(&s.digest), &why, true, t);
                    }
                }
                self.serving.insert(name.to_owned(), (s.digest, s.basis, fp));
            }
            Err(c) => {
                if self.contain(events, name, why(&c), t) {
                    self.node.record_stopped(name, &c);
                }
            }
        }
    }

    /// A Serving model's decision, asked again for the node itself: the
    /// containment when it no longer allows the model (revoked, expired, …).
    fn still_allowed(&mut self, digest: &str, t: u64) -> Option<Why> {
        let req = DecisionRequest {
            model: digest.to_owned(),
            scope: self.node.c.scopes[0].clone(),
            node: self.node.c.node.clone(),
            principal: format!("node:{}", self.node.c.node),
            groups: vec![],
            attributes: vec![],
        };
        let cache = &mut self.cache;
        let d = self
            .view
            .as_ref()
            .map(|v| cache.decide(&v.state, &req, t))
            .filter(|d| !d.allow)?;
        let check = d
            .reasons
            .first()
            .map_or(Check::ModelScopeContinuity, |r| Check::of_decision(*r));
        Some(Why {
            decision: d.reasons.first().copied(),
            ..Why::new(
                ContainmentReason::UnverifiableTransition,
                check,
                format!("{:?}: {}", d.reasons, d.detail),
            )
        })
    }

    fn publish(&self, t: u64) {
        let models = self
            .names
            .iter()
            .map(|n| {
                let s = if let Some((digest, basis, _)) = self.serving.get(n) {
                    ModelStatus::Serving {
                        digest: digest.clone(),
                        basis: basis.clone(),
                    }
                } else if let Some((why, _, _)) = self.contained.get(n) {
                    ModelStatus::Contained(why.clone())
                } else {
                    ModelStatus::Starting
                };
                (n.clone(), s)
            })
            .collect();
        let snap = Arc::new(Snapshot {
            time: t,
            published: Instant::now(),
            synced: self.synced,
            view: self.view.clone(),
            models,
        });
        if let Ok(mut s) = self.shared.snapshot.write() {
            *s = snap;
        }
    }

    /// Anchor the lineage log when it grew and the interval passed; record
    /// an anchoring problem once un-anchored records are older than the
    /// trust root's bound.
    fn anchor(&mut self, t: u64) {
        // What the courier answered for anchors posted earlier.
        while let Ok((size, result)) = self.courier.anchored.try_recv() {
            self.anchor_in_flight = None;
            match result {
                Anchored::Accepted(index) => {
                    let a = Anchor { size, index };
                    if let Ok(mut list) = self.shared.anchors.lock() {
                        list.push(a);
                    }
                    let _ = append_anchor(&self.node.c.data_dir.join("anchors.jsonl"), &a);
                    // The anchor counts once the log shows it (next sync);
                    // the lag clock stops now, it was accepted durably.
                    self.unanchored_since = None;
                    self.anchor_problem = None;
                    self.anchor_retry = false;
                }
                Anchored::Refused { rule, detail } if rule == modelgate_governance::Rule::AnchorInvalid.code() => {
                    // The authority proved our log inconsistent with what we
                    // anchored before: no waiting for the bound.
                    self.anchor_problem = Some(format!("the authority refused the lineage anchor ({rule}): {detail}"));
                    return;
                }
                Anchored::Refused { rule, detail } => {
                    self.anchor_retry = true;
                    tracing::warn!("anchoring lineage size {size}: refused ({rule}): {detail}")
                }
                Anchored::Failed(e) => {
                    self.anchor_retry = true;
                    tracing::warn!("anchoring lineage size {size}: {e}")
                }
            }
        }
        let Ok(lineage) = self.node.lineage.clone() else {
            self.anchor_problem = Some("the lineage log is not open".into());
            return;
        };
        let Some(view) = self.view.clone() else { return };
        let anchored = view.state.nodes.get(&self.node.c.node).and_then(|n| n.anchor.clone());
        let anchored_size = anchored.as_ref().map_or(0, |a| a.size);
        let latest = lineage.latest_checkpoint();
        let (size, note) = match latest {
            Ok(Some(x)) => x,
            Ok(None) => (0, Vec::new()),
            Err(e) => {
                self.anchor_problem = Some(format!("reading the lineage log: {e}"));
                return;
            }
        };
        // What was anchored must still be here, unchanged: a lineage log that
        // lost records or was replaced breaks the audit trail, at once.
        if size < anchored_size {
            self.anchor_problem = Some(format!(
                "the lineage log holds {size} records but {anchored_size} were anchored: records were lost or the log was replaced"
            ));
            return;
        }
        if let (Some(a), true) = (&anchored, size == anchored_size && size > 0) {
            let root = modelgate_tlog::Note::parse(&note)
                .ok()
                .and_then(|n| modelgate_tlog::Checkpoint::parse(n.text()).ok())
                .map(|c| hex::encode(c.root));
            if root.as_deref() != Some(a.root.as_str()) {
                self.anchor_problem = Some(format!(
                    "the lineage log at the anchored size {size} no longer has the anchored root: it was rewritten"
                ));
                return;
            }
        }
        if size <= anchored_size {
            self.unanchored_since = None;
            self.anchor_problem = None;
            return;
        }
        let since = *self.unanchored_since.get_or_insert(t);
        let bound = view
            .state
            .trust_root()
            .map_or(60, |r| r.doc.freshness.anchor_max_age_seconds);
        let wait = if self.anchor_retry {
            ANCHOR_RETRY.min(Duration::from_secs(self.node.c.anchor_interval_seconds))
        } else {
            Duration::from_secs(self.node.c.anchor_interval_seconds)
        };
        let due = self.last_anchor_try.is_none_or(|x| x.elapsed() >= wait);
        if due && self.anchor_in_flight.is_none() {
            self.last_anchor_try = Some(Instant::now());
            match self.anchor_entry(&*lineage, anchored_size, size, &note) {
                Ok(entry) => {
                    if self.courier.send(Outgoing::Anchor { entry, size }) {
                        self.anchor_in_flight = Some(size);
                    }
                }
                Err(e) => tracing::warn!("anchoring lineage size {size}: {e}"),
            }
        }
        if t.saturating_sub(since) > bound {
            self.anchor_problem = Some(format!(
                "lineage records have been un-anchored for {} s (bound {bound} s)",
                t.saturating_sub(since)
            ));
        }
    }

    /// The signed anchor entry for lineage size `size`, with the consistency
    /// proof from the anchored size `from`.
    fn anchor_entry(&self, lineage: &dyn LineageLog, from: u64, size: u64, note: &[u8]) -> Result<Vec<u8>, Error> {
        let proof = if from == 0 {
            vec![]
        } else {
            lineage.consistency_proof(from, size)?
        };
        let note = std::str::from_utf8(note).map_err(|e| Error::Lineage(LineageError::Read(e.to_string())))?;
        let entry = NodeAnchorEntry::new(&self.node.c.node, note, proof.iter().map(|h| B64.encode(h)).collect());
        Ok(entry.sign(&[self.node.key.signer()])?)
    }

    fn heartbeat(&mut self, t: u64) {
        let due = self
            .last_heartbeat
            .is_none_or(|x| x.elapsed() >= Duration::from_secs(self.node.c.heartbeat_interval_seconds));
        if !due || self.view.is_none() {
            return;
        }
        self.last_heartbeat = Some(Instant::now());
        // What this pass published, so the authority sees what callers see.
        let snap = self.shared.snapshot();
        let models: BTreeMap<&str, serde_json::Value> =
            snap.models.iter().map(|(n, s)| (n.as_str(), s.json())).collect();
        let lineage_size = self.node.lineage.as_ref().ok().and_then(|g| g.size().ok());
        let counters = self.shared.counters.lock().map(|c| c.clone()).unwrap_or_default();
        let summary = serde_json::json!({
            "models": models,
            "checkpoint_size": self.view.as_ref().map(|v| v.checkpoint.size),
            "staleness_seconds": self.view.as_ref().map(|v| t.saturating_sub(v.authority_time)),
            "lineage_size": lineage_size,
            "anchor_problem": self.anchor_problem,
            "counters": counters,
        });
        if let Ok(hb) = modelgate_governance::heartbeat::sign_heartbeat(&self.node.key, &self.node.c.node, t, &summary)
        {
            let path = format!("/api/v1/nodes/{}/heartbeat", self.node.c.node);
            if !self.courier.send(Outgoing::Heartbeat { path, body: hb }) {
                tracing::debug!("heartbeat dropped: the authority is not keeping up");
            }
        }
    }
}

/// Stop the loop on SIGTERM or SIGINT (a small signal thread).
pub fn stop_on_signals(shared: &Arc<Shared>) {
    let s = Arc::clone(shared);
    let _ = std::thread::Builder::new()
        .name("modelgate-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                use tokio::signal::unix::{signal, SignalKind};
                let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
                else {
                    return;
                };
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            });
            s.stop();
        });
}

/// One lifecycle transition, as lineage records list it.
#[derive(Serialize)]
struct TransitionRecord<'a> {
    step: &'static str,
    time: u64,
    detail: &'a str,
}

impl<'a> TransitionRecord<'a> {
    fn of(t: &'a modelgate_node::lifecycle::Transition) -> Self {
        Self {
            step: t.step,
            time: t.time,
            detail: &t.detail,
        }
    }
}

/// The lineage record of a lifecycle that reached Approved: written (and
/// made durable) at Persisting.
#[derive(Serialize)]
struct LifecycleRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    model: &'a str,
    digest: &'a str,
    transitions: Vec<TransitionRecord<'a>>,
}

/// The lineage record of a lifecycle that stopped, with the step it stopped at.
#[derive(Serialize)]
struct StoppedRecord<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    model: &'a str,
    reason: ContainmentReason,
    check: Check,
    step: Option<LifecycleStep>,
    detail: &'a str,
    transitions: Vec<TransitionRecord<'a>>,
}
