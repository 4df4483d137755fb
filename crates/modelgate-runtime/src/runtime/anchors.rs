//! The lineage sizes a node has anchored in the governance log: kept on disk (`anchors.jsonl`) and in memory, sorted and bounded, for the proofs the gateway serves.

use super::*;

/// A lineage checkpoint anchored in the governance log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Anchor {
    /// Lineage log size anchored.
    pub size: u64,
    /// Index of the node-anchor entry in the governance log.
    pub index: u64,
}

/// Anchors kept in memory at most: past it the older half is thinned to
/// every second one. A proof may use any anchor at or after its record (its
/// inclusion proof is then in a larger tree), so thinning loses nothing
/// provable.
pub const ANCHORS_KEPT: usize = 65_536;

/// The anchors a node has made, ascending by size, searched by bisection.
#[derive(Default)]
pub struct Anchors(Vec<Anchor>);

impl Anchors {
    /// From anchors in any order (the file's lines): sorted, one per size, bounded.
    pub fn new(mut all: Vec<Anchor>) -> Self {
        all.sort_by_key(|a| a.size);
        all.dedup_by_key(|a| a.size);
        let mut out = Self(Vec::new());
        for a in all {
            out.push(a);
        }
        out
    }

    /// Record an anchor (one not larger than the last is ignored).
    pub fn push(&mut self, a: Anchor) {
        if self.0.last().is_some_and(|l| l.size >= a.size) {
            return;
        }
        self.0.push(a);
        if self.0.len() > ANCHORS_KEPT {
            let half = self.0.len() / 2;
            let newer = self.0.split_off(half);
            self.0 = self.0.iter().step_by(2).copied().chain(newer).collect();
        }
    }

    /// The first anchor that covers record `index` (its size is past it).
    pub fn covering(&self, index: u64) -> Option<Anchor> {
        let i = self.0.partition_point(|a| a.size <= index);
        self.0.get(i).copied()
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub(super) fn load_anchors(path: &Path) -> Vec<Anchor> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    // A torn last line (crash mid-write) is skipped; the anchor itself is in
    // the governance log, so only the proof shortcut is lost.
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

pub(super) fn append_anchor(path: &Path, a: &Anchor) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    let line = serde_json::to_string(a).map_err(std::io::Error::other)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()
}

#[cfg(test)]
mod anchors_tests {
    use super::*;

    #[test]
    pub(super) fn the_first_covering_anchor_is_found_and_thinning_keeps_every_record_provable() {
        let mut a = Anchors::new(vec![Anchor { size: 20, index: 2 }, Anchor { size: 10, index: 1 }]);
        assert_eq!(a.covering(0), Some(Anchor { size: 10, index: 1 }));
        assert_eq!(a.covering(10), Some(Anchor { size: 20, index: 2 }));
        assert_eq!(a.covering(20), None);
        a.push(Anchor { size: 15, index: 9 }); // not after the last: ignored
        assert_eq!(a.len(), 2);
        for i in 3..(ANCHORS_KEPT as u64 * 3) {
            a.push(Anchor { size: i * 10, index: i });
        }
        assert!(a.len() <= ANCHORS_KEPT, "{}", a.len());
        for record in [0, 5, 999, 123_456, ANCHORS_KEPT as u64 * 30 - 11] {
            let c = a.covering(record).unwrap();
            assert!(c.size > record, "{record}: {c:?}");
        }
        assert_eq!(a.covering(ANCHORS_KEPT as u64 * 30), None);
    }
}
