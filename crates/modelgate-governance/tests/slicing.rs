//! Sliced policy evaluation (`policy::evaluate`) gives exactly Cedar's
//! outcome on the whole set (`policy::evaluate_reference`): the same
//! decision, the same determining policy ids, an error whenever Cedar has
//! one. Random policy sets mix conditions the slicer decides itself with
//! ones it must leave to Cedar (including ones that raise errors), over
//! small value domains so that conditions are often true.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use modelgate_governance::policy::{compile, evaluate, evaluate_reference, PolicyInput, PolicyOutcome};
use proptest::prelude::*;

const WORDS: [&str; 3] = ["a", "b", "ab"];

fn word(i: u8) -> &'static str {
    WORDS[i as usize % WORDS.len()]
}

/// One condition; `k` picks the value it tests.
fn condition(kind: u8, k: u8) -> String {
    let w = word(k);
    match kind % 24 {
        0 => format!("context.scope like \"{w}/*\""),
        1 => format!("context.scope like \"*{w}\""),
        2 => format!("context.scope like \"*/{w}*\""),
        3 => format!("context.scope == \"{w}/{w}\""),
        4 => format!("resource.name == \"{w}\""),
        5 => format!("\"{w}\" == resource.version"),
        6 => format!("resource.risk_tier == \"{w}\""),
        7 => format!("context.node == \"{w}\""),
        8 => format!("principal in Group::\"{w}\""),
        9 => format!("principal == Caller::\"{w}\""),
        10 => format!("principal.hasTag(\"{w}\")"),
        // An error in Cedar (overflow) for odd k; validation cannot see it.
        11 => format!("9223372036854775807 + {} > 0", k % 2),
        12 => format!("principal.hasTag(\"{w}\") && principal.getTag(\"{w}\") like \"{w}*\""),
        13 => "context.via_exception".into(),
        14 => "context.via_exception == false".into(),
        15 => format!("resource == Model::\"{w}\""),
        16 => "true".into(),
        17 => "false".into(),
        // Left to Cedar.
        18 => format!("context.scope like \"{w}/*\" || resource.name == \"{w}\""),
        19 => format!("!(resource.name == \"{w}\")"),
        20 => format!("resource.name like \"{w}*\" && context.scope != \"{w}\""),
        21 => format!("context.scope.isEmpty() == false || principal in Group::\"{w}\""),
        22 => format!(
            "if context.via_exception then 9223372036854775807 + {} > 0 else true",
            k % 2
        ),
        _ => format!("principal in [Group::\"{w}\", Group::\"b\"]"),
    }
}

#[derive(Clone, Debug)]
struct P {
    permit: bool,
    head: u8,
    k: u8,
    /// (unless?, [(kind, k)]) per clause.
    clauses: Vec<(bool, Vec<(u8, u8)>)>,
}

fn policy() -> impl Strategy<Value = P> {
    (
        any::<bool>(),
        0u8..8,
        any::<u8>(),
        prop::collection::vec(
            (
                prop::bool::weighted(0.15),
                prop::collection::vec((any::<u8>(), any::<u8>()), 1..4),
            ),
            0..3,
        ),
    )
        .prop_map(|(permit, head, k, clauses)| P {
            permit,
            head,
            k,
            clauses,
        })
}

fn text(ps: &[P]) -> String {
    let mut out = String::new();
    for (i, p) in ps.iter().enumerate() {
        let w = word(p.k);
        let head = match p.head {
            0..=2 => "principal, action, resource".to_owned(),
            3 => format!("principal in Group::\"{w}\", action == Action::\"infer\", resource"),
            4 => format!("principal == Caller::\"{w}\", action, resource == Model::\"{w}\""),
            5 => "principal, action in [Action::\"infer\"], resource".to_owned(),
            6 => "principal is Caller, action, resource".to_owned(),
            _ => format!("principal is Caller in Group::\"{w}\", action, resource is Model"),
        };
        out.push_str(&format!(
            "@id(\"p{i}\") {}({head})",
            if p.permit { "permit" } else { "forbid" }
        ));
        for (unless, conds) in &p.clauses {
            let body: Vec<String> = conds.iter().map(|(kind, k)| condition(*kind, *k)).collect();
            out.push_str(&format!(
                " {} {{ {} }}",
                if *unless { "unless" } else { "when" },
                body.join(" && ")
            ));
        }
        out.push_str(";\n");
    }
    out
}

#[derive(Clone, Debug)]
struct Req {
    principal: u8,
    groups: Vec<u8>,
    tags: Vec<(u8, u8)>,
    model: u8,
    name: u8,
    version: u8,
    tier: u8,
    scope: (u8, u8, u8),
    node: u8,
    via_exception: bool,
}

fn request() -> impl Strategy<Value = Req> {
    (
        (
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..3),
            prop::collection::vec((any::<u8>(), any::<u8>()), 0..3),
        ),
        (any::<u8>(), any::<u8>(), any::<u8>(), any::<u8>()),
        ((any::<u8>(), any::<u8>(), 0u8..4), any::<u8>(), any::<bool>()),
    )
        .prop_map(
            |((principal, groups, tags), (model, name, version, tier), (scope, node, via_exception))| Req {
                principal,
                groups,
                tags,
                model,
                name,
                version,
                tier,
                scope,
                node,
                via_exception,
            },
        )
}

/// What the random cases covered.
#[derive(Default, Debug)]
struct Coverage {
    refused_sets: usize,
    compared: usize,
    all_settled: usize,
    some_left: usize,
    errors: usize,
    allowed: usize,
    denied_by_forbid: usize,
}

fn check(ps: &[P], r: &Req, cov: &mut Coverage) -> Result<(), TestCaseError> {
    let text = text(ps);
    let Ok(policies) = compile(&text) else {
        // Sets the strict validator refuses are never evaluated.
        cov.refused_sets += 1;
        return Ok(());
    };
    let scope = match r.scope.2 {
        0 => format!("{}/{}", word(r.scope.0), word(r.scope.1)),
        1 => word(r.scope.0).to_owned(),
        2 => format!("x/{}", word(r.scope.1)),
        _ => String::new(),
    };
    let groups: Vec<String> = r.groups.iter().map(|g| word(*g).to_owned()).collect();
    let attributes: Vec<(String, String)> = r
        .tags
        .iter()
        .map(|(k, v)| (word(*k).to_owned(), word(*v).to_owned()))
        .collect();
    let input = PolicyInput {
        principal: word(r.principal),
        groups: &groups,
        attributes: &attributes,
        model: word(r.model),
        model_name: word(r.name),
        model_version: word(r.version),
        risk_tier: word(r.tier),
        scope: &scope,
        node: word(r.node),
        via_exception: r.via_exception,
    };
    let fast = evaluate(&policies, &input);
    let reference = evaluate_reference(&policies, &input);
    cov.compared += 1;
    if policies.left_to_cedar(&input) == 0 {
        cov.all_settled += 1;
    } else {
        cov.some_left += 1;
    }
    match &reference {
        PolicyOutcome::Error(_) => cov.errors += 1,
        PolicyOutcome::Allow(_) => cov.allowed += 1,
        PolicyOutcome::Deny(ids) if !ids.is_empty() => cov.denied_by_forbid += 1,
        PolicyOutcome::Deny(_) => {}
    }
    match (&fast, &reference) {
        // Error messages may list the erroring policies in another order.
        (PolicyOutcome::Error(_), PolicyOutcome::Error(_)) => {}
        _ => prop_assert_eq!(
            &fast,
            &reference,
            "policies:\n{}\nrequest: {:?}",
            text,
            input_debug(&input)
        ),
    }
    Ok(())
}

fn input_debug(i: &PolicyInput<'_>) -> String {
    format!(
        "principal {} groups {:?} tags {:?} model {} name {} version {} tier {} scope {:?} node {} via_exception {}",
        i.principal,
        i.groups,
        i.attributes,
        i.model,
        i.model_name,
        i.model_version,
        i.risk_tier,
        i.scope,
        i.node,
        i.via_exception
    )
}

#[test]
fn sliced_evaluation_is_cedars() {
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 3000,
        ..Config::default()
    });
    let cov = std::cell::RefCell::new(Coverage::default());
    let strategy = (
        prop::collection::vec(policy(), 1..8),
        prop::collection::vec(request(), 1..6),
    );
    runner
        .run(&strategy, |(ps, rs)| {
            for r in &rs {
                check(&ps, r, &mut cov.borrow_mut())?;
            }
            Ok(())
        })
        .unwrap();
    // The generator must exercise every path, or the equality proves little.
    let cov = cov.into_inner();
    eprintln!("{cov:?}");
    assert!(cov.compared > 3000, "{cov:?}");
    for (what, n) in [
        ("settled without Cedar", cov.all_settled),
        ("partly left to Cedar", cov.some_left),
        ("errors", cov.errors),
        ("allowed", cov.allowed),
        ("denied by a forbid", cov.denied_by_forbid),
    ] {
        assert!(n * 50 > cov.compared, "too few cases {what}: {cov:?}");
    }
}

/// The slicer must really decide most policies of a typical set itself,
/// or it is not doing its job; and what it decides must match Cedar.
#[test]
fn typical_set_agrees_and_errors_still_deny() {
    let mut text = String::from("@id(\"permit-infer\") permit(principal, action == Action::\"infer\", resource);\n");
    for i in 0..10 {
        text.push_str(&format!(
            "@id(\"f{i}\") forbid(principal, action, resource) when {{ context.scope like \"blocked/{i}/*\" }};\n"
        ));
    }
    // A forbid that errors (overflow) in one scope: Cedar would skip it
    // silently; we deny.
    text.push_str(
        "@id(\"overflows\") forbid(principal, action, resource) when { context.scope like \"overflow/*\" && 9223372036854775807 + 1 > 0 };\n",
    );
    let policies = compile(&text).unwrap();
    let groups = vec![];
    let attributes = vec![("dept".to_owned(), "credit".to_owned())];
    let input = |scope: &'static str| PolicyInput {
        principal: "svc",
        groups: &groups,
        attributes: &attributes,
        model: "d",
        model_name: "m",
        model_version: "1",
        risk_tier: "low",
        scope,
        node: "n",
        via_exception: false,
    };
    for (scope, want) in [
        ("prod/x", PolicyOutcome::Allow(vec!["permit-infer".into()])),
        ("blocked/3/y", PolicyOutcome::Deny(vec!["f3".into()])),
    ] {
        let i = input(scope);
        // Every policy is settled by its guard: Cedar does not run at all.
        assert_eq!(policies.left_to_cedar(&i), 0, "{scope}");
        assert_eq!(evaluate(&policies, &i), want);
        assert_eq!(evaluate_reference(&policies, &i), want);
    }
    let i = input("overflow/x");
    assert_eq!(policies.left_to_cedar(&i), 1);
    assert!(matches!(evaluate(&policies, &i), PolicyOutcome::Error(_)));
    assert!(matches!(evaluate_reference(&policies, &i), PolicyOutcome::Error(_)));
}
