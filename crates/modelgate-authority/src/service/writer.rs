//! The writer thread: one sequencer of the governance log. It takes queued
//! submissions in batches, checks each with the fold's rules on its working
//! copy, appends the batch durably (one fsync), publishes the state and the
//! checkpoint, and only then answers; as a replica it follows the database.

use super::*;

/// Read what the sequencer appended beyond the state's size, check every
/// entry with the fold's rules onto `working`, and publish it with the
/// sequencer's signed checkpoint. An entry the fold refuses or a tree that
/// does not match its checkpoint is an error nothing is published for; on
/// any error `working` is the published state again, so the next call
/// starts from what is published.
pub(crate) fn follow(a: &Authority, log: &mut Log<Store>, working: &mut State) -> Result<(), StoreError> {
    let read = |log: &mut Log<Store>, working: &mut State| {
        let size = log.resync()?;
        let from = working.size;
        if size < from {
            return Err(StoreError::Corrupt(format!(
                "the log holds {size} entries, fewer than the {from} already folded"
            )));
        }
        let mut checked = Vec::new();
        let mut start = from;
        while start < size {
            let end = (start + 4096).min(size);
            for (i, e) in log.store().entries(start, end)?.into_iter().enumerate() {
                let c = working
                    .check_entry(&e)
                    .map_err(|e| StoreError::Corrupt(format!("entry {} does not fold: {e}", start + i as u64)))?;
                working
                    .commit_checked(c.clone())
                    .map_err(|e| StoreError::Corrupt(format!("applying a checked entry: {e}")))?;
                checked.push(c);
            }
            start = end;
        }
        let note = if size > from {
            let note = log.store().checkpoint(size)?;
            Some(note.ok_or_else(|| StoreError::Corrupt(format!("no checkpoint at {size}")))?)
        } else {
            None
        };
        Ok((size, checked, note))
    };
    match read(log, working) {
        Ok((size, checked, note)) => {
            if let Some(note) = note {
                a.publish(checked, working);
                a.published_checkpoint(size, Arc::new(note));
            }
            if let Ok(mut t) = a.followed_at.lock() {
                *t = Instant::now();
            }
            Ok(())
        }
        Err(e) => {
            *working = a.state().working_copy();
            Err(e)
        }
    }
}

impl Authority {
    /// A new durable checkpoint: the latest, for the witnesses and the
    /// served note.
    fn published_checkpoint(&self, size: u64, note: Arc<Vec<u8>>) {
        if let Ok(mut l) = self.latest.lock() {
            *l = (size, note);
        }
        if let Ok(mut t) = self.latest_at.lock() {
            *t = Some(Instant::now());
        }
        self.latest_changed.notify_all();
        if let Err(e) = self.refresh_checkpoint() {
            tracing::error!(error = %e, "publishing the new checkpoint");
        }
    }
}

/// The writer thread: it sequences while this authority is the only writer
/// or holds the lease, and follows the database while it is a replica.
pub(crate) fn writer(a: Arc<Authority>, log: Log<Store>, working: State, rx: Receiver<Submission>) {
    let mut w = Writer {
        a,
        log,
        working,
        fenced: None,
        carried: Vec::new(),
        catch_up_failures: 0,
    };
    loop {
        let sequencing = match w.take_role() {
            Turn::Sequence => true,
            Turn::Follow => false,
            Turn::Retry => continue,
            Turn::Stop => break,
        };
        let Some(batch) = w.take_batch(&rx, sequencing) else {
            break;
        };
        if batch.is_empty() {
            continue;
        }
        if !sequencing {
            w.not_sequencing(batch);
            continue;
        }
        let (accepted, checked) = w.check(batch);
        if !accepted.is_empty() && w.append(accepted, checked).is_err() {
            break;
        }
    }
    w.stop();
}

/// What the writer does this turn.
enum Turn {
    /// Append what is queued.
    Sequence,
    /// Follow the database; answer writes that they are not sequenced here.
    Follow,
    /// Try again (catching up after winning the lease).
    Retry,
    /// Stop the writer.
    Stop,
}

/// The writer thread's state.
struct Writer {
    a: Arc<Authority>,
    log: Log<Store>,
    /// The state with every entry checked so far, ahead of the published one
    /// while a batch is being made durable.
    working: State,
    /// The lease the store's commits are fenced with (None: appends nothing).
    fenced: Option<modelgate_store::Lease>,
    /// Submissions taken from the queue just as the lease was won.
    carried: Vec<Submission>,
    catch_up_failures: u128,
}

impl Writer {
    /// This authority's role now, and what it means for this turn.
    fn take_role(&mut self) -> Turn {
        use crate::store::Role;
        match self.a.sequencing.role() {
            Role::Sole => Turn::Sequence,
            Role::Sequencer(lease) if self.fenced.as_ref() == Some(&lease) => Turn::Sequence,
            Role::Sequencer(lease) => self.won(lease),
            Role::Replica(_) => {
                if self.fenced.take().is_some() {
                    self.log.set_lease(None);
                    self.working = self.a.state().working_copy();
                }
                self.follow_once()
            }
        }
    }

    /// Just won the lease: everything the last sequencer committed is
    /// visible now (its commits and our acquisition lock the same row); read
    /// it, then append.
    fn won(&mut self, lease: modelgate_store::Lease) -> Turn {
        match follow(&self.a, &mut self.log, &mut self.working) {
            Ok(()) => {
                self.catch_up_failures = 0;
                self.log.set_lease(Some(lease.clone()));
                self.fenced = Some(lease);
                Turn::Sequence
            }
            Err(e @ (StoreError::Corrupt(_) | StoreError::Schema(_))) => {
                tracing::error!(error = %e, "the shared log does not check; this authority stops");
                Turn::Stop
            }
            Err(e) => {
                // Tried again shortly; a sequencer that cannot read the log
                // for a lease's length stops, and its lease goes to another.
                self.catch_up_failures += 1;
                if self.catch_up_failures * 200 > crate::store::LEASE_TTL.as_millis() {
                    tracing::error!(error = %e, "cannot read the log after taking the lease; stopping");
                    return Turn::Stop;
                }
                tracing::warn!(error = %e, "catching up after taking the lease");
                std::thread::sleep(Duration::from_millis(200));
                Turn::Retry
            }
        }
    }

    /// A replica's pass over what the sequencer committed.
    fn follow_once(&mut self) -> Turn {
        match follow(&self.a, &mut self.log, &mut self.working) {
            Ok(()) => Turn::Follow,
            Err(e @ (StoreError::Corrupt(_) | StoreError::Schema(_))) => {
                tracing::error!(error = %e, "the shared log does not check; this replica stops serving it");
                Turn::Stop
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the shared log");
                if let Ok(store) = self.a.store_at.open_reader() {
                    match Log::open(store, self.a.log_key.clone()) {
                        Ok(l) if l.size() >= self.log.size() => self.log = l,
                        _ => {}
                    }
                }
                Turn::Follow
            }
        }
    }

    /// Up to [`BATCH_MAX`] queued submissions (empty when none came in time;
    /// `None` when the queue is closed).
    fn take_batch(&mut self, rx: &Receiver<Submission>, sequencing: bool) -> Option<Vec<Submission>> {
        let mut batch = std::mem::take(&mut self.carried);
        if batch.is_empty() {
            let wait = if sequencing {
                Duration::from_millis(250)
            } else {
                FOLLOW_EVERY
            };
            match rx.recv_timeout(wait) {
                Ok(s) => batch.push(s),
                Err(mpsc::RecvTimeoutError::Timeout) => return Some(batch),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Writes taken while not sequencing: refused on a replica, kept for the
    /// first batch of a sequencer that won the lease meanwhile.
    fn not_sequencing(&mut self, batch: Vec<Submission>) {
        if matches!(self.a.sequencing.role(), crate::store::Role::Replica(_)) {
            for s in batch {
                let _ = s.reply.send(Outcome::NotSequencer);
            }
        } else {
            self.carried = batch;
        }
    }

    /// Check each submission against the working copy, which holds every
    /// earlier one of the batch (readers see the published state); refused
    /// ones are answered here.
    fn check(&mut self, batch: Vec<Submission>) -> (Vec<Submission>, Vec<modelgate_governance::Checked>) {
        let mut accepted = Vec::with_capacity(batch.len());
        let mut checked = Vec::with_capacity(batch.len());
        for s in batch {
            match self.working.check_entry(&s.bytes) {
                Ok(c) => {
                    if self.working.commit_checked(c.clone()).is_err() {
                        let _ = s
                            .reply
                            .send(Outcome::Failed("internal: the checked entry did not apply".into()));
                        continue;
                    }
                    checked.push(c);
                    accepted.push(s);
                }
                Err(e) => {
                    self.a.counters.refused.fetch_add(1, Ordering::Relaxed);
                    let _ = s.reply.send(Outcome::Refused(e));
                }
            }
        }
        (accepted, checked)
    }

    /// Append the accepted submissions in one durable batch, publish, and
    /// answer; `Err` when the writer must stop.
    fn append(&mut self, mut accepted: Vec<Submission>, checked: Vec<modelgate_governance::Checked>) -> Result<(), ()> {
        let a = Arc::clone(&self.a);
        // The replies no longer need the bytes: move them, don't copy them.
        let entries: Vec<Vec<u8>> = accepted.iter_mut().map(|s| std::mem::take(&mut s.bytes)).collect();
        a.writing_since_ms.store(now_ms().max(1), Ordering::SeqCst);
        let appended = self.log.append(&entries);
        a.writing_since_ms.store(0, Ordering::SeqCst);
        let e = match appended {
            Ok(done) => {
                a.publish(checked, &self.working);
                if let Ok(mut f) = a.failing.lock() {
                    *f = None;
                }
                a.counters.appended.fetch_add(entries.len() as u64, Ordering::Relaxed);
                a.counters.batches.fetch_add(1, Ordering::Relaxed);
                let note = Arc::new(done.checkpoint);
                a.published_checkpoint(done.size, Arc::clone(&note));
                for (i, s) in accepted.into_iter().enumerate() {
                    let _ = s.reply.send(Outcome::Accepted {
                        index: done.first + i as u64,
                        checkpoint: Arc::clone(&note),
                    });
                }
                return Ok(());
            }
            Err(e) => e,
        };
        a.counters.store_failures.fetch_add(1, Ordering::Relaxed);
        let fenced_out = matches!(e, StoreError::Fenced(_));
        if fenced_out {
            // Deposed (paused past the lease, or cut off): another authority
            // sequences; this one follows it from now on.
            tracing::error!(error = %e, "fenced: another authority holds the sequencer lease; nothing was appended");
            a.sequencing.set(crate::store::Role::Replica(None));
        } else {
            tracing::error!(error = %e, "appending a batch failed; nothing was appended");
            if let Ok(mut f) = a.failing.lock() {
                *f = Some(e.to_string());
            }
        }
        let unsigned = matches!(e, StoreError::Signing(_));
        for s in accepted {
            let _ = s.reply.send(if fenced_out {
                Outcome::NotSequencer
            } else if unsigned {
                Outcome::SignerUnavailable(e.to_string())
            } else {
                Outcome::Failed(e.to_string())
            });
        }
        // The working copy took entries that are not durable: start again
        // from the published state, which is exactly what is.
        if !fenced_out && !matches!(self.log.store().size(), Ok(n) if n == self.log.size()) {
            tracing::error!("the store and the log disagree after a failure; stopping the writer");
            return Err(());
        }
        self.working = a.state().working_copy();
        Ok(())
    }

    /// The writer stops: not ready, the lease no longer renewed (the store
    /// hands it over as it closes, and nothing takes it again), the store closed.
    fn stop(self) {
        self.a.ready.store(false, Ordering::SeqCst);
        self.a.lease_stop.store(true, Ordering::SeqCst);
        if let Err(e) = self.log.close() {
            tracing::error!(error = %e, "closing the store");
        }
    }
}
