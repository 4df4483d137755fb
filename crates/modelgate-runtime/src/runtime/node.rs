//! A node's parts (configuration, key, the three seams) and the node itself: one sync and one lifecycle run at a time, as the loop and `node status` use them.

use super::*;

/// What a node is made of: its configuration and key, and the three seams
/// (authority, lineage log, clock). [`Node::open`] builds the real ones
/// from the configuration; tests pass their own.
pub struct Parts {
    /// The configuration.
    pub config: NodeConfig,
    /// The node's signing key (lineage checkpoints, anchors, reports).
    pub key: SignerKey,
    /// The pinned trust root (the governance log's entry 0).
    pub pinned: Vec<u8>,
    /// The authority.
    pub authority: Arc<dyn AuthorityClient>,
    /// The lineage log, or why it could not be opened.
    pub lineage: Result<Arc<dyn LineageLog>, LineageError>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl Parts {
    /// The real parts, from the configuration file at `config`.
    pub fn from_config(config: &Path) -> Result<Self, Error> {
        let c = NodeConfig::load(config, std::env::vars())?;
        crate::tls::configure_clients(&c)?;
        let pinned = modelgate_node::files::read_limited(&c.trust_root, 1 << 20, "trust root")?;
        let key = crate::init::node_key(&c)?;
        std::fs::create_dir_all(&c.data_dir).map_err(|e| modelgate_node::NodeError::io(&c.data_dir, e))?;
        // A lineage log that cannot be opened is not a usage error: the node
        // runs, and every model is contained (AuditDiscontinuity) until it can.
        let lineage =
            StoreLineage::open(&c.data_dir.join("lineage.db"), &key).map(|l| Arc::new(l) as Arc<dyn LineageLog>);
        Ok(Self {
            authority: Arc::new(HttpAuthority::new(&c.authority)),
            config: c,
            key,
            pinned,
            lineage,
            clock: Arc::new(SystemClock),
        })
    }
}

/// A node's pieces, set up from its [`Parts`]: what `node status` uses
/// for one pass, and the loop for every pass.
pub struct Node {
    /// The configuration.
    pub c: NodeConfig,
    pub(super) key: SignerKey,
    pub(super) syncer: modelgate_node::sync::Syncer,
    pub(super) authority: Arc<dyn AuthorityClient>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) trusted_path: PathBuf,
    /// What `trusted_path` holds, so an unchanged checkpoint is not rewritten.
    pub(super) persisted: Option<modelgate_node::sync::Trusted>,
    pub(super) lineage: Result<Arc<dyn LineageLog>, LineageError>,
    pub(super) reports: modelgate_node::report::ReportSequence,
    /// What this node already verified of its models' files; none when it
    /// cannot be opened (then every file is hashed at every check).
    pub(super) digests: Option<Arc<modelgate_node::digest_cache::DigestCache>>,
}

impl Node {
    /// The node of the configuration file at `config`.
    pub fn open(config: &Path) -> Result<Self, Error> {
        Self::new(Parts::from_config(config)?)
    }

    /// A node from its parts.
    pub fn new(p: Parts) -> Result<Self, Error> {
        use modelgate_node::sync::{Syncer, Trusted};
        let c = p.config;
        std::fs::create_dir_all(&c.data_dir).map_err(|e| modelgate_node::NodeError::io(&c.data_dir, e))?;
        let trusted_path = c.data_dir.join("trusted-checkpoint.json");
        let trusted: Option<Trusted> = match std::fs::read(&trusted_path) {
            Ok(b) => Some(
                serde_json::from_slice(&b).map_err(|e| Error::Config(format!("{}: {e}", trusted_path.display())))?,
            ),
            Err(_) => None,
        };
        let persisted = trusted.clone();
        let syncer = Syncer::new(&p.pinned, c.max_staleness_seconds, trusted)
            .map_err(|e| Error::Config(format!("the pinned trust root: {e}")))?;
        let reports = modelgate_node::report::ReportSequence::open(&c.data_dir.join("report-sequence"))?;
        let digests = match modelgate_node::digest_cache::DigestCache::open(&c.data_dir) {
            Ok((cache, discarded)) => {
                if let Some(why) = discarded {
                    tracing::warn!(%why, "the verified-digest cache was discarded");
                }
                Some(Arc::new(cache))
            }
            Err(e) => {
                tracing::warn!(error = %e, "no verified-digest cache: every file is hashed at every check");
                None
            }
        };
        Ok(Self {
            c,
            key: p.key,
            syncer,
            authority: p.authority,
            clock: p.clock,
            trusted_path,
            persisted,
            lineage: p.lineage,
            reports,
            digests,
        })
    }

    /// Now, by the node's clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Sync; on success persist the trusted checkpoint before it is used.
    ///
    /// Only a checkpoint that differs from the persisted one is written: the
    /// write is an fsync and a rename, and it used to be repeated on every pass
    /// (four a second) with nothing changed, each time a filesystem journal
    /// commit beside the lineage log's own fsyncs.
    pub fn sync(&mut self, t: u64) -> Result<&View, modelgate_node::SyncError> {
        let v = self.syncer.sync(&Reads(&*self.authority), t)?;
        let trusted = v.trusted();
        if self.persisted.as_ref() != Some(&trusted) {
            let written = serde_json::to_vec_pretty(&trusted)
                .map_err(|e| e.to_string())
                .and_then(|b| modelgate_node::files::write_atomic(&self.trusted_path, &b).map_err(|e| e.to_string()));
            if written.is_err() {
                return Err(modelgate_node::SyncError {
                    reason: ContainmentReason::AuditDiscontinuity,
                    detail: format!("couldn't persist {}", self.trusted_path.display()),
                });
            }
            self.persisted = Some(trusted);
        }
        self.syncer.view().ok_or_else(|| modelgate_node::SyncError {
            reason: ContainmentReason::StateDivergence,
            detail: "the sync kept no view".into(),
        })
    }

    /// What the lifecycle of model `name` checks.
    pub(super) fn spec(&self, name: &str) -> modelgate_node::lifecycle::ModelSpec {
        let m = &self.c.models[name];
        modelgate_node::lifecycle::ModelSpec {
            name: name.to_owned(),
            dir: m.dir.clone(),
            bundle: m.bundle.clone(),
            scope: self.c.scopes[0].clone(),
            node: self.c.node.clone(),
        }
    }

    /// All ten steps for one model; the lifecycle is recorded in the lineage log.
    pub fn lifecycle(&self, name: &str, view: Option<&View>, t: u64) -> Result<ServingModel, Contained> {
        use modelgate_node::lifecycle::Lifecycle;
        let (l, v) = Lifecycle::new(self.spec(name), t).validate(t)?.inspect_coordination(
            view,
            t,
            self.c.max_staleness_seconds,
        )?;
        let integrity = modelgate_node::integrity::IntegrityOptions {
            cache: self.digests.as_deref(),
            trust_cache: true,
            fs_verity: self.c.fs_verity,
            progress: None,
        };
        let l = l.verify_integrity_with(t, integrity)?.verify_signature(v, t)?;
        let lineage = self.lineage.as_ref().map_err(Clone::clone);
        let l = l.validate_telemetry(lineage.and_then(|g| g.size()), t)?;
        let (l, digest, basis) = l.evaluate(v, t)?;
        let l = l.approve(t);
        let record = LifecycleRecord {
            kind: "lifecycle",
            model: name,
            digest: &digest,
            transitions: l.transitions().iter().map(TransitionRecord::of).collect(),
        };
        // A record that cannot be encoded is not persisted: the model is contained.
        let record = serde_json::to_vec(&record)
            .map_err(|e| LineageError::Write(format!("the lifecycle record could not be encoded: {e}")));
        let durable = match (&self.lineage, record) {
            (Ok(g), Ok(record)) => g.append(record).map(|r| r.index),
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
        };
        let l = l.persist(durable, t)?;
        let audited = match &self.lineage {
            Ok(g) => g.audit(),
            Err(e) => Err(e.clone()),
        };
        let l = l.verify_audit(audited, t)?;
        let s = l.serve(digest, basis, v.checkpoint.size, t);
        Ok(ServingModel {
            digest: s.serving().digest.clone(),
            basis: s.serving().basis.clone(),
        })
    }

    /// The lineage record of a lifecycle that stopped: the transitions up to
    /// the step where it stopped, and why (best effort: the log may be the
    /// thing that failed).
    pub(super) fn record_stopped(&self, name: &str, c: &Contained) {
        let Ok(g) = &self.lineage else { return };
        let x = c.contained();
        let record = StoppedRecord {
            kind: "lifecycle-stopped",
            model: name,
            reason: x.reason,
            check: x.check,
            step: x.step,
            detail: &x.detail,
            transitions: c.transitions().iter().map(TransitionRecord::of).collect(),
        };
        match serde_json::to_vec(&record) {
            Ok(r) => {
                let _ = g.append_then(r, Box::new(|_| {}));
            }
            Err(e) => tracing::error!(error = %e, "encoding a stopped lifecycle's lineage record"),
        }
    }

    /// A signed containment (or recovery) report for the authority, with the
    /// node's next report sequence; `None` when it cannot be numbered.
    pub(super) fn report_entry(
        &self,
        model_digest: Option<&str>,
        why: &Why,
        recovered: bool,
        t: u64,
    ) -> Option<Vec<u8>> {
        let reason = why.reason;
        let models: Vec<String> = model_digest.map(str::to_owned).into_iter().collect();
        let logged = self
            .syncer
            .view()
            .and_then(|v| v.state.nodes.get(&self.c.node))
            .and_then(|n| n.last_report.as_ref())
            .map_or(0, |r| r.sequence);
        let sequence = match self.reports.next(logged) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("not reporting {reason:?}: {e}");
                return None;
            }
        };
        let c = Containment {
            models,
            reason,
            check: why.check,
            step: why.step,
            detail: why.detail.clone(),
            recovered,
        };
        modelgate_node::report::containment_report(&self.key, &self.c.node, sequence, c, t)
            .map_err(|e| tracing::warn!("not reporting {reason:?}: {e}"))
            .ok()
    }
}
