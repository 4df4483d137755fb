//! What the loop shares with the threads beside it (the gateway, `exec`,
//! the peer exchange, the background re-verification): the published
//! snapshot, the wake channel, the file-change counters and the node-wide
//! flags.

use super::*;

/// State shared between the loop and readers (gateway, exec).
pub struct Shared {
    /// The node's configuration.
    pub config: NodeConfig,
    pub(super) snapshot: RwLock<Arc<Snapshot>>,
    /// The lineage log, or why it is not open.
    pub lineage: Result<Arc<dyn LineageLog>, LineageError>,
    /// The lineage sizes anchored so far, ascending and thinned to at most
    /// [`ANCHORS_KEPT`] (for proofs: see [`Anchors`]).
    pub anchors: Mutex<Anchors>,
    /// Wakes the loop (and makes it re-verify the named models).
    pub(super) wake: Mutex<SyncSender<Wake>>,
    /// Counters the gateway adds to heartbeats (requests, denials).
    pub(super) counters: Mutex<BTreeMap<String, u64>>,
    /// File changes seen and re-verified, per model.
    pub(super) changes: Changes,
    /// The authority (the gateway reads the governance half of proofs there).
    pub authority: Arc<dyn AuthorityClient>,
    /// The node's clock.
    pub clock: Arc<dyn Clock>,
    /// What lineage replication has done (zeros when it is off).
    pub replication: Arc<crate::replicate::Progress>,
    /// A proven split view (see [`crate::peers`]): every model stays contained.
    pub(super) split_view: Mutex<Option<String>>,
    /// Split views proven by the peer exchange since the node started.
    pub split_views_found: std::sync::atomic::AtomicU64,
    /// Set once the node is stopping (threads beside the loop end).
    pub(super) stopping: std::sync::atomic::AtomicBool,
    /// The background re-verification's run in progress (cancelled on stop).
    pub(super) rehashing: Mutex<Option<Arc<modelgate_node::integrity::HashProgress>>>,
    /// The last full re-verification of each model.
    pub(super) full_checks: Mutex<BTreeMap<String, FullCheck>>,
    /// With `fs_verity` on: per model, whether its file system can seal
    /// (`Err` says why not), as probed at start.
    pub fs_verity: BTreeMap<String, Result<(), String>>,
}

impl Shared {
    /// What the loop last published.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.snapshot.read() {
            Ok(s) => Arc::clone(&s),
            // A poisoned lock means the loop panicked: nothing is proven any more.
            Err(_) => Arc::new(Snapshot {
                time: self.clock.now(),
                published: Instant::now(),
                synced: None,
                view: None,
                models: BTreeMap::new(),
            }),
        }
    }

    /// Ask the loop for a pass now, re-verifying `model`.
    pub fn wake(&self, model: &str) {
        if let Ok(w) = self.wake.lock() {
            // Full: a wake is pending already, and each pass looks at every
            // model's files again.
            let _ = w.try_send(Wake::Files(model.to_owned()));
        }
    }

    /// A proven split view, if one was found (it contains every model).
    pub fn split_view(&self) -> Option<String> {
        // A poisoned lock proves nothing: contain.
        self.split_view
            .lock()
            .map_or_else(|_| Some("the split-view state is unreadable".into()), |s| s.clone())
    }

    /// Record a proven split view and make the loop contain at once.
    pub fn set_split_view(&self, detail: String) {
        if let Ok(mut s) = self.split_view.lock() {
            *s = Some(detail);
        }
        if let Ok(w) = self.wake.lock() {
            let _ = w.try_send(Wake::Pass);
        }
    }

    /// Whether the node is stopping.
    pub fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sleep `d`, or less when the node stops meanwhile.
    pub fn sleep(&self, d: Duration) {
        let step = Duration::from_millis(50);
        let mut slept = Duration::ZERO;
        while slept < d && !self.stopping() {
            std::thread::sleep(step);
            slept += step;
        }
    }

    /// The last full re-verification of each model.
    pub fn full_checks(&self) -> BTreeMap<String, FullCheck> {
        self.full_checks.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Stop the loop (it finishes its pass first).
    pub fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(p) = self.rehashing.lock().ok().and_then(|p| p.clone()) {
            p.cancel();
        }
        if let Ok(w) = self.wake.lock() {
            // Full: the loop sees `stopping` when it takes the next wake.
            let _ = w.try_send(Wake::Stop);
        }
    }

    /// Did the model's files change after its last verification?
    pub fn unverified_change(&self, model: &str) -> bool {
        // A poisoned lock proves nothing: treat it as a change.
        self.changes
            .lock()
            .map_or(true, |c| c.get(model).is_some_and(|(seen, verified)| seen != verified))
    }

    /// Count one `name` event for the next heartbeat (requests, denials by code).
    pub fn count(&self, name: &str) {
        if let Ok(mut c) = self.counters.lock() {
            // Counted on every call: no allocation once the name is known.
            match c.get_mut(name) {
                Some(n) => *n += 1,
                None => {
                    c.insert(name.to_owned(), 1);
                }
            }
        }
    }
}
