//! The lineage explorer and a replicated record's page: every call the
//! nodes replicated, searched in the authority's index, and the chain that
//! proves one. Every value a node sent is shown as text.

use axum::http::StatusCode;
use maud::{html, Markup};
use modelgate_governance::State;
use serde_json::Value;

use crate::pages::{layout, short, urlencode, utc};
use crate::{Console, Miss};

/// The lineage explorer's query, as typed (every field text, so a mistyped
/// one is named on the page instead of refused by the router).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct ExplorerQuery {
    /// Lineage id (a record's index).
    pub id: String,
    /// Model name or digest (prefix).
    pub model: String,
    /// Node id.
    pub node: String,
    /// Caller.
    pub caller: String,
    /// Scope.
    pub scope: String,
    /// `allow`, `deny` or empty.
    pub decision: String,
    /// Reason code.
    pub code: String,
    /// From (POSIX seconds or a UTC date and time).
    pub since: String,
    /// Until.
    pub until: String,
    /// `oldest` first, or newest (default).
    pub order: String,
    /// Page, from 0.
    pub page: String,
}

/// Records per explorer page.
const EXPLORER_PAGE: u64 = 50;

impl ExplorerQuery {
    fn search(&self) -> Result<(modelgate_authority::lineage::Search, u64), String> {
        let time = |what: &str, s: &str| -> Result<Option<u64>, String> {
            if s.trim().is_empty() {
                return Ok(None);
            }
            modelgate_governance::time::parse_time(s).map(Some).ok_or_else(|| {
                format!("{what} {s:?} is not a time: give POSIX seconds or a UTC date and time like 2026-12-04T18:40")
            })
        };
        let id = match self.id.trim() {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| format!("lineage id {s:?} is not a record index"))?,
            ),
        };
        let decision = match self.decision.trim() {
            "" | "any" => None,
            d @ ("allow" | "deny") => Some(d.to_owned()),
            d => return Err(format!("decision {d:?} must be allow or deny")),
        };
        let page = match self.page.trim() {
            "" => 0,
            s => s.parse::<u64>().map_err(|_| format!("page {s:?} is not a number"))?,
        };
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok((
            modelgate_authority::lineage::Search {
                id,
                model: text(&self.model),
                node: text(&self.node),
                caller: text(&self.caller),
                scope: text(&self.scope),
                decision,
                code: text(&self.code),
                since: time("from", &self.since)?,
                until: time("until", &self.until)?,
                oldest_first: self.order == "oldest",
                all_kinds: false,
            },
            page,
        ))
    }

    fn link(&self, c: &Console, page: u64) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("id", &self.id),
            ("model", &self.model),
            ("node", &self.node),
            ("caller", &self.caller),
            ("scope", &self.scope),
            ("decision", &self.decision),
            ("code", &self.code),
            ("since", &self.since),
            ("until", &self.until),
            ("order", &self.order),
        ] {
            if !v.trim().is_empty() {
                q.push(format!("{k}={}", urlencode(v.trim())));
            }
        }
        q.push(format!("page={page}"));
        c.link(&format!("/lineage?{}", q.join("&")))
    }
}

fn explorer_form(q: &ExplorerQuery) -> Markup {
    let field = |id: &str, label: &str, value: &str, hint: &str| {
        html! {
            div {
                label for=(id) { (label) }
                input id=(id) name=(id) value=(value) placeholder=(hint);
            }
        }
    };
    html! {
        form class="explorer" method="get" {
            (field("id", "Lineage id", &q.id, "record index"))
            (field("model", "Model", &q.model, "name or digest prefix"))
            (field("node", "Node", &q.node, ""))
            (field("caller", "Caller", &q.caller, "principal"))
            (field("scope", "Scope", &q.scope, "prod/credit/scoring"))
            div {
                label for="decision" { "Decision" }
                select id="decision" name="decision" {
                    @for (v, l) in [("", "any"), ("allow", "allowed"), ("deny", "denied")] {
                        option value=(v) selected[q.decision == v] { (l) }
                    }
                }
            }
            (field("code", "Reason", &q.code, "e.g. ScopeNotApproved"))
            (field("since", "From (UTC)", &q.since, "2026-12-04T18:00"))
            (field("until", "Until (UTC)", &q.until, ""))
            div {
                label for="order" { "Order" }
                select id="order" name="order" {
                    option value="newest" selected[q.order != "oldest"] { "newest first" }
                    option value="oldest" selected[q.order == "oldest"] { "oldest first" }
                }
            }
            div { button type="submit" { "Search" } }
        }
    }
}

/// The lineage explorer: every call the nodes replicated, searched in the
/// authority's index. A query that does not parse is answered with the
/// form and what was wrong (and a 400 status).
pub fn lineage_explorer(c: &Console, q: &ExplorerQuery) -> Result<(StatusCode, Markup), Miss> {
    let lineage = &c.authority.lineage;
    let (search, page, problem) = match q.search() {
        Ok((s, p)) => (Some(s), p, None),
        Err(why) => (None, 0, Some(why)),
    };
    let rows = match &search {
        Some(s) => lineage
            .search(s, page.saturating_mul(EXPLORER_PAGE), EXPLORER_PAGE + 1)
            .map_err(|e| Miss(StatusCode::SERVICE_UNAVAILABLE, format!("searching lineage: {e}")))?,
        None => Vec::new(),
    };
    let more = rows.len() as u64 > EXPLORER_PAGE;
    let rows = &rows[..rows.len().min(EXPLORER_PAGE as usize)];
    let evidence = lineage.evidence().unwrap_or_default();
    let status = if problem.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        layout(
            c,
            "Lineage",
            None,
            html! {
                p { "Every call the nodes recorded and replicated to the authority: who called which model, in which scope, "
                    "what was decided and why. Records hold metadata and digests; prompts and outputs never leave the node. "
                    "Each record links to the chain that proves it." }
                @if !evidence.is_empty() {
                    section class="alert" aria-labelledby="evidence" {
                        h2 id="evidence" { "Evidence: a node signed two histories" }
                        @for e in &evidence {
                            p { "Node " strong { (e.node) } " at " (utc(e.time)) ": " (e.detail) }
                            details { summary { "Both signed checkpoints" }
                                pre { (e.held) } pre { (e.offered) } }
                        }
                    }
                }
                (explorer_form(q))
                @if let Some(p) = &problem {
                    p class="alert" role="alert" { (p) }
                } @else if rows.is_empty() {
                    p { "No record matches." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Time (UTC)" } th scope="col" { "Node" } th scope="col" { "Lineage id" }
                            th scope="col" { "Caller" } th scope="col" { "Model" } th scope="col" { "Scope" } th scope="col" { "Decision" } } }
                        tbody {
                            @for r in rows {
                                tr {
                                    td { (utc(r.time)) }
                                    td { a href=(c.link(&format!("/lineage?node={}", urlencode(&r.node)))) { (r.node) } }
                                    td { a href=(c.link(&format!("/lineage/{}/{}", urlencode(&r.node), r.index))) { (r.index) } }
                                    td { (r.principal.as_deref().unwrap_or("—")) }
                                    td { (r.model.as_deref().unwrap_or("—"))
                                        @if let Some(d) = &r.digest { " " code { (short(d)) } } }
                                    td { (r.scope.as_deref().unwrap_or("—")) }
                                    td {
                                        @match r.decision.as_deref() {
                                            Some("allow") => span class="state serving" { "allowed" },
                                            Some(_) => span class="state contained" { "denied " (r.code.as_deref().unwrap_or("")) },
                                            None => (r.kind),
                                        }
                                    }
                                }
                            }
                        }
                    }
                    nav aria-label="Pages" class="pager" {
                        @if page > 0 { a href=(q.link(c, page - 1)) { "Previous" } " " }
                        @if more { a href=(q.link(c, page.saturating_add(1))) { "Next" } }
                    }
                }
            },
        ),
    ))
}

/// The links the node and the log prove: the record in the node's signed
/// checkpoint, its anchor and the governance checkpoint, the enrollment;
/// then the policy set and trust root in force at the call's governance size.
fn node_links(
    c: &Console,
    node: &str,
    index: u64,
    enrolled: &modelgate_governance::NodeRecord,
    proven: &modelgate_authority::lineage::ProvenRecord,
    record: &Value,
) -> Result<Vec<Link>, Miss> {
    let mut chain = Vec::new();
    // 1. The record in the node's signed checkpoint.
    let cp = modelgate_tlog::VerifierKey::parse(&enrolled.key)
        .ok()
        .and_then(|k| modelgate_tlog::CheckpointPolicy::new(k, vec![], 0).ok())
        .and_then(|p| p.verify(&proven.checkpoint).ok())
        .map(|v| v.checkpoint);
    let included = cp.as_ref().is_some_and(|cp| {
        modelgate_tlog::verify_inclusion(
            &modelgate_tlog::leaf_hash(&proven.record),
            index,
            cp.size,
            &proven.inclusion,
            &cp.root,
        )
        .is_ok()
    });
    chain.push(Link {
        name: "Record in the node's lineage log",
        ok: included,
        detail: match &cp {
            Some(cp) => format!(
                "record {index} is included in node {node}'s checkpoint of {} records, signed by its enrolled key",
                cp.size
            ),
            None => "the node's checkpoint does not verify with its enrolled key".into(),
        },
        href: None,
    });
    let (anchor, versions) = {
        let i = c
            .index
            .lock()
            .map_err(|_| Miss(StatusCode::INTERNAL_SERVER_ERROR, "index lock".into()))?;
        let gov_size = record["governance"]["size"].as_u64().unwrap_or(u64::MAX);
        (
            i.anchor_covering(node, index),
            (
                crate::index::Index::in_force(&i.policies, gov_size).cloned(),
                i.trust_roots
                    .iter()
                    .rev()
                    .find(|(v, _)| v.index < gov_size)
                    .map(|(v, _)| v.clone()),
            ),
        )
    };
    chain.push(match anchor {
        Some((size, entry)) => Link {
            name: "Anchored in the governance log",
            ok: true,
            detail: format!("node-anchor entry {entry} carries the node's checkpoint of {size} records"),
            href: Some(c.link(&format!("/entries/{entry}"))),
        },
        None => Link {
            name: "Anchored in the governance log",
            ok: false,
            detail: "not anchored yet: the node anchors its lineage every few seconds".into(),
            href: None,
        },
    });
    if let Some((_, entry)) = anchor {
        chain.push(Link {
            name: "Governance checkpoint",
            ok: true,
            detail: "the anchor's inclusion proof against the latest checkpoint (log signature and witness quorum)"
                .into(),
            href: Some(c.link(&format!("/proof?index={entry}"))),
        });
    }
    chain.push(Link {
        name: "Node enrollment",
        ok: true,
        detail: format!(
            "node {node} and its key, enrolled by a node admin in entry {}",
            enrolled.index
        ),
        href: Some(c.link(&format!("/entries/{}", enrolled.index))),
    });
    let (policy, root) = versions;
    if let Some(p) = policy {
        let decided: Vec<&str> = record["policies"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        chain.push(Link {
            name: "Policy set in force",
            ok: true,
            detail: format!(
                "{} (entry {}), published by {}; decided by {}",
                p.payload["name"].as_str().unwrap_or("?"),
                p.index,
                p.signers.join(", "),
                if decided.is_empty() {
                    "—".to_owned()
                } else {
                    decided.join(", ")
                }
            ),
            href: Some(c.link(&format!("/entries/{}", p.index))),
        });
    }
    if let Some(r) = root {
        chain.push(Link {
            name: "Trust root in force",
            ok: true,
            detail: format!("version {} (entry {})", r.payload["root_version"], r.index),
            href: Some(c.link(&format!("/trust-root#v{}", r.index))),
        });
    }
    Ok(chain)
}

/// The links of what allowed the call: the model's registration, the
/// approval or exception it was served under.
fn grant_links(c: &Console, state: &State, record: &Value, chain: &mut Vec<Link>) {
    let s = |k: &str| record[k].as_str().map(str::to_owned);
    if let Some(d) = s("digest") {
        match state.models.get(d.as_str()) {
            Some(m) => chain.push(Link {
                name: "Model registration",
                ok: true,
                detail: format!(
                    "{} {} ({}), its OMS bundle signed by {}{}, registered in entry {}",
                    m.name,
                    m.version,
                    short(&d),
                    m.signers.iter().cloned().collect::<Vec<_>>().join(", "),
                    m.keyless.as_ref().map_or_else(String::new, |k| format!(
                        " (keyless: {} from {}, Rekor log index {})",
                        k.identity, k.issuer, k.log_index
                    )),
                    m.index
                ),
                href: Some(c.link(&format!("/models/{d}"))),
            }),
            None => chain.push(Link {
                name: "Model registration",
                ok: false,
                detail: format!("model {} is not registered", short(&d)),
                href: None,
            }),
        }
    }
    if let Some(id) = s("approval") {
        match state.approvals.get(id.as_str()) {
            Some(a) => chain.push(Link {
                name: "Approval",
                ok: true,
                detail: format!(
                    "approved by {} ({:?} tier) for {} from {} until {}, ticket {}",
                    a.approvers.join(", "),
                    a.risk_tier,
                    a.scopes.join(", "),
                    utc(a.valid_from),
                    utc(a.valid_until),
                    a.ticket
                ),
                href: Some(c.link(&format!("/entries/{}", a.index))),
            }),
            None => chain.push(Link {
                name: "Approval",
                ok: false,
                detail: format!("approval {id} is not in the state"),
                href: None,
            }),
        }
    }
    if let Some(id) = s("exception") {
        if let Some(x) = state.exceptions.get(id.as_str()) {
            chain.push(Link {
                name: "Exception",
                ok: true,
                detail: format!(
                    "granted by {} until {}, ticket {}: {}",
                    x.approvers.join(", "),
                    utc(x.expires),
                    x.ticket,
                    x.reason
                ),
                href: Some(c.link(&format!("/entries/{}", x.index))),
            });
        }
    }
}

/// One link of a record's chain: what it is, what it says, where it is.
struct Link {
    name: &'static str,
    ok: bool,
    detail: String,
    href: Option<String>,
}

/// A replicated record and the chain that proves it.
pub fn lineage_record(c: &Console, node: &str, index: u64) -> Result<Markup, Miss> {
    let state = c.authority.state();
    let enrolled = state
        .nodes
        .get(node)
        .ok_or_else(|| Miss(StatusCode::NOT_FOUND, format!("node {node:?} is not enrolled")))?;
    let proven = c
        .authority
        .lineage
        .record(node, &enrolled.key, index)
        .map_err(|e| Miss(StatusCode::SERVICE_UNAVAILABLE, format!("reading lineage: {e}")))?
        .ok_or_else(|| {
            Miss(
                StatusCode::NOT_FOUND,
                format!("the authority holds no record {index} of node {node}"),
            )
        })?;
    let record: Value = serde_json::from_slice(&proven.record).unwrap_or(Value::Null);
    let s = |k: &str| record[k].as_str().map(str::to_owned);
    let mut chain = node_links(c, node, index, enrolled, &proven, &record)?;
    grant_links(c, &state, &record, &mut chain);
    let pretty = serde_json::to_string_pretty(&record).unwrap_or_default();
    Ok(layout(
        c,
        &format!("Lineage record {node}/{index}"),
        None,
        html! {
            dl class="facts" {
                dt { "Node" } dd { (node) }
                dt { "Time (UTC)" } dd { (record["time"].as_u64().map(utc).unwrap_or_default()) }
                dt { "Kind" } dd { (s("type").unwrap_or_default()) }
                dt { "Caller" } dd { (s("principal").unwrap_or_else(|| "—".into())) }
                dt { "Scope" } dd { (s("scope").unwrap_or_else(|| "—".into())) }
                dt { "Model" } dd { (s("model").unwrap_or_else(|| "—".into())) " " code { (s("digest").unwrap_or_default()) } }
                @if let Some(code) = s("code") { dt { "Denied" } dd { (code) " (check " (record["check"].as_str().unwrap_or("?")) ")" } }
            }
            h2 { "Its chain" }
            ol class="chain" {
                @for l in &chain {
                    li class=(if l.ok { "pass" } else { "fail" }) {
                        strong { (l.name) } ": " (l.detail)
                        @if let Some(h) = &l.href { " · " a href=(h) { "open" } }
                    }
                }
            }
            p { a href=(c.link(&format!("/lineage/{}/{index}/proof", urlencode(node)))) download=(format!("{node}-{index}.proof.json")) { "Download its full-chain proof" }
                " (every link above, proven against one governance checkpoint) and verify it offline with "
                code { "modelgate lineage verify PROOF --trust-root TRUST-ROOT" } ", or "
                a href=(c.link(&format!("/proof?node={}&lineage={index}", urlencode(node)))) { "in your browser" }
                " (also in the saved proof viewer, with the network off). The node serves its own proof of the call at "
                code { "/lineage/" (index) } "." }
            h2 { "The record" }
            pre class="payload" { (pretty) }
        },
    ))
}
