//! Gathering witness cosignatures (c2sp.org/tlog-witness) for every
//! checkpoint the authority publishes.
//!
//! One thread (`modelgate-witnesses`) wakes when the log grows (and every
//! second to retry), sends the latest checkpoint with a consistency proof to
//! every configured witness in parallel — one keep-alive connection each,
//! bounded timeouts — and, when a witness answers 409, resends from the size
//! it says it recorded. A cosignature counts only when it verifies with a
//! witness key of the trust root in force. Once the trust root's quorum is
//! met the checkpoint, with those cosignatures, becomes the one served.
//! Below the quorum nothing changes: the last checkpoint that met it stays
//! served (with fresh authority cosignatures), so a witness down or slow
//! costs latency, never correctness — for [`UNWITNESSED_GRACE`]: once an
//! appended entry has waited that long, the old checkpoint gets no fresh
//! timestamp and nodes contain (SyncInterrupted) at their staleness bound
//! rather than serve on a view that misses governance.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use modelgate_store::Nodes;
use modelgate_tlog::{consistency_proof, Checkpoint, Note, Signature, VerifierKey};

use crate::service::Authority;

/// Longest a witness may take to answer one request.
pub const WITNESS_TIMEOUT: Duration = modelgate_http::Timeouts::WITNESS.call;

/// How long an appended entry may wait for the witness quorum before the
/// authority stops re-timestamping the last witnessed checkpoint (nodes then
/// go stale and contain rather than serve on a view that misses it).
pub const UNWITNESSED_GRACE: Duration = Duration::from_secs(10);

/// One configured witness: where it is and the size it last recorded.
struct Client {
    url: String,
    agent: ureq::Agent,
    /// The size the witness said it recorded (None until it said).
    known: Mutex<Option<u64>>,
}

/// What one witness answered for one checkpoint.
enum Answer {
    Cosigned(Vec<Signature>),
    Refused(String),
}

/// The witnesses the authority asks, and what they did.
pub struct Witnesses {
    clients: Vec<Client>,
    /// (size, milliseconds from the append to the quorum) of the last publications.
    pub latencies: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// Per witness URL: the last refusal or transport error, if the last request failed.
    pub trouble: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Witnesses {
    /// Clients for these witness URLs (`http://host:port`, the prefix
    /// under which `/add-checkpoint` is served).
    pub fn new(urls: &[String]) -> Self {
        let clients = urls
            .iter()
            .map(|u| Client {
                url: u.trim_end_matches('/').to_owned(),
                agent: modelgate_http::agent(modelgate_http::Timeouts::WITNESS),
                known: Mutex::new(None),
            })
            .collect();
        Self {
            clients,
            latencies: Mutex::new(Default::default()),
            trouble: Mutex::new(Default::default()),
        }
    }

    /// How many witnesses are configured.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    fn ask(&self, a: &Authority, c: &Client, note: &[u8], cp: &Checkpoint, keys: &[VerifierKey]) -> Answer {
        let text = match std::str::from_utf8(note).ok().and_then(|_| Note::parse(note).ok()) {
            Some(n) => n.text().to_owned(),
            None => return Answer::Refused("the checkpoint note does not parse".into()),
        };
        // A 409 names the size to send from; try again from there, once.
        for _ in 0..2 {
            let old = c.known.lock().ok().and_then(|k| *k).unwrap_or(0).min(cp.size);
            let proof = match a.with_reader(|s| {
                consistency_proof(old, cp.size, &Nodes(&*s))
                    .map_err(|e| modelgate_store::StoreError::NotFound(e.to_string()))
            }) {
                Ok(p) => p,
                Err(e) => return Answer::Refused(format!("consistency proof {old} → {}: {e}", cp.size)),
            };
            let body = modelgate_witness::AddCheckpoint {
                old,
                proof,
                note: note.to_vec(),
            }
            .to_bytes();
            let url = format!("{}/add-checkpoint", c.url);
            let mut r = match c.agent.post(&url).header("Content-Type", "text/plain").send(&body[..]) {
                Ok(r) => r,
                Err(e) => return Answer::Refused(format!("{url}: {e}")),
            };
            let status = r.status().as_u16();
            let text_body = r
                .body_mut()
                .with_config()
                .limit(64 * 1024)
                .read_to_string()
                .unwrap_or_default();
            match status {
                200 => {
                    let mut sigs = Vec::new();
                    for line in text_body.lines() {
                        let Ok(parsed) = Note::parse(format!("{text}\n{line}\n").as_bytes()) else {
                            continue;
                        };
                        for s in parsed.signatures() {
                            let ok = keys.iter().any(|k| {
                                k.name() == s.name && k.key_id() == s.key_id && k.verify(&text, &s.sig).is_some()
                            });
                            if ok {
                                sigs.push(s.clone());
                            }
                        }
                    }
                    if let Ok(mut k) = c.known.lock() {
                        *k = Some(cp.size);
                    }
                    if sigs.is_empty() {
                        return Answer::Refused(format!(
                            "{url}: 200 without a cosignature by a witness key of the trust root"
                        ));
                    }
                    return Answer::Cosigned(sigs);
                }
                409 => {
                    let recorded = text_body.trim().parse::<u64>().ok();
                    match recorded {
                        Some(k) if k <= cp.size => {
                            if let Ok(mut known) = c.known.lock() {
                                *known = Some(k);
                            }
                            if k == old {
                                // The witness holds another checkpoint at this size: a fork it refuses.
                                return Answer::Refused(format!(
                                    "{url}: 409 at the size it recorded ({k}): it holds another checkpoint there"
                                ));
                            }
                        }
                        Some(k) => {
                            return Answer::Refused(format!(
                                "{url}: the witness recorded size {k}, beyond this log's {}",
                                cp.size
                            ))
                        }
                        None => return Answer::Refused(format!("{url}: 409 without a size")),
                    }
                }
                s => return Answer::Refused(format!("{url}: {s} {}", text_body.trim())),
            }
        }
        Answer::Refused(format!("{}: still 409 after resending from its size", c.url))
    }

    /// Ask every witness, in parallel, to cosign `note`; returns the note
    /// with every cosignature that verified.
    fn gather(&self, a: &Authority, note: &[u8], keys: &[VerifierKey]) -> Option<(Checkpoint, Note, usize)> {
        let mut parsed = Note::parse(note).ok()?;
        let cp = Checkpoint::parse(parsed.text()).ok()?;
        let answers: Vec<(String, Answer)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .clients
                .iter()
                .map(|c| (c.url.clone(), s.spawn(|| self.ask(a, c, note, &cp, keys))))
                .collect();
            handles
                .into_iter()
                .map(|(u, h)| {
                    (
                        u,
                        h.join()
                            .unwrap_or(Answer::Refused("the request thread panicked".into())),
                    )
                })
                .collect()
        });
        let mut got = 0;
        let mut trouble = self.trouble.lock().ok();
        for (url, answer) in answers {
            match answer {
                Answer::Cosigned(sigs) => {
                    if let Some(t) = trouble.as_mut() {
                        t.remove(&url);
                    }
                    for s in sigs {
                        if parsed.add_signature(s).is_ok() {
                            got += 1;
                        }
                    }
                }
                Answer::Refused(why) => {
                    tracing::warn!(witness = %url, size = cp.size, %why, "no cosignature");
                    if let Some(t) = trouble.as_mut() {
                        t.insert(url, why);
                    }
                }
            }
        }
        Some((cp, parsed, got))
    }
}

/// One round: ask the witnesses to cosign `note` (of the log's latest
/// size) and, when the trust root's quorum is met, publish it. True when
/// it was published.
pub(crate) fn round(a: &Authority, w: &Witnesses, note: &[u8], appended_at: AppendedAt) -> bool {
    let state = a.state();
    let Some(root) = state.trust_root() else { return false };
    let keys = root.witness_keys.clone();
    let quorum = root.doc.witness_quorum as usize;
    drop(state);
    let Some((cp, cosigned, got)) = w.gather(a, note, &keys) else {
        return false;
    };
    if got < quorum {
        tracing::warn!(
            size = cp.size,
            got,
            quorum,
            "witness quorum not met: serving the last checkpoint that met it"
        );
        return false;
    }
    let ms = appended_at.map_or(0, |t| t.elapsed().as_millis() as u64);
    if let Ok(mut l) = w.latencies.lock() {
        l.push_back((cp.size, ms));
        while l.len() > 1024 {
            l.pop_front();
        }
    }
    a.set_witnessed(cp.size, cosigned.to_bytes());
    if let Err(e) = a.refresh_checkpoint() {
        tracing::error!(error = %e, "publishing the witnessed checkpoint");
    }
    tracing::debug!(size = cp.size, cosignatures = got, ms, "checkpoint witnessed");
    true
}

/// Run the gathering loop until the authority stops.
pub(crate) fn run(a: Arc<Authority>, w: Arc<Witnesses>, mut done: Option<u64>) {
    while a.ready.load(Ordering::SeqCst) {
        let (size, note, appended_at) = a.wait_for_checkpoint(done, Duration::from_secs(1));
        if done == Some(size) {
            continue;
        }
        if round(&a, &w, &note, appended_at) {
            done = Some(size);
            if w.trouble.lock().is_ok_and(|t| !t.is_empty()) {
                // A witness missed this checkpoint (down, or restarted behind):
                // ask again in a second, so it catches up without waiting for
                // the next entry and the quorum keeps its margin.
                std::thread::sleep(Duration::from_secs(1));
                done = None;
            }
        } else {
            // Retry soon (a witness may be back), not in a tight loop.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// When the append of `size` happened, for the publication latency.
pub(crate) type AppendedAt = Option<Instant>;
