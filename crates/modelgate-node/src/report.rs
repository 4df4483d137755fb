//! What a node tells the governance log about itself: containment and
//! recovery reports and lineage anchors, signed with the node's own key
//! (which is how the authority and every other node know it was this node).
//!
//! Every report carries a sequence number above the node's previous one
//! (the fold refuses anything else), so a report that anyone can read back
//! from the log cannot be posted again to make the node look recovered.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use modelgate_governance::{Containment, ContainmentReportEntry, EntryPayload as _};
use modelgate_tlog::SignerKey;

use crate::NodeError;

/// A signed `containment-report` entry: what `c` says, numbered `sequence`.
pub fn containment_report(
    key: &SignerKey,
    node: &str,
    sequence: u64,
    c: Containment,
    time: u64,
) -> Result<Vec<u8>, NodeError> {
    Ok(ContainmentReportEntry::new(node, sequence, c, time).sign(&[key.signer()])?)
}

/// The node's report sequence, kept in a file so that it keeps rising
/// across restarts, and never below what the log already shows.
#[derive(Debug)]
pub struct ReportSequence {
    path: PathBuf,
    last: Mutex<u64>,
}

impl ReportSequence {
    /// The sequence kept at `path` (0 when the file does not exist yet). A
    /// file that exists but does not hold a number is an error: starting
    /// again from 0 would only get every report refused.
    pub fn open(path: &Path) -> Result<Self, NodeError> {
        let last = match std::fs::read_to_string(path) {
            Ok(t) => t
                .trim()
                .parse::<u64>()
                .map_err(|_| NodeError::Config(format!("{} does not hold a report sequence number", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(NodeError::io(path, e)),
        };
        Ok(Self {
            path: path.to_owned(),
            last: Mutex::new(last),
        })
    }

    /// The next sequence number: above the last one this node used and above
    /// `logged` (its latest report in the governance log). It is on disk
    /// before it is returned.
    pub fn next(&self, logged: u64) -> Result<u64, NodeError> {
        let mut last = self.last.lock().map_err(|_| NodeError::Poisoned("report sequence"))?;
        let n = (*last).max(logged) + 1;
        let tmp = self.path.with_extension("tmp");
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(format!("{n}\n").as_bytes())?;
                f.sync_all()
            })
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        written.map_err(|e| NodeError::io(&self.path, e))?;
        *last = n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_sequence_rises_across_reopening_and_never_below_the_log() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("report-sequence");
        let s = ReportSequence::open(&p).unwrap();
        assert_eq!((s.next(0).unwrap(), s.next(0).unwrap()), (1, 2));
        let s = ReportSequence::open(&p).unwrap();
        assert_eq!(s.next(0).unwrap(), 3);
        assert_eq!(s.next(10).unwrap(), 11);
        std::fs::write(&p, "garbage").unwrap();
        assert!(ReportSequence::open(&p)
            .unwrap_err()
            .to_string()
            .contains("does not hold"));
    }
}
