//! Lineage replication: a thread that ships the node's new lineage records
//! to the authority (`POST /api/v1/nodes/{id}/lineage`), in batches of at
//! most [`MAX_RECORDS`] records and [`MAX_BYTES`] bytes, each with a
//! checkpoint the node signs for the batch's end and a consistency proof from
//! what the authority already holds. The authority keeps a batch only when it
//! proves itself, so the node trusts nothing it answers but the size it
//! holds; a refused batch is tried again (from the size the authority names
//! on a gap), never skipped. Records hold metadata and digests: a node that
//! keeps content in its records does not replicate (its configuration says so).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use modelgate_tlog::{Checkpoint, SignerKey};

use crate::authority::AuthorityClient;
use crate::lineage::LineageLog;

/// Records in one batch (the authority's bound).
pub const MAX_RECORDS: u64 = 5_000;
/// Record bytes in one batch (well under the authority's 16 MiB body bound
/// once base64-encoded).
pub const MAX_BYTES: usize = 8 << 20;

/// What the replicator has done, for `/metrics` and `/status`.
#[derive(Default)]
pub struct Progress {
    /// Records the authority holds (as it last said).
    pub shipped: AtomicU64,
    /// Batches the authority refused (a gap, an invalid batch, an error).
    pub refused: AtomicU64,
    /// Batches kept.
    pub batches: AtomicU64,
}

/// Stops the replicator when dropped.
pub struct Replicator {
    stop: Arc<AtomicBool>,
    /// Its progress.
    pub progress: Arc<Progress>,
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One step's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing new to ship.
    Idle,
    /// Shipped; the authority now holds this many records.
    Shipped(u64),
    /// Not shipped, and why (tried again on the next tick).
    Failed(String),
}

#[derive(serde::Deserialize)]
struct Held {
    size: u64,
}

/// Ship what the authority does not hold yet (one batch). `known` is the
/// size the authority last said it holds (`None`: ask it).
pub fn step(
    node: &str,
    key: &SignerKey,
    lineage: &dyn LineageLog,
    authority: &dyn AuthorityClient,
    known: &mut Option<u64>,
) -> Step {
    let path = format!("/api/v1/nodes/{node}/lineage");
    let held = match *known {
        Some(k) => k,
        None => match authority.get(&path, 4096) {
            Ok((200, body)) => match serde_json::from_slice::<Held>(&body) {
                Ok(h) => {
                    *known = Some(h.size);
                    h.size
                }
                Err(e) => return Step::Failed(format!("the authority's lineage size: {e}")),
            },
            Ok((status, _)) => return Step::Failed(format!("asking the lineage size held: HTTP {status}")),
            Err(e) => return Step::Failed(e.to_string()),
        },
    };
    let size = match lineage.size() {
        Ok(s) => s,
        Err(e) => return Step::Failed(e.to_string()),
    };
    if size <= held {
        if size < held {
            return Step::Failed(format!(
                "the authority holds {held} records of this node, more than its lineage log ({size})"
            ));
        }
        return Step::Idle;
    }
    let mut end = size.min(held + MAX_RECORDS);
    let mut records = match lineage.entries(held, end) {
        Ok(r) => r,
        Err(e) => return Step::Failed(e.to_string()),
    };
    let mut bytes = 0;
    if let Some(cut) = records.iter().position(|r| {
        bytes += r.len();
        bytes > MAX_BYTES
    }) {
        records.truncate(cut.max(1));
        end = held + records.len() as u64;
    }
    let note = match lineage.checkpoint(end) {
        Ok(Some(n)) => n,
        Ok(None) => {
            // No stored checkpoint at this size: sign one (the same key
            // signs every lineage checkpoint of this node).
            let root = match lineage.root(end) {
                Ok(r) => r,
                Err(e) => return Step::Failed(e.to_string()),
            };
            let cp = Checkpoint {
                origin: key.name().to_owned(),
                size: end,
                root,
                extensions: vec![],
            };
            match cp.sign(key) {
                Ok(n) => n.to_bytes(),
                Err(e) => return Step::Failed(format!("signing the batch's checkpoint: {e}")),
            }
        }
        Err(e) => return Step::Failed(e.to_string()),
    };
    let consistency = if held == 0 {
        Vec::new()
    } else {
        match lineage.consistency_proof(held, end) {
            Ok(p) => p,
            Err(e) => return Step::Failed(e.to_string()),
        }
    };
    let body = serde_json::json!({
        "from": held,
        "records": records.iter().map(|r| B64.encode(r)).collect::<Vec<_>>(),
        "checkpoint": String::from_utf8_lossy(&note),
        "consistency": consistency.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
    });
    let body = match serde_json::to_vec(&body) {
        Ok(b) => b,
        Err(e) => return Step::Failed(e.to_string()),
    };
    match authority.post(&path, "application/json", &body) {
        Ok((200, answer)) => match serde_json::from_slice::<Held>(&answer) {
            Ok(h) => {
                *known = Some(h.size);
                Step::Shipped(h.size)
            }
            Err(e) => {
                *known = None;
                Step::Failed(format!("the authority's answer: {e}"))
            }
        },
        Ok((status, answer)) => {
            // Ask again next time: a gap means the authority holds another
            // size than we thought.
            *known = None;
            Step::Failed(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&answer).chars().take(300).collect::<String>()
            ))
        }
        Err(e) => {
            *known = None;
            Step::Failed(e.to_string())
        }
    }
}

/// Start the replicator thread: a [`step`] every `interval` until the
/// returned handle is dropped.
pub fn spawn(
    node: String,
    key: SignerKey,
    lineage: Arc<dyn LineageLog>,
    authority: Arc<dyn AuthorityClient>,
    interval: Duration,
) -> Result<Replicator, crate::Error> {
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let (s, p) = (Arc::clone(&stop), Arc::clone(&progress));
    std::thread::Builder::new()
        .name("modelgate-replicator".into())
        .spawn(move || {
            let mut known = None;
            let mut last_error = String::new();
            while !s.load(Ordering::SeqCst) {
                match step(&node, &key, &*lineage, &*authority, &mut known) {
                    Step::Shipped(n) => {
                        p.shipped.store(n, Ordering::Relaxed);
                        p.batches.fetch_add(1, Ordering::Relaxed);
                        last_error.clear();
                        // More may be waiting: go on at once.
                        continue;
                    }
                    Step::Idle => {}
                    Step::Failed(e) => {
                        p.refused.fetch_add(1, Ordering::Relaxed);
                        if e != last_error {
                            tracing::warn!("lineage replication: {e}");
                            last_error = e;
                        }
                    }
                }
                let mut slept = Duration::ZERO;
                while slept < interval && !s.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    slept += Duration::from_millis(50);
                }
            }
        })
        .map_err(|e| crate::Error::Start(format!("the lineage replicator: {e}")))?;
    Ok(Replicator { stop, progress })
}
