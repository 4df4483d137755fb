//! Policy slicing: deciding, before Cedar runs, which policies cannot be
//! satisfied by a request, so that Cedar evaluates only the rest.
//!
//! Cedar's authorizer evaluates every policy of the set for every request
//! (about 0.9 µs each, plus about 10 µs to build the request's entities),
//! while in a real set most policies are guarded by a plain test on the
//! request (`context.scope like "blocked/*"`, `resource.name == "x"`,
//! `principal in Group::"g"`) that is false for it. Cedar's own documentation
//! recommends slicing large sets; this module does it exactly, not
//! heuristically:
//!
//! - A policy's condition is its scope (principal, action, resource
//!   constraints) followed by its `when` clauses, joined by `&&` and
//!   evaluated left to right with short-circuiting. Each conjunct, in that
//!   order, is matched against a small set of *atoms* whose value this
//!   module computes from the request exactly as Cedar would, and which can
//!   never raise an error.
//! - If an atom is false and every conjunct before it is an atom, Cedar would
//!   stop there with `false` and no error: the policy is **not satisfied**,
//!   and is skipped.
//! - If every conjunct is an atom and all are true, the policy is
//!   **satisfied**, without Cedar.
//! - Anything else (an `unless`, `||`, an attribute test this module does not
//!   know, a tag read whose tag is absent, which is an error in Cedar) leaves
//!   the policy to Cedar.
//!
//! Cedar then runs on the remaining policies only, and the two halves are
//! combined by Cedar's own rule (any satisfied forbid denies; else any
//! satisfied permit allows; else deny), with Cedar's errors kept: a policy
//! decided here never errors, so the errors are exactly those of the whole
//! set. The property tests compare this against Cedar on the whole set for
//! random policy sets and requests.

use cedar_policy::{ActionConstraint, EntityUid, Policy, PrincipalConstraint, ResourceConstraint};
use serde_json::Value;

use crate::policy::PolicyInput;

/// A string the request supplies.
#[derive(Clone, Debug)]
enum Source {
    Scope,
    Node,
    Name,
    Version,
    RiskTier,
    /// `principal.getTag("k")`: an error in Cedar when the tag is absent.
    Tag(String),
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    Wildcard,
}

/// A conjunct whose value is computed here.
#[derive(Clone, Debug)]
enum Atom {
    Const(bool),
    /// `principal == Caller::"id"` (also `principal in Caller::"id"`: callers
    /// have no descendants).
    Principal(String),
    /// `principal in Group::"g"` (groups have no parents in the entities the
    /// request builds, so membership is direct).
    Group(String),
    /// `resource == Model::"digest"` (also `in`: models have no descendants).
    Model(String),
    Equals(Source, String),
    Like(Source, Vec<Segment>),
    HasTag(String),
    ViaException(bool),
}

/// A policy as the slicer sees it.
#[derive(Clone, Debug)]
pub(crate) struct Sliced {
    pub(crate) policy: Policy,
    pub(crate) id: String,
    pub(crate) permit: bool,
    /// The leading conjuncts that are atoms, in evaluation order.
    atoms: Vec<Atom>,
    /// Every conjunct is an atom.
    complete: bool,
}

/// What the slicer knows of a policy for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Satisfied,
    NotSatisfied,
    /// Cedar must evaluate it.
    Unknown,
}

const CALLER: &str = "Caller";
const GROUP: &str = "Group";
const MODEL: &str = "Model";

fn entity_atom(uid: &EntityUid, of: &str, make: fn(String) -> Atom) -> Atom {
    if uid.type_name().to_string() == of {
        make(uid.id().unescaped().to_owned())
    } else {
        // The principal is always a Caller and the resource a Model: equal to
        // (or in) an entity of another type is false, never an error.
        Atom::Const(false)
    }
}

impl Sliced {
    /// Analyse `policy` (a static policy of a set validated against the schema).
    pub(crate) fn new(policy: Policy, action: &EntityUid) -> Self {
        let id = policy.id().to_string();
        let permit = policy.effect() == cedar_policy::Effect::Permit;
        let mut atoms = Vec::new();
        let complete = Self::analyse(&policy, action, &mut atoms);
        Self {
            policy,
            id,
            permit,
            atoms,
            complete,
        }
    }

    /// Push the leading atoms; true if every conjunct was one.
    fn analyse(policy: &Policy, action: &EntityUid, atoms: &mut Vec<Atom>) -> bool {
        match policy.principal_constraint() {
            PrincipalConstraint::Any => {}
            PrincipalConstraint::Eq(uid) => atoms.push(entity_atom(&uid, CALLER, Atom::Principal)),
            PrincipalConstraint::In(uid) => atoms.push(if uid.type_name().to_string() == GROUP {
                Atom::Group(uid.id().unescaped().to_owned())
            } else {
                entity_atom(&uid, CALLER, Atom::Principal)
            }),
            PrincipalConstraint::Is(_) | PrincipalConstraint::IsIn(_, _) => return false,
        }
        match policy.action_constraint() {
            ActionConstraint::Any => {}
            // The schema declares one action and no action groups.
            ActionConstraint::Eq(uid) => atoms.push(Atom::Const(&uid == action)),
            ActionConstraint::In(uids) => atoms.push(Atom::Const(uids.iter().any(|u| u == action))),
        }
        match policy.resource_constraint() {
            ResourceConstraint::Any => {}
            ResourceConstraint::Eq(uid) | ResourceConstraint::In(uid) => {
                atoms.push(entity_atom(&uid, MODEL, Atom::Model));
            }
            ResourceConstraint::Is(_) | ResourceConstraint::IsIn(_, _) => return false,
        }
        let Ok(est) = policy.to_json() else { return false };
        let Some(conditions) = est.get("conditions").and_then(Value::as_array) else {
            return false;
        };
        for c in conditions {
            if c.get("kind").and_then(Value::as_str) != Some("when") {
                return false;
            }
            let Some(body) = c.get("body") else { return false };
            if !conjuncts(body, atoms) {
                return false;
            }
        }
        true
    }

    /// Whether `input` satisfies this policy, as far as the atoms tell.
    pub(crate) fn verdict(&self, input: &PolicyInput<'_>) -> Verdict {
        for atom in &self.atoms {
            match eval(atom, input) {
                Some(true) => {}
                Some(false) => return Verdict::NotSatisfied,
                None => return Verdict::Unknown,
            }
        }
        if self.complete {
            Verdict::Satisfied
        } else {
            Verdict::Unknown
        }
    }
}

/// Push the atoms of `e`'s `&&` chain, left to right; false at the first
/// conjunct that is not an atom (those before it are kept: they are
/// evaluated first).
fn conjuncts(e: &Value, atoms: &mut Vec<Atom>) -> bool {
    if let Some(and) = e.get("&&") {
        return match (and.get("left"), and.get("right")) {
            (Some(l), Some(r)) => conjuncts(l, atoms) && conjuncts(r, atoms),
            _ => false,
        };
    }
    match atom(e) {
        Some(a) => {
            atoms.push(a);
            true
        }
        None => false,
    }
}

fn single<'a>(e: &'a Value, key: &str) -> Option<&'a Value> {
    let o = e.as_object()?;
    if o.len() == 1 {
        o.get(key)
    } else {
        None
    }
}

fn var(e: &Value) -> Option<&str> {
    single(e, "Var")?.as_str()
}

fn string_value(e: &Value) -> Option<&str> {
    single(e, "Value")?.as_str()
}

fn entity_value(e: &Value) -> Option<(&str, &str)> {
    let v = single(single(e, "Value")?, "__entity")?;
    Some((v.get("type")?.as_str()?, v.get("id")?.as_str()?))
}

/// `context.x`, `resource.x` or `principal.getTag("k")`, for the string
/// attributes the schema declares.
fn source(e: &Value) -> Option<Source> {
    if let Some(dot) = single(e, ".") {
        let attr = dot.get("attr")?.as_str()?;
        return match (var(dot.get("left")?)?, attr) {
            ("context", "scope") => Some(Source::Scope),
            ("context", "node") => Some(Source::Node),
            ("resource", "name") => Some(Source::Name),
            ("resource", "version") => Some(Source::Version),
            ("resource", "risk_tier") => Some(Source::RiskTier),
            _ => None,
        };
    }
    let tag = single(e, "getTag")?;
    if var(tag.get("left")?)? != "principal" {
        return None;
    }
    Some(Source::Tag(string_value(tag.get("right")?)?.to_owned()))
}

fn via_exception(e: &Value) -> bool {
    single(e, ".").is_some_and(|d| {
        d.get("left").and_then(var) == Some("context") && d.get("attr").and_then(Value::as_str) == Some("via_exception")
    })
}

fn atom(e: &Value) -> Option<Atom> {
    let (op, args) = {
        let o = e.as_object()?;
        if o.len() != 1 {
            return None;
        }
        o.iter().next()?
    };
    match op.as_str() {
        "Value" => args.as_bool().map(Atom::Const),
        "." if via_exception(e) => Some(Atom::ViaException(true)),
        "==" => {
            let (l, r) = (args.get("left")?, args.get("right")?);
            // Either operand order.
            for (a, b) in [(l, r), (r, l)] {
                if let (Some(s), Some(v)) = (source(a), string_value(b)) {
                    return Some(Atom::Equals(s, v.to_owned()));
                }
                if via_exception(a) {
                    if let Some(v) = single(b, "Value").and_then(Value::as_bool) {
                        return Some(Atom::ViaException(v));
                    }
                }
                if let (Some(who), Some((t, id))) = (var(a), entity_value(b)) {
                    return match who {
                        "principal" => Some(if t == CALLER {
                            Atom::Principal(id.to_owned())
                        } else {
                            Atom::Const(false)
                        }),
                        "resource" => Some(if t == MODEL {
                            Atom::Model(id.to_owned())
                        } else {
                            Atom::Const(false)
                        }),
                        _ => None,
                    };
                }
            }
            None
        }
        "in" => {
            if var(args.get("left")?)? != "principal" {
                return None;
            }
            let (t, id) = entity_value(args.get("right")?)?;
            Some(match t {
                GROUP => Atom::Group(id.to_owned()),
                CALLER => Atom::Principal(id.to_owned()),
                _ => Atom::Const(false),
            })
        }
        "like" => {
            let s = source(args.get("left")?)?;
            let mut pattern: Vec<Segment> = Vec::new();
            for p in args.get("pattern")?.as_array()? {
                match p {
                    Value::String(w) if w == "Wildcard" => pattern.push(Segment::Wildcard),
                    Value::Object(_) => {
                        let lit = single(p, "Literal")?.as_str()?;
                        if let Some(Segment::Literal(prev)) = pattern.last_mut() {
                            prev.push_str(lit);
                        } else {
                            pattern.push(Segment::Literal(lit.to_owned()));
                        }
                    }
                    _ => return None,
                }
            }
            Some(Atom::Like(s, pattern))
        }
        "hasTag" => {
            if var(args.get("left")?)? != "principal" {
                return None;
            }
            Some(Atom::HasTag(string_value(args.get("right")?)?.to_owned()))
        }
        _ => None,
    }
}

fn tag<'a>(input: &'a PolicyInput<'_>, key: &str) -> Option<&'a str> {
    input.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The atom's value for `input`; `None` where Cedar would raise an error.
fn eval(atom: &Atom, input: &PolicyInput<'_>) -> Option<bool> {
    let value = |s: &Source| -> Option<&str> {
        Some(match s {
            Source::Scope => input.scope,
            Source::Node => input.node,
            Source::Name => input.model_name,
            Source::Version => input.model_version,
            Source::RiskTier => input.risk_tier,
            Source::Tag(k) => tag(input, k)?,
        })
    };
    Some(match atom {
        Atom::Const(b) => *b,
        Atom::Principal(id) => input.principal == id,
        Atom::Group(g) => input.groups.iter().any(|x| x == g),
        Atom::Model(d) => input.model == d,
        Atom::Equals(s, v) => value(s)? == v,
        Atom::Like(s, p) => like(value(s)?, p),
        Atom::HasTag(k) => tag(input, k).is_some(),
        Atom::ViaException(b) => input.via_exception == *b,
    })
}

/// Cedar's `like`: `*` matches any sequence, everything else itself. Byte
/// matching equals Cedar's character matching here: both sides are UTF-8,
/// and a UTF-8 literal can only match at character boundaries.
fn like(text: &str, pattern: &[Segment]) -> bool {
    let mut rest = text;
    let mut anchored = true;
    let last = pattern.len().saturating_sub(1);
    for (i, seg) in pattern.iter().enumerate() {
        match seg {
            Segment::Wildcard => anchored = false,
            Segment::Literal(lit) if i == last && !anchored => return rest.ends_with(lit.as_str()),
            Segment::Literal(lit) if anchored => match rest.strip_prefix(lit.as_str()) {
                Some(r) => rest = r,
                None => return false,
            },
            // Leftmost match is enough for a literal between wildcards:
            // taking the earliest leaves the most text for what follows.
            Segment::Literal(lit) => match rest.find(lit.as_str()) {
                Some(at) => {
                    rest = &rest[at + lit.len()..];
                    anchored = true;
                }
                None => return false,
            },
        }
    }
    !anchored || rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(p: &str) -> Vec<Segment> {
        let mut v: Vec<Segment> = Vec::new();
        for c in p.chars() {
            if c == '*' {
                v.push(Segment::Wildcard);
            } else if let Some(Segment::Literal(s)) = v.last_mut() {
                s.push(c);
            } else {
                v.push(Segment::Literal(c.to_string()));
            }
        }
        v
    }

    #[test]
    fn like_matches_cedar_wildcards() {
        for (text, p, want) in [
            ("", "", true),
            ("a", "", false),
            ("", "*", true),
            ("abc", "*", true),
            ("abc", "a*", true),
            ("abc", "*c", true),
            ("abc", "a*c", true),
            ("ac", "a*c", true),
            ("abcbc", "a*bc", true),
            ("abcbd", "a*bc", false),
            ("abc", "*b*", true),
            ("abc", "*d*", false),
            ("aXbXc", "a*b*c", true),
            ("aXcXb", "a*b*c", false),
            ("abc", "abc", true),
            ("abcd", "abc", false),
            ("ab", "abc", false),
            ("aa", "*a*a*", true),
            ("a", "*a*a*", false),
            ("prod/credit/scoring", "prod/*", true),
            ("prod", "prod/*", false),
            ("héllo", "h*o", true),
            ("héllo", "*é*", true),
            ("abab", "*ab", true),
            ("abba", "*ab", false),
        ] {
            assert_eq!(like(text, &pat(p)), want, "{text:?} like {p:?}");
        }
    }
}
