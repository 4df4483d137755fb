//! The background full re-verification: every byte of every Serving model
//! read again, whatever the verified-digest cache vouches for, first once
//! the node has checked its models and then every `rehash_interval_seconds`,
//! paced to `rehash_max_mib_per_second`.
//!
//! It catches what a file's identity does not show (the clock set back by
//! root, a block device written beneath the file system, a sealed file's
//! block that no longer reads). A mismatch, or a read that fails, counts as
//! a change of the model's files: the gateway refuses the model at once
//! (`Shared::unverified_change`), and the loop takes it through the
//! lifecycle again, which reads every file (the cache was forgotten for the
//! model) and contains it with `UnauthorizedModification`.

use super::*;
use modelgate_node::digest_cache::DigestCache;
use modelgate_node::integrity::HashProgress;
use modelgate_node::integrity::{self, IntegrityOptions};
use modelgate_node::lifecycle::ModelSpec;

/// The last full re-verification of one model, as `/status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FullCheck {
    /// When it finished (the node's clock).
    pub finished: u64,
    /// Whether every file matched the signed manifest.
    pub ok: bool,
    /// What it found.
    pub detail: String,
    /// Bytes read.
    pub bytes: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// What the re-verification thread needs.
pub(super) struct Plan {
    pub(super) specs: Vec<ModelSpec>,
    pub(super) cache: Option<Arc<DigestCache>>,
    pub(super) every: Duration,
    pub(super) bytes_per_second: u64,
    pub(super) fs_verity: bool,
}

/// Start the thread (nothing when the interval is 0).
pub(super) fn spawn(shared: Arc<Shared>, plan: Plan) -> Result<(), Error> {
    if plan.every.is_zero() {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("modelgate-rehash".into())
        .spawn(move || run(&shared, &plan))
        .map(|_| ())
        .map_err(|e| Error::Start(format!("the background re-verification: {e}")))
}

fn run(shared: &Shared, plan: &Plan) {
    // Until every model has been through its first check.
    while !shared.stopping()
        && shared
            .snapshot()
            .models
            .values()
            .any(|m| matches!(m, ModelStatus::Starting))
    {
        shared.sleep(Duration::from_millis(100));
    }
    while !shared.stopping() {
        for spec in &plan.specs {
            if shared.stopping() {
                return;
            }
            let serving = matches!(
                shared.snapshot().models.get(&spec.name),
                Some(ModelStatus::Serving { .. })
            );
            if serving {
                check(shared, plan, spec);
            }
        }
        shared.sleep(plan.every);
    }
}

/// Re-verify one model in full; on a mismatch, make it a change.
fn check(shared: &Shared, plan: &Plan, spec: &ModelSpec) {
    let progress = Arc::new(HashProgress::paced(plan.bytes_per_second));
    if let Ok(mut p) = shared.rehashing.lock() {
        *p = Some(Arc::clone(&progress));
    }
    let o = IntegrityOptions {
        cache: plan.cache.as_deref(),
        trust_cache: false,
        fs_verity: plan.fs_verity,
        progress: Some(&progress),
    };
    let result = integrity::verify(spec, o);
    if let Ok(mut p) = shared.rehashing.lock() {
        *p = None;
    }
    if shared.stopping() {
        return;
    }
    let (ok, detail) = match result {
        Ok(v) => (true, v.detail()),
        Err((_, detail)) => (false, detail),
    };
    let full = FullCheck {
        finished: shared.clock.now(),
        ok,
        detail,
        bytes: progress.done.load(std::sync::atomic::Ordering::Relaxed),
        seconds: progress.elapsed().as_secs_f64(),
    };
    if !ok {
        tracing::error!(model = %spec.name, detail = %full.detail,
            "the full re-verification found the model's files changed; it is refused until verified again");
        if let Ok(mut c) = shared.changes.lock() {
            c.entry(spec.name.clone()).or_default().0 += 1;
        }
        shared.wake(&spec.name);
    } else {
        tracing::info!(model = %spec.name, bytes = full.bytes, seconds = full.seconds,
            "the full re-verification matched the signed manifest");
    }
    if let Ok(mut f) = shared.full_checks.lock() {
        f.insert(spec.name.clone(), full);
    }
}

/// Whether the file system of a model's first file can seal it with
/// fs-verity (measuring it changes nothing).
pub(super) fn probe_fs_verity(dir: &Path) -> Result<(), String> {
    let first = fingerprint(dir).into_iter().next().map(|(p, _)| p);
    let file = first.ok_or_else(|| format!("{} has no file", dir.display()))?;
    modelgate_node::fs_verity::measure(&file).map(|_| ())
}
