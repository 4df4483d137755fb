//! Determinism: the same entries in the same order always give the same
//! digest; any change of an entry changes it (or stops the fold); any
//! prefix gives the state at that prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::OnceLock;

use common::*;
use modelgate_governance::*;
use proptest::prelude::*;

struct Fixture {
    w: World,
    log: Vec<Vec<u8>>,
    model: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let w = World::new();
        let (m, model) = w.model("prop", 70, &w.pipeline);
        let log = vec![w.genesis(), m, w.policy(PERMIT_ALL), w.enroll("node-1", &["*"])];
        Fixture { w, log, model }
    })
}

#[derive(Clone, Debug)]
struct Grant {
    scope: u8,
    from: u64,
    len: u64,
    ticket: u16,
    approver: u8,
}

fn grant() -> impl Strategy<Value = Grant> {
    (0u8..4, 0u64..5000, 1u64..5000, any::<u16>(), 0u8..3).prop_map(|(scope, from, len, ticket, approver)| Grant {
        scope,
        from,
        len,
        ticket,
        approver,
    })
}

const SCOPES: [&str; 4] = ["prod/*", "prod/credit/*", "staging/x", "*"];

fn entry(g: &Grant) -> Vec<u8> {
    let f = fixture();
    let key = [&f.w.alice, &f.w.bob, &f.w.carol][g.approver as usize];
    f.w.approval(
        &f.model,
        &[SCOPES[g.scope as usize]],
        (g.from, g.from + g.len),
        "low",
        &format!("CHG-{}", g.ticket),
        &[key],
    )
}

fn log_of(grants: &[Grant]) -> Vec<Vec<u8>> {
    let mut log = fixture().log.clone();
    let mut seen = std::collections::BTreeSet::new();
    for g in grants {
        let e = entry(g);
        // Identical approvals are refused as duplicates; keep each once.
        if seen.insert(e.clone()) {
            log.push(e);
        }
    }
    log
}

fn digest_of(log: &[Vec<u8>]) -> Result<[u8; 32], FoldError> {
    Ok(fold(&log[0], log.iter().map(Vec::as_slice))?.digest())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn same_entries_same_digest_and_prefixes_agree(grants in proptest::collection::vec(grant(), 0..12)) {
        let log = log_of(&grants);
        let once = fold(&log[0], log.iter().map(Vec::as_slice)).unwrap();
        prop_assert_eq!(once.digest(), digest_of(&log).unwrap());
        // Incremental application passes through exactly the prefix states.
        let mut s = State::new(&log[0]).unwrap();
        for (k, e) in log.iter().enumerate() {
            s.apply(e).unwrap();
            prop_assert_eq!(s.digest(), digest_of(&log[..=k]).unwrap(), "prefix {}", k + 1);
            prop_assert_eq!(s.size, k as u64 + 1);
        }
        // Decisions are the same on both.
        let r = DecisionRequest { model: fixture().model.clone(), scope: "prod/credit/a".into(), node: "node-1".into(),
            principal: "p".into(), groups: vec![], attributes: vec![] };
        for now in [0u64, 2500, 9999] {
            prop_assert_eq!(decide(&once, &r, now), decide(&s, &r, now));
        }
    }

    #[test]
    fn any_change_of_an_entry_changes_the_digest(grants in proptest::collection::vec(grant(), 1..8), which in any::<usize>(), field in 0u8..5) {
        let mut grants = grants;
        let k = which % grants.len();
        let before = log_of(&grants);
        let g = &mut grants[k];
        match field {
            0 => g.scope = (g.scope + 1) % 4,
            1 => g.from += 1,
            2 => g.len += 1,
            3 => g.ticket = g.ticket.wrapping_add(1),
            _ => g.approver = (g.approver + 1) % 3,
        }
        let after = log_of(&grants);
        // A changed entry may collide with another one and be dropped as a
        // duplicate; only compare logs that really differ.
        prop_assume!(before != after);
        prop_assert_ne!(digest_of(&before).unwrap(), digest_of(&after).unwrap());
    }

    #[test]
    fn a_changed_byte_stops_the_fold_at_that_entry(grants in proptest::collection::vec(grant(), 1..6), which in any::<usize>(), pos in any::<usize>(), bit in 0u8..8) {
        let mut log = log_of(&grants);
        let k = 1 + which % (log.len() - 1);
        let p = pos % log[k].len();
        log[k][p] ^= 1 << bit;
        let e = fold(&log[0], log.iter().map(Vec::as_slice)).unwrap_err();
        prop_assert_eq!(e.index, k as u64, "{}", e);
    }
}
