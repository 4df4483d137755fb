//! Cedar policy sets: the strict schema every published set is validated
//! against, and evaluation that turns *any* evaluation error into a deny.
//!
//! Cedar itself skips a policy whose evaluation errors, even a `forbid`, so
//! a broken forbid would silently stop forbidding. [`evaluate`] refuses that:
//! one error anywhere and the request is denied with `PolicyError`.
//!
//! Evaluation is sliced (see `slice.rs`): policies whose guards already
//! decide them for the request are settled without Cedar, and Cedar runs
//! only on the rest; the result is Cedar's on the whole set, which the
//! property tests check against [`evaluate_reference`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use crate::slice::{Sliced, Verdict};
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};

/// The schema policies are validated against (Cedar schema syntax).
///
/// - `Caller` is who calls the model; its groups are `Group` parents and its
///   request attributes are string tags (`principal.getTag("department")`).
/// - `Model` is the model, with its name, version and the risk tier of the
///   approval (or exception) that lets it run.
/// - The only action is `infer`; the context carries the scope, the node and
///   whether an exception (rather than an approval) is the basis.
pub const SCHEMA: &str = r#"
entity Group;
entity Caller in [Group] tags String;
entity Model = {
  "name": String,
  "version": String,
  "risk_tier": String,
};
action "infer" appliesTo {
  principal: [Caller],
  resource: [Model],
  context: {
    "scope": String,
    "node": String,
    "via_exception": Bool,
  }
};
"#;

/// What a policy may name, said in a schema error (valid attributes, so
/// the author need not read the schema).
pub const SCHEMA_SUMMARY: &str = "principal is a Caller (`principal in Group::\"NAME\"`; its request attributes as \
string tags: `principal.hasTag(\"K\") && principal.getTag(\"K\") == \"V\"`); the action is `Action::\"infer\"`; \
resource is a Model with attributes name, version and risk_tier (all String); \
context has scope (String), node (String) and via_exception (Bool)";

struct Compiled {
    schema: Schema,
    caller: EntityTypeName,
    group: EntityTypeName,
    model: EntityTypeName,
    action: EntityUid,
    authorizer: Authorizer,
}

fn compiled() -> Result<&'static Compiled, String> {
    static SCHEMA_CELL: OnceLock<Result<Compiled, String>> = OnceLock::new();
    SCHEMA_CELL
        .get_or_init(|| {
            let (schema, _warnings) =
                Schema::from_cedarschema_str(SCHEMA).map_err(|e| format!("built-in schema: {e}"))?;
            let name = |n: &str| EntityTypeName::from_str(n).map_err(|e| format!("built-in schema: {e}"));
            let action = EntityUid::from_type_name_and_id(name("Action")?, EntityId::new("infer"));
            Ok(Compiled {
                schema,
                caller: name("Caller")?,
                group: name("Group")?,
                model: name("Model")?,
                action,
                authorizer: Authorizer::new(),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A validated policy set. Policy ids are the policies' `@id("…")`
/// annotations where given (they must be unique), else Cedar's `policyN`.
#[derive(Clone, Debug)]
pub struct Policies {
    set: Arc<PolicySet>,
    sliced: Arc<[Sliced]>,
}

impl Policies {
    /// The policies' ids, as decisions name them.
    pub fn ids(&self) -> Vec<String> {
        self.set.policies().map(|p| p.id().to_string()).collect()
    }
}

/// Parse and strictly validate a Cedar policy set.
pub fn compile(text: &str) -> Result<Policies, crate::GovernanceError> {
    compile_msg(text).map_err(crate::GovernanceError::Policy)
}

pub(crate) fn compile_msg(text: &str) -> Result<Policies, String> {
    let c = compiled()?;
    let parsed = PolicySet::from_str(text).map_err(|e| format!("parse error: {e}"))?;
    if parsed.templates().next().is_some() {
        return Err("policy templates are not supported; publish static policies".into());
    }
    let mut seen = BTreeSet::new();
    let mut renamed = Vec::new();
    for p in parsed.policies() {
        let id = p.annotation("id").map_or_else(|| p.id().to_string(), str::to_owned);
        if !seen.insert(id.clone()) {
            return Err(format!("two policies have the id {id:?}"));
        }
        renamed.push(p.new_id(PolicyId::new(id)));
    }
    if renamed.is_empty() {
        return Err("the policy set is empty; publish at least one permit".into());
    }
    let set = PolicySet::from_policies(renamed).map_err(|e| format!("policy set: {e}"))?;
    let result = Validator::new(c.schema.clone()).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
        return Err(format!(
            "does not validate against the schema: {}. Valid: {SCHEMA_SUMMARY}",
            errors.join("; ")
        ));
    }
    let sliced = set.policies().map(|p| Sliced::new(p.clone(), &c.action)).collect();
    Ok(Policies {
        set: Arc::new(set),
        sliced,
    })
}

/// What the Cedar half of a decision needs.
pub struct PolicyInput<'a> {
    /// Caller principal id.
    pub principal: &'a str,
    /// Caller's groups.
    pub groups: &'a [String],
    /// Caller's attributes (become tags).
    pub attributes: &'a [(String, String)],
    /// Model digest.
    pub model: &'a str,
    /// Model name.
    pub model_name: &'a str,
    /// Model version.
    pub model_version: &'a str,
    /// Risk tier of the basis.
    pub risk_tier: &'a str,
    /// Requested scope.
    pub scope: &'a str,
    /// Node id.
    pub node: &'a str,
    /// Basis is an exception.
    pub via_exception: bool,
}

/// The Cedar outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// Permitted; the permits that matched.
    Allow(Vec<String>),
    /// Denied; the forbids that matched (empty: no permit matched).
    Deny(Vec<String>),
    /// Some policy could not be evaluated (or the request could not be
    /// built); the ids and messages.
    Error(Vec<String>),
}

/// Evaluate `input` against `policies`. Any error is `PolicyOutcome::Error`.
/// The same outcome as [`evaluate_reference`], usually without running
/// Cedar on most of the set (or at all).
pub fn evaluate(policies: &Policies, input: &PolicyInput<'_>) -> PolicyOutcome {
    // Requests Cedar would refuse to build (duplicate groups or tags) go to
    // Cedar whole, so that it reports them.
    let plain = {
        let mut groups: Vec<&str> = input.groups.iter().map(String::as_str).collect();
        groups.sort_unstable();
        let mut tags: Vec<&str> = input.attributes.iter().map(|(k, _)| k.as_str()).collect();
        tags.sort_unstable();
        groups.windows(2).all(|w| w[0] != w[1]) && tags.windows(2).all(|w| w[0] != w[1])
    };
    if !plain {
        return evaluate_reference(policies, input);
    }
    let (mut permits, mut forbids, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for p in policies.sliced.iter() {
        match p.verdict(input) {
            Verdict::NotSatisfied => {}
            Verdict::Satisfied if p.permit => permits.push(p.id.clone()),
            Verdict::Satisfied => forbids.push(p.id.clone()),
            Verdict::Unknown => rest.push(p.policy.clone()),
        }
    }
    if !rest.is_empty() {
        let set = match PolicySet::from_policies(rest) {
            Ok(s) => s,
            Err(e) => return PolicyOutcome::Error(vec![format!("policy slice: {e}")]),
        };
        match try_evaluate(&set, input) {
            // Cedar's reasons are the satisfied forbids when it denies and
            // the satisfied permits when it allows; when a forbid of the
            // slice is satisfied, its permits no longer matter.
            Ok(PolicyOutcome::Allow(ids)) => permits.extend(ids),
            Ok(PolicyOutcome::Deny(ids)) => forbids.extend(ids),
            Ok(PolicyOutcome::Error(e)) => return PolicyOutcome::Error(e),
            Err(e) => return PolicyOutcome::Error(vec![e]),
        }
    }
    if !forbids.is_empty() {
        forbids.sort();
        PolicyOutcome::Deny(forbids)
    } else if !permits.is_empty() {
        permits.sort();
        PolicyOutcome::Allow(permits)
    } else {
        PolicyOutcome::Deny(Vec::new())
    }
}

impl Policies {
    /// How many policies [`evaluate`] leaves to Cedar for `input` (the rest
    /// it settles itself). For tests and benchmarks: a slicer that settles
    /// nothing is correct but useless, and this shows it.
    pub fn left_to_cedar(&self, input: &PolicyInput<'_>) -> usize {
        self.sliced
            .iter()
            .filter(|p| p.verdict(input) == Verdict::Unknown)
            .count()
    }
}

/// Cedar alone on the whole set, without slicing: the definition
/// [`evaluate`] is tested against, and the benchmark's baseline.
pub fn evaluate_reference(policies: &Policies, input: &PolicyInput<'_>) -> PolicyOutcome {
    match try_evaluate(&policies.set, input) {
        Ok(o) => o,
        Err(e) => PolicyOutcome::Error(vec![e]),
    }
}

fn try_evaluate(set: &PolicySet, input: &PolicyInput<'_>) -> Result<PolicyOutcome, String> {
    let c = compiled()?;
    let caller = EntityUid::from_type_name_and_id(c.caller.clone(), EntityId::new(input.principal));
    let model = EntityUid::from_type_name_and_id(c.model.clone(), EntityId::new(input.model));
    let groups: Vec<EntityUid> = input
        .groups
        .iter()
        .map(|g| EntityUid::from_type_name_and_id(c.group.clone(), EntityId::new(g)))
        .collect();
    let tags = input
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone())));
    let caller_entity =
        Entity::new_with_tags(caller.clone(), [], groups.iter().cloned(), tags).map_err(|e| format!("caller: {e}"))?;
    let attrs: HashMap<String, RestrictedExpression> = [
        (
            "name".to_owned(),
            RestrictedExpression::new_string(input.model_name.to_owned()),
        ),
        (
            "version".to_owned(),
            RestrictedExpression::new_string(input.model_version.to_owned()),
        ),
        (
            "risk_tier".to_owned(),
            RestrictedExpression::new_string(input.risk_tier.to_owned()),
        ),
    ]
    .into();
    let model_entity = Entity::new(model.clone(), attrs, HashSet::new()).map_err(|e| format!("model: {e}"))?;
    let mut entities = vec![caller_entity, model_entity];
    entities.extend(groups.into_iter().map(|g| Entity::new_no_attrs(g, HashSet::new())));
    // No schema pass here: these entities and the context below are built
    // from the schema's own shapes, with strings only where it says String,
    // and the policies were strictly validated when published. Schema
    // checking per request cost more than the evaluation itself.
    let entities = Entities::from_entities(entities, None).map_err(|e| format!("entities: {e}"))?;
    let context = Context::from_pairs([
        (
            "scope".to_owned(),
            RestrictedExpression::new_string(input.scope.to_owned()),
        ),
        (
            "node".to_owned(),
            RestrictedExpression::new_string(input.node.to_owned()),
        ),
        (
            "via_exception".to_owned(),
            RestrictedExpression::new_bool(input.via_exception),
        ),
    ])
    .map_err(|e| format!("context: {e}"))?;
    let request = Request::new(caller, c.action.clone(), model, context, None).map_err(|e| format!("request: {e}"))?;
    let response = c.authorizer.is_authorized(&request, set, &entities);
    let errors: Vec<String> = response.diagnostics().errors().map(|e| e.to_string()).collect();
    if !errors.is_empty() {
        return Ok(PolicyOutcome::Error(errors));
    }
    let mut ids: Vec<String> = response.diagnostics().reason().map(|p| p.to_string()).collect();
    ids.sort();
    Ok(match response.decision() {
        CedarDecision::Allow => PolicyOutcome::Allow(ids),
        CedarDecision::Deny => PolicyOutcome::Deny(ids),
    })
}

/// What a policy set's `replaces` names, as a user gives it: `none` (the
/// log's first set: empty) or the id of the set in force (64 hex digits,
/// lowercased). `None` for anything else.
pub fn parse_replaces(given: &str) -> Option<String> {
    match given {
        "none" => Some(String::new()),
        id if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => Some(id.to_ascii_lowercase()),
        _ => None,
    }
}
