//! The courier: the thread that posts the loop's anchors, reports and heartbeats to the authority in order, so a slow authority never holds up a pass.

use super::*;

/// What the loop sends to the authority without waiting for it: a slow or
/// hanging authority must not hold up the passes that keep the gateway's
/// snapshot fresh (an aged snapshot is a SyncInterrupted for every call).
pub(super) enum Outgoing {
    Report(Vec<u8>),
    Heartbeat {
        path: String,
        body: Vec<u8>,
    },
    /// An anchor entry for lineage size `size`; its outcome comes back.
    Anchor {
        entry: Vec<u8>,
        size: u64,
    },
}

/// What became of an anchor the courier posted.
#[derive(Debug)]
pub(super) enum Anchored {
    /// In the log at this index.
    Accepted(u64),
    /// The authority refused it by a fold rule (its code).
    Refused { rule: String, detail: String },
    /// No verdict: the authority was unreachable, overloaded, or answered
    /// something else; the anchor is tried again.
    Failed(String),
}

/// An authority's refusal body: `{"error": {"code", "message"}}`.
#[derive(serde::Deserialize)]
pub(super) struct RefusalBody {
    pub(super) error: RefusalDetail,
}

#[derive(serde::Deserialize)]
pub(super) struct RefusalDetail {
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(serde::Deserialize)]
pub(super) struct AcceptedBody {
    pub(super) index: u64,
}

/// How soon an anchor that did not go through is tried again.
pub(super) const ANCHOR_RETRY: Duration = Duration::from_secs(2);

pub(super) fn anchored(answer: Result<(u16, Vec<u8>), modelgate_node::FetchError>) -> Anchored {
    match answer {
        Err(e) => Anchored::Failed(e.to_string()),
        Ok((201, body)) => match serde_json::from_slice::<AcceptedBody>(&body) {
            Ok(a) => Anchored::Accepted(a.index),
            Err(e) => Anchored::Failed(format!("an acceptance without an index: {e}")),
        },
        Ok((422, body)) => match serde_json::from_slice::<RefusalBody>(&body) {
            Ok(r) => Anchored::Refused {
                rule: r.error.code,
                detail: r.error.message,
            },
            Err(e) => Anchored::Failed(format!("HTTP 422 without a rule: {e}")),
        },
        Ok((status, _)) => Anchored::Failed(format!("HTTP {status}")),
    }
}

/// The thread that posts [`Outgoing`] writes, in order, and the anchors'
/// outcomes (lineage size, and what became of it).
pub(super) struct Courier {
    pub(super) tx: mpsc::SyncSender<Outgoing>,
    pub(super) anchored: Receiver<(u64, Anchored)>,
}

/// Writes that may wait for the courier before new ones are dropped
/// (reports and heartbeats are best effort; an anchor is tried again).
pub(super) const COURIER_QUEUE: usize = 64;

impl Courier {
    pub(super) fn start(http: Arc<dyn AuthorityClient>) -> Result<Self, Error> {
        let (tx, rx) = mpsc::sync_channel::<Outgoing>(COURIER_QUEUE);
        let (done, anchored_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("modelgate-courier".into())
            .spawn(move || {
                for out in rx {
                    match out {
                        Outgoing::Report(entry) => {
                            if let Err(e) = http.post("/api/v1/entries", "application/json", &entry) {
                                tracing::warn!("containment report: {e}");
                            }
                        }
                        Outgoing::Heartbeat { path, body } => {
                            if let Err(e) = http.post(&path, "text/plain", &body) {
                                tracing::debug!("heartbeat: {e}");
                            }
                        }
                        Outgoing::Anchor { entry, size } => {
                            let r = anchored(http.post("/api/v1/entries", "application/json", &entry));
                            if done.send((size, r)).is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::Start(format!("the courier thread: {e}")))?;
        Ok(Self {
            tx,
            anchored: anchored_rx,
        })
    }

    /// Queue `out`; false when the queue is full (the authority is slower
    /// than the node's writes) or the courier is gone.
    pub(super) fn send(&self, out: Outgoing) -> bool {
        self.tx.try_send(out).is_ok()
    }
}
