//! The pages. Each builds from one published state, one served checkpoint
//! and the index, so a page never mixes two moments of the log.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use maud::{html, Markup, DOCTYPE};
use modelgate_governance::{Envelope, State};
use serde_json::{json, Value};

use crate::diff::{self, Line};
use crate::{Console, Miss};

/// Entries per log page.
const PAGE: u64 = 50;

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// "12 s", "3 min", "5 h", "2 d".
fn age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

/// POSIX seconds as UTC `YYYY-MM-DD HH:MM:SS`.
pub(crate) fn utc(t: u64) -> String {
    let (y, mo, d, h, mi, s) = modelgate_governance::time::utc(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// The first 16 characters of a digest (or of whatever a node sent in its
/// place: cut at a character boundary, never inside one).
pub(crate) fn short(d: &str) -> &str {
    d.char_indices().nth(16).map_or(d, |(i, _)| &d[..i])
}

pub(crate) fn layout(c: &Console, title: &str, live: Option<&str>, body: Markup) -> Markup {
    layout_scripts(c, title, live, &[], body)
}

/// A page that also runs the proof viewer's scripts.
fn layout_with_scripts(c: &Console, title: &str, body: Markup) -> Markup {
    layout_scripts(
        c,
        title,
        None,
        &["/assets/verify.js", "/assets/lineage.js", "/assets/viewer.js"],
        body,
    )
}

fn layout_scripts(c: &Console, title: &str, live: Option<&str>, scripts: &[&str], body: Markup) -> Markup {
    let nav = [
        ("/", "Overview"),
        ("/models", "Models"),
        ("/policies", "Policies"),
        ("/trust-root", "Trust root"),
        ("/entries", "Governance log"),
        ("/health", "Health"),
        ("/lineage", "Lineage"),
        ("/proof", "Proof viewer"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · modelgate governance" }
                link rel="stylesheet" href=(c.link("/assets/console.css"));
                script src=(c.link("/assets/console.js")) defer {}
                @for s in scripts { script src=(c.link(s)) defer {} }
            }
            body data-prefix=(c.prefix) data-live=[live] {
                a class="skip" href="#main" { "Skip to content" }
                header {
                    p class="brand" { "modelgate · public governance console" }
                    nav aria-label="Console" {
                        ul {
                            @for (href, name) in nav {
                                li { a href=(c.link(href)) aria-current=[(name == title).then_some("page")] { (name) } }
                            }
                        }
                    }
                    form role="search" method="get" action=(c.link("/find")) {
                        label for="q" { "Entry index or model digest" }
                        input id="q" name="q" type="search" required;
                        button type="submit" { "Go" }
                    }
                }
                main id="main" {
                    h1 { (title) }
                    (body)
                }
                footer {
                    p { "Read-only. Everything here is in the governance log; verify it offline with "
                        code { "modelgate log audit" } " and the log's verifier key." }
                }
            }
        }
    }
}

/// Where each node runs each model: (node, local name, state JSON). From
/// its latest heartbeat, overridden by a containment report the node
/// signed after it (reports go out the moment a node contains, heartbeats
/// every few seconds).
fn placements(c: &Console) -> Vec<(String, String, Value)> {
    let state = c.authority.state();
    let beats = c.authority.heartbeats.lock().map(|b| b.clone()).unwrap_or_default();
    let mut out: std::collections::BTreeMap<(String, String), Value> = std::collections::BTreeMap::new();
    for hb in beats.values() {
        if let Some(m) = hb.summary["models"].as_object() {
            for (name, v) in m {
                out.insert((hb.node.clone(), name.clone()), v.clone());
            }
        }
    }
    for n in state.nodes.values() {
        let Some(r) = &n.last_report else { continue };
        if beats.get(&n.id).is_some_and(|hb| hb.time > r.time) {
            continue;
        }
        for digest in &r.models {
            let local = state
                .models
                .get(digest.as_str())
                .map_or_else(|| short(digest).to_owned(), |m| m.name.clone());
            // The node's own rule (`ModelStatus::step`): Serving is the tenth
            // step, and a model contained while Serving stopped there too.
            let step = match r.recovered {
                true => modelgate_governance::LifecycleStep::AuditVerified,
                false => r.step.unwrap_or(modelgate_governance::LifecycleStep::AuditVerified),
            };
            let v = if r.recovered {
                json!({"state": "Serving", "digest": digest, "reported": true,
                       "lifecycle_step": step, "lifecycle_step_number": step.number()})
            } else {
                json!({"state": "Contained", "digest": digest, "reason": r.reason.code(), "check": r.check.code(),
                       "lifecycle_step": step, "lifecycle_step_number": step.number(), "reported": true})
            };
            out.insert((n.id.clone(), local), v);
        }
    }
    out.into_iter().map(|((n, l), v)| (n, l, v)).collect()
}

/// The placements of one registered model: by digest while Serving, by its
/// registered name otherwise (a contained model's heartbeat names no digest).
fn placements_of<'a>(all: &'a [(String, String, Value)], digest: &str, name: &str) -> Vec<&'a (String, String, Value)> {
    all.iter()
        .filter(|(_, local, v)| v["digest"].as_str() == Some(digest) || (v["digest"].is_null() && local == name))
        .collect()
}

/// How many registered models are Serving somewhere, and Contained
/// somewhere: one pass over the placements, not one per model.
fn counts(state: &State, all: &[(String, String, Value)]) -> (usize, usize) {
    let mut serving = std::collections::HashSet::new();
    let mut contained = std::collections::HashSet::new();
    let by_name: std::collections::HashMap<&str, &str> =
        state.models.values().map(|m| (m.name.as_str(), &*m.digest)).collect();
    for (_, local, v) in all {
        let digest = match v["digest"].as_str() {
            Some(d) if state.models.contains_key(d) => Some(d.to_owned()),
            Some(_) => None,
            None => by_name.get(local.as_str()).map(|d| (*d).to_owned()),
        };
        let Some(d) = digest else { continue };
        match v["state"].as_str() {
            Some("Serving") => {
                serving.insert(d);
            }
            Some("Contained") => {
                contained.insert(d);
            }
            _ => {}
        }
    }
    (serving.len(), contained.len())
}

fn state_cell(v: &Value) -> Markup {
    let state = v["state"].as_str().unwrap_or("Unknown");
    html! {
        span class={"state " (state.to_lowercase())} { (state) }
        @if let Some(r) = v["reason"].as_str() {
            " " span class="reason" { (r) }
        }
        @if let Some(d) = v["decision"].as_str() {
            " (" (d) ")"
        }
    }
}

struct NodeHealth {
    id: String,
    heartbeat_age: Option<u64>,
    verified_size: Option<u64>,
    staleness: Option<u64>,
    contained: usize,
    models: Vec<(String, Value)>,
    lineage_size: Option<u64>,
    anchor: Option<(u64, u64)>,
    status: &'static str,
}

/// Each enrolled node's health at `t`, its models from `placements`.
fn node_health(c: &Console, state: &State, placements: &[(String, String, Value)], t: u64) -> Vec<NodeHealth> {
    let beats = c.authority.heartbeats.lock().map(|b| b.clone()).unwrap_or_default();
    let max = state.trust_root().map_or(30, |r| r.doc.freshness.max_staleness_seconds);
    state
        .nodes
        .values()
        .map(|n| {
            let hb = beats.get(&n.id);
            let models: Vec<(String, Value)> = placements
                .iter()
                .filter(|p| p.0 == n.id)
                .map(|p| (p.1.clone(), p.2.clone()))
                .collect();
            let contained = models.iter().filter(|(_, v)| v["state"] == "Contained").count();
            let heartbeat_age = hb.map(|h| t.saturating_sub(h.time));
            let staleness = hb.and_then(|h| h.summary["staleness_seconds"].as_u64());
            let status = match (heartbeat_age, contained) {
                (_, n) if n > 0 => "containing",
                (None, _) => "silent",
                (Some(a), _) if a > 3 * max => "stale",
                _ => "healthy",
            };
            NodeHealth {
                id: n.id.clone(),
                heartbeat_age,
                verified_size: hb.and_then(|h| h.summary["checkpoint_size"].as_u64()),
                staleness,
                contained,
                models,
                lineage_size: hb.and_then(|h| h.summary["lineage_size"].as_u64()),
                anchor: n.anchor.as_ref().map(|a| (a.size, a.index)),
                status,
            }
        })
        .collect()
}

pub fn overview(c: &Console) -> Markup {
    let state = c.authority.state();
    let t = now();
    let (note, size, cosigned) = c
        .authority
        .served
        .read()
        .map(|s| (String::from_utf8_lossy(&s.note).into_owned(), s.size, s.time))
        .unwrap_or_default();
    let parsed = modelgate_tlog::Note::parse(note.as_bytes()).ok();
    let origin = parsed
        .as_ref()
        .and_then(|n| n.text().lines().next().map(str::to_owned))
        .unwrap_or_default();
    let placements = placements(c);
    let (serving, contained) = counts(&state, &placements);
    let nodes = node_health(c, &state, &placements, t);
    let count = |s: &str| nodes.iter().filter(|n| n.status == s).count();
    let recent = summaries(c, size.saturating_sub(10), size);
    layout(
        c,
        "Overview",
        Some("overview"),
        html! {
            section aria-labelledby="log" {
                h2 id="log" { "The governance log" }
                dl class="facts" {
                    dt { "Origin" } dd { code { (origin) } }
                    dt { "Size" } dd id="log-size" { (size) " entries" }
                    dt { "Checkpoint cosigned" } dd { (utc(cosigned)) ", " span id="checkpoint-age" { (age(t.saturating_sub(cosigned))) } " ago" }
                    dt { "Trust root" } dd { "version " (state.trust_root().map_or(0, |r| r.doc.root_version)) }
                }
                h3 { "Latest checkpoint" }
                pre class="note" { (note) }
                @if let Some(n) = &parsed {
                    p { "Signed by: "
                        @for (i, s) in n.signatures().iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (s.name) } " (key " (format!("{:08x}", s.key_id)) ")"
                        }
                    }
                }
            }
            section aria-labelledby="counts" {
                h2 id="counts" { "Models and nodes" }
                dl class="facts" {
                    dt { "Models registered" } dd id="models-registered" { (state.models.len()) }
                    dt { "Serving somewhere" } dd id="models-serving" { (serving) }
                    dt { "Contained somewhere" } dd id="models-contained" { (contained) }
                    dt { "Revoked" } dd { (state.revocations.len()) }
                    dt { "Nodes enrolled" } dd { (nodes.len()) }
                    dt { "Healthy" } dd id="nodes-healthy" { (count("healthy")) }
                    dt { "Stale or silent" } dd id="nodes-stale" { (count("stale") + count("silent")) }
                    dt { "Containing" } dd id="nodes-containing" { (count("containing")) }
                }
            }
            section aria-labelledby="recent" {
                h2 id="recent" { "Recent governance events" }
                (entry_table(c, &recent))
            }
        },
    )
}

fn entry_table(c: &Console, rows: &[(u64, crate::index::EntrySummary)]) -> Markup {
    html! {
        table {
            thead { tr { th scope="col" { "Index" } th scope="col" { "Type" } th scope="col" { "About" } th scope="col" { "Signed by" } } }
            tbody {
                @for (i, e) in rows {
                    tr {
                        td { a href=(c.link(&format!("/entries/{i}"))) { (i) } }
                        td { (e.kind) }
                        td { (e.about) }
                        td { (e.signers.join(", ")) }
                    }
                }
            }
        }
    }
}

/// Models per page of the models list.
const MODELS_PAGE: usize = 100;

pub fn models(c: &Console, page: usize, q: &str) -> Markup {
    let state = c.authority.state();
    let placements = placements(c);
    let q = q.trim();
    let matching: Vec<_> = state
        .models
        .values()
        .filter(|m| q.is_empty() || m.name.contains(q) || m.digest.starts_with(q))
        .collect();
    let pages = matching.len().div_ceil(MODELS_PAGE).max(1);
    let page = page.min(pages - 1);
    let shown = &matching[(page * MODELS_PAGE).min(matching.len())..((page + 1) * MODELS_PAGE).min(matching.len())];
    let link = |p: usize| {
        let filter = if q.is_empty() {
            String::new()
        } else {
            format!("&q={}", urlencode(q))
        };
        c.link(&format!("/models?page={p}{filter}"))
    };
    layout(
        c,
        "Models",
        None,
        html! {
            form method="get" action=(c.link("/models")) class="filter" {
                label for="mq" { "Name or digest prefix" }
                " "
                input id="mq" name="q" type="search" value=(q);
                " "
                button type="submit" { "Filter" }
            }
            p { (state.models.len()) " registered models"
                @if !q.is_empty() { ", " (matching.len()) " matching" }
                @if !shown.is_empty() { "; " (page * MODELS_PAGE + 1) "–" (page * MODELS_PAGE + shown.len()) " shown" }
                "." }
            table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Version" } th scope="col" { "Digest" }
                    th scope="col" { "Signed by" } th scope="col" { "Registered" } th scope="col" { "Approvals" }
                    th scope="col" { "Governance" } th scope="col" { "On nodes" }
                } }
                tbody {
                    @for m in shown {
                        @let approvals = state.grants_of_model(&m.digest).filter(|id| state.approvals.contains_key(*id)).count();
                        tr {
                            td { a href=(c.link(&format!("/models/{}", m.digest))) { (m.name) } }
                            td { (m.version) }
                            td { code title=(m.digest) { (short(&m.digest)) "…" } }
                            td { (m.signers.iter().cloned().collect::<Vec<_>>().join(", ")) }
                            td { a href=(c.link(&format!("/entries/{}", m.index))) { "#" (m.index) } }
                            td { (approvals) }
                            td { @if state.revocations.contains_key(&*m.digest) { span class="state contained" { "Revoked" } } @else if approvals > 0 { "Approved" } @else { "Not approved" } }
                            td {
                                @for (node, _, v) in placements_of(&placements, &m.digest, &m.name).iter().copied() {
                                    div { (node) ": " (state_cell(v)) }
                                }
                            }
                        }
                    }
                }
            }
            @if pages > 1 {
                nav aria-label="Pages" class="pager" {
                    @if page > 0 { a href=(link(page - 1)) { "Previous" } " " }
                    "page " (page + 1) " of " (pages) " "
                    @if page + 1 < pages { a href=(link(page + 1)) { "Next" } }
                }
            }
        },
    )
}

/// Percent-encode a query value (everything but unreserved characters).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn model(c: &Console, digest: &str) -> Result<Markup, Miss> {
    let state = c.authority.state();
    let Some(m) = state.models.get(digest) else {
        return Err(Miss(
            StatusCode::NOT_FOUND,
            format!("no registered model has the digest {digest:?}"),
        ));
    };
    let t = now();
    let placements = placements(c);
    let approvals: Vec<_> = state
        .grants_of_model(digest)
        .filter_map(|id| state.approvals.get(id))
        .collect();
    let exceptions: Vec<_> = state
        .grants_of_model(digest)
        .filter_map(|id| state.exceptions.get(id))
        .collect();
    let pending: Vec<_> = c
        .authority
        .pending
        .list(&state, t)
        .into_iter()
        .filter(|p| p.model == digest)
        .collect();
    let title = format!("Model {} {}", m.name, m.version);
    Ok(layout(
        c,
        &title,
        None,
        html! {
            dl class="facts" {
                dt { "Digest" } dd { code { (m.digest) } }
                dt { "Signed by" } dd { (m.signers.iter().cloned().collect::<Vec<_>>().join(", ")) }
                @if let Some(k) = &m.keyless {
                    dt { "Keyless signer" }
                    dd {
                        code { (k.identity) } " from " code { (k.issuer) }
                        ", Rekor log index " (k.log_index) ", signed at "
                        (modelgate_governance::time::rfc3339(k.signed_at))
                    }
                }
                dt { "Registration" } dd { a href=(c.link(&format!("/entries/{}", m.index))) { "entry #" (m.index) } }
            }
            @if let Some(r) = state.revocations.get(digest) {
                section class="alert" aria-labelledby="revoked" {
                    h2 id="revoked" { "Revoked" }
                    p { "At " a href=(c.link(&format!("/entries/{}", r.index))) { "entry #" (r.index) } " by " (r.revokers.join(", ")) ", ticket " (r.ticket) ": " (r.reason) }
                }
            }
            h2 { "Approvals" }
            @if approvals.is_empty() { p { "None." } }
            @else {
                table {
                    thead { tr { th scope="col" { "Entry" } th scope="col" { "Approved by" } th scope="col" { "Tier" } th scope="col" { "Scopes" } th scope="col" { "Valid" } th scope="col" { "Ticket" } } }
                    tbody { @for a in &approvals { tr {
                        td { a href=(c.link(&format!("/entries/{}", a.index))) { "#" (a.index) } }
                        td { (a.approvers.join(", ")) }
                        td { (a.risk_tier.as_str()) }
                        td { (a.scopes.join(", ")) }
                        td { (utc(a.valid_from)) " – " (utc(a.valid_until)) @if t >= a.valid_until { " (ended)" } @else if t < a.valid_from { " (not yet)" } }
                        td { (a.ticket) }
                    } } }
                }
            }
            h2 { "Approvals waiting for cosigners" }
            @if pending.is_empty() { p { "None." } }
            @else {
                table {
                    thead { tr { th scope="col" { "Signed by" } th scope="col" { "Still needed" } th scope="col" { "May still sign" } th scope="col" { "Tier" } th scope="col" { "Scopes" } th scope="col" { "Until" } th scope="col" { "Ticket" } } }
                    tbody { @for p in &pending { tr {
                        td { (p.signed_by.join(", ")) }
                        td { (p.needed) " approver(s)" }
                        td { (p.may_sign.join(", ")) }
                        td { (p.tier) }
                        td { (p.scopes.join(", ")) }
                        td { (utc(p.valid_until)) }
                        td { (p.ticket) }
                    } } }
                }
            }
            p class="note-text" { "An approval short of its threshold is not in the log: it waits here, posted with "
                code { "modelgate submit --pending" } ", until enough approvers have signed it." }
            h2 { "Exceptions" }
            @if exceptions.is_empty() { p { "None." } }
            @else {
                table {
                    thead { tr { th scope="col" { "Entry" } th scope="col" { "Granted by" } th scope="col" { "Tier" } th scope="col" { "Scopes" } th scope="col" { "Expires" } th scope="col" { "Ticket" } th scope="col" { "Reason" } } }
                    tbody { @for x in &exceptions { tr {
                        td { a href=(c.link(&format!("/entries/{}", x.index))) { "#" (x.index) } }
                        td { (x.approvers.join(", ")) }
                        td { (x.risk_tier.as_str()) }
                        td { (x.scopes.join(", ")) }
                        td { (utc(x.expires)) @if t >= x.expires { " (expired)" } }
                        td { (x.ticket) }
                        td { (x.reason) }
                    } } }
                }
            }
            h2 { "On nodes now" }
            @let here = placements_of(&placements, &m.digest, &m.name);
            @if here.is_empty() { p { "No node reports it." } }
            @else {
                table {
                    thead { tr { th scope="col" { "Node" } th scope="col" { "As" } th scope="col" { "State" } th scope="col" { "Lifecycle step" } th scope="col" { "Detail" } } }
                    tbody { @for (node, local, v) in here.iter().copied() { tr {
                        td { (node) } td { (local) } td { (state_cell(v)) }
                        td { (v["lifecycle_step"].as_str().unwrap_or("")) }
                        td { (v["detail"].as_str().unwrap_or("")) }
                    } } }
                }
            }
        },
    ))
}

pub fn policies(c: &Console) -> Markup {
    let versions = c.index.lock().map(|i| i.policies.clone()).unwrap_or_default();
    let text = |v: &crate::index::Version| v.payload["policies"].as_str().unwrap_or_default().to_owned();
    layout(
        c,
        "Policies",
        None,
        html! {
            @if versions.is_empty() { p { "No policy set has been published: every call is refused (NoPolicySet)." } }
            @for (k, v) in versions.iter().enumerate().rev() {
                section aria-labelledby=(format!("p{}", v.index)) {
                    h2 id=(format!("p{}", v.index)) {
                        "Version " (k + 1) ": " (v.payload["name"].as_str().unwrap_or(""))
                        @if k + 1 == versions.len() { " (in force)" }
                    }
                    p { "Published at " a href=(c.link(&format!("/entries/{}", v.index))) { "entry #" (v.index) } " by " (v.signers.join(", ")) "." }
                    pre class="cedar" { (text(v)) }
                    @if k > 0 {
                        details {
                            summary { "Changes from version " (k) }
                            @match diff::lines(&text(&versions[k - 1]), &text(v)) {
                                Some(lines) => pre class="diff" {
                                    @for l in lines {
                                        @match l {
                                            Line::Same(s) => span class="same" { "  " (s) "\n" },
                                            Line::Removed(s) => del { "- " (s) "\n" },
                                            Line::Added(s) => ins { "+ " (s) "\n" },
                                        }
                                    }
                                },
                                None => p { "Too long to compare here (over " (diff::MAX_LINES) " lines)." },
                            }
                        }
                    }
                }
            }
        },
    )
}

pub fn trust_root(c: &Console) -> Markup {
    let versions = c
        .index
        .lock()
        .map(|i| i.trust_roots.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>())
        .unwrap_or_default();
    layout(
        c,
        "Trust root",
        None,
        html! {
            @for v in versions.iter().rev() {
                @let d = &v.payload;
                section aria-labelledby=(format!("v{}", v.index)) {
                    h2 id=(format!("v{}", v.index)) { "Version " (d["root_version"]) @if std::ptr::eq(v, versions.last().unwrap_or(v)) { " (in force)" } }
                    p { a href=(c.link(&format!("/entries/{}", v.index))) { "Entry #" (v.index) } ", signed by " (v.signers.join(", ")) "." }
                    h3 { "Principals" }
                    table {
                        thead { tr { th scope="col" { "Principal" } th scope="col" { "Roles" } th scope="col" { "Keys" } th scope="col" { "Model keys" } } }
                        tbody {
                            @if let Some(p) = d["principals"].as_object() {
                                @for (id, p) in p { tr {
                                    td { (id) }
                                    td { (p["roles"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
                                    td { (p["keys"].as_array().map_or(0, Vec::len)) }
                                    td { (p["model_keys"].as_array().map_or(0, Vec::len)) }
                                } }
                            }
                        }
                    }
                    h3 { "Thresholds" }
                    @let th = &d["thresholds"];
                    dl class="facts" {
                        dt { "Trust-root rotation (root)" } dd { (th["root"]) }
                        dt { "Model registration" } dd { (th["model"]) }
                        dt { "Approval: low / medium / high / critical" } dd { (th["approval"]["low"]) " / " (th["approval"]["medium"]) " / " (th["approval"]["high"]) " / " (th["approval"]["critical"]) }
                        dt { "Revocation" } dd { (th["revocation"]) }
                        dt { "Exception" } dd { (th["exception"]) }
                        dt { "Policy set" } dd { (th["policy"]) }
                        dt { "Node enrollment" } dd { (th["enrollment"]) }
                    }
                    h3 { "Witnesses and freshness" }
                    dl class="facts" {
                        dt { "Witnesses" } dd { @if d["witnesses"].as_array().is_none_or(Vec::is_empty) { "none" } @else { @for w in d["witnesses"].as_array().into_iter().flatten() { code { (w.as_str().unwrap_or("")) } " " } } }
                        dt { "Witness quorum" } dd { (d["witness_quorum"]) }
                        dt { "Max staleness" } dd { (d["freshness"]["max_staleness_seconds"]) " s" }
                        dt { "Anchor max age" } dd { (d["freshness"]["anchor_max_age_seconds"]) " s" }
                        dt { "Authority log key" } dd { code { (d["authority"]["log"].as_str().unwrap_or("")) } }
                    }
                }
            }
        },
    )
}

/// Entries `from..to`, newest first, summarized (read from the store).
fn summaries(c: &Console, from: u64, to: u64) -> Vec<(u64, crate::index::EntrySummary)> {
    let Ok(bytes) = c.authority.entries(from, to) else {
        return Vec::new();
    };
    let Ok(index) = c.index.lock() else {
        return Vec::new();
    };
    let mut rows: Vec<_> = bytes
        .iter()
        .enumerate()
        .map(|(k, b)| (from + k as u64, index.summarize(from + k as u64, b)))
        .collect();
    rows.reverse();
    rows
}

pub fn entries(c: &Console, from: Option<u64>) -> Markup {
    let size = c.authority.served.read().map_or(0, |s| s.size);
    let top = from.map_or(size, |f| f.saturating_add(1).min(size));
    let rows = summaries(c, top.saturating_sub(PAGE), top);
    let last = rows.last().map_or(0, |r| r.0);
    let first = rows.first().map_or(0, |r| r.0);
    layout(
        c,
        "Governance log",
        None,
        html! {
            p { (size) " entries, newest first. Each links to its decoded entry and its inclusion proof." }
            (entry_table(c, &rows))
            nav aria-label="Pages" class="pager" {
                @if first + 1 < size { a href=(c.link(&format!("/entries?from={}", (first + PAGE).min(size - 1)))) { "Newer" } " " }
                @if last > 0 { a href=(c.link(&format!("/entries?from={}", last - 1))) { "Older" } }
            }
        },
    )
}

pub fn entry(c: &Console, i: u64) -> Result<Markup, Miss> {
    let size = c.authority.served.read().map_or(0, |s| s.size);
    if i >= size {
        return Err(Miss(StatusCode::NOT_FOUND, format!("no entry {i}: the log has {size}")));
    }
    let bytes = c
        .authority
        .entries(i, i + 1)
        .map_err(|e| Miss(StatusCode::SERVICE_UNAVAILABLE, format!("reading entry {i}: {e}")))?
        .pop()
        .unwrap_or_default();
    let summary = c.index.lock().ok().map(|x| x.summarize(i, &bytes));
    let payload = Envelope::parse(&bytes)
        .ok()
        .and_then(|e| serde_json::from_slice::<Value>(&e.payload).ok())
        .unwrap_or(Value::Null);
    let pretty = serde_json::to_string_pretty(&payload).unwrap_or_default();
    Ok(layout(
        c,
        &format!("Entry {i}"),
        None,
        html! {
            dl class="facts" {
                dt { "Type" } dd { (summary.as_ref().map_or("", |s| s.kind.as_str())) }
                dt { "Signed by" } dd { (summary.as_ref().map(|s| s.signers.join(", ")).unwrap_or_default()) }
                dt { "Inclusion proof" } dd { a href=(c.link(&format!("/api/v1/tlog-proof/{i}"))) { "C2SP tlog-proof against the latest checkpoint" }
                    " · " a href=(c.link(&format!("/proof?index={i}"))) { "verify it in your browser" } }
                dt { "Raw entry" } dd { a href=(c.link(&format!("/api/v1/entries/{i}"))) { "DSSE envelope (JSON)" } }
            }
            h2 { "Payload" }
            pre class="payload" { (pretty) }
            nav aria-label="Entries" class="pager" {
                @if i > 0 { a href=(c.link(&format!("/entries/{}", i - 1))) { "Previous" } " " }
                @if i + 1 < size { a href=(c.link(&format!("/entries/{}", i + 1))) { "Next" } }
            }
        },
    ))
}

pub fn health(c: &Console) -> Markup {
    let state = c.authority.state();
    let t = now();
    let nodes = node_health(c, &state, &placements(c), t);
    let size = c.authority.served.read().map_or(0, |s| s.size);
    let max = state.trust_root().map_or(30, |r| r.doc.freshness.max_staleness_seconds);
    layout(
        c,
        "Health",
        Some("health"),
        html! {
            p { "The authority's log is at " span id="authority-size" { (size) } " entries; the trust root's staleness bound is " (max) " s. This page refreshes twice a second with JavaScript, or on reload." }
            table id="nodes" {
                thead { tr {
                    th scope="col" { "Node" } th scope="col" { "Status" } th scope="col" { "Last heartbeat" }
                    th scope="col" { "Sync lag" } th scope="col" { "Staleness" } th scope="col" { "Models" }
                    th scope="col" { "Lineage log" } th scope="col" { "Last anchor" }
                } }
                tbody {
                    @for n in &nodes {
                        tr data-node=(n.id) {
                            td { (n.id) br; a href=(c.link(&format!("/lineage?node={}", urlencode(&n.id)))) { "its calls" } }
                            td class="status" { span class={"state " (n.status)} { (n.status) } }
                            td class="heartbeat" { @if let Some(a) = n.heartbeat_age { (age(a)) " ago" } @else { "never" } }
                            td class="lag" { @if let Some(v) = n.verified_size { (size.saturating_sub(v)) " entries" } }
                            td class="staleness" { @if let Some(s) = n.staleness { (s) " s of " (max) } }
                            td class="models" {
                                @for (name, v) in &n.models {
                                    div { (name) ": " (state_cell(v)) " · step " (v["lifecycle_step_number"].as_u64().unwrap_or(0)) " " (v["lifecycle_step"].as_str().unwrap_or("")) }
                                }
                            }
                            td class="lineage" { @if let Some(l) = n.lineage_size { (l) " lineage records" } }
                            td class="anchor" { @if let Some((s, i)) = n.anchor { "size " (s) " at " a href=(c.link(&format!("/entries/{i}"))) { "#" (i) } } }
                        }
                    }
                }
            }
            @if nodes.is_empty() { p { "No node is enrolled." } }
            section aria-labelledby="charts" {
                h2 id="charts" { "Recent activity" }
                p { "Drawn from the heartbeats the authority keeps (one sample per node every 10 s, an hour of them); each chart spans the samples held. Without JavaScript, the figures are in "
                    a href=(c.link("/health.json")) { "health.json" } "." }
                div class="charts" {
                    @for (id, name) in [("calls", "Calls per second"), ("denials", "Denials per second, by reason"), ("contained", "Models contained"), ("lag", "Sync lag (entries)")] {
                        figure {
                            figcaption { (name) }
                            svg id={"chart-" (id)} class="chart" viewBox="0 0 600 180" role="img" aria-label=(name) {}
                            ul class="legend" aria-label={"Series of " (name)} {}
                        }
                    }
                }
            }
        },
    )
}

/// The dashboard's data: each node's row and its hour of samples.
pub fn health_json(c: &Console) -> Value {
    let state = c.authority.state();
    let t = now();
    let size = c.authority.served.read().map_or(0, |s| s.size);
    let placements = placements(c);
    let nodes = node_health(c, &state, &placements, t);
    let history = c.index.lock().map(|i| i.history.clone()).unwrap_or_default();
    let (serving, contained) = counts(&state, &placements);
    json!({
        "time": t,
        "size": size,
        "models": {"registered": state.models.len(), "serving": serving, "contained": contained},
        "nodes": nodes.iter().map(|n| json!({
            "id": n.id, "status": n.status, "heartbeat_age": n.heartbeat_age,
            "verified_size": n.verified_size, "lag": n.verified_size.map(|v| size.saturating_sub(v)),
            "staleness": n.staleness, "contained": n.contained, "lineage_size": n.lineage_size,
            "anchor": n.anchor.map(|(s, i)| json!({"size": s, "index": i})),
            "models": n.models.iter().map(|(k, v)| json!({"name": k, "state": v["state"], "reason": v["reason"],
                "decision": v["decision"], "step": v["lifecycle_step"], "step_number": v["lifecycle_step_number"]})).collect::<Vec<_>>(),
            "history": history.get(&n.id).map(|h| h.iter().map(|s| json!({
                "time": s.time, "requests": s.counters.get("requests").copied().unwrap_or(0),
                "denials": s.counters.iter().filter_map(|(k, v)| Some((k.strip_prefix("denied:")?.to_owned(), json!(v)))).collect::<serde_json::Map<String, Value>>(),
                "contained": s.contained, "lag": s.checkpoint_size.map(|v| size.saturating_sub(v)),
            })).collect::<Vec<_>>()).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    })
}

/// What the proof viewer starts from: the keys it trusts (and where they
/// came from), and a proof and its entry when one was asked for.
pub struct ViewerInput {
    /// The log's verifier key.
    pub log_key: String,
    /// The witnesses' verifier keys.
    pub witnesses: Vec<String>,
    /// How many witnesses must have cosigned.
    pub quorum: u64,
    /// Where the keys came from, said to the person.
    pub source: String,
    /// A tlog-proof or checkpoint to verify (may be empty).
    pub proof: String,
    /// The entry the proof is for (may be empty).
    pub entry: String,
    /// The pinned trust root (the log's entry 0) lineage proofs are checked against.
    pub trust_root: String,
}

/// The keys of the trust root in force, with where they came from.
pub fn viewer_input(c: &Console, from: &str) -> ViewerInput {
    let state = c.authority.state();
    let root = state.trust_root();
    let pinned = c
        .authority
        .entries(0, 1)
        .ok()
        .and_then(|mut e| e.pop())
        .unwrap_or_default();
    ViewerInput {
        log_key: root.map(|r| r.log_key.to_string()).unwrap_or_default(),
        witnesses: root
            .map(|r| r.witness_keys.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        quorum: root.map_or(0, |r| r.doc.witness_quorum),
        source: match root {
            Some(r) => format!(
                "These keys are prefilled from trust-root version {} and the trust root below from the log's entry 0 \
                 (SHA-256 {}), as {from}: trusting them trusts that server. To trust no server, replace them with \
                 keys and the trust root you obtained yourself (the trust root your organisation pinned).",
                r.doc.root_version,
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&pinned))
            ),
            None => "No trust root is in force here yet: paste the log's verifier key you trust.".to_owned(),
        },
        proof: String::new(),
        entry: String::new(),
        trust_root: String::from_utf8_lossy(&pinned).into_owned(),
    }
}

/// The viewer's form and results: the same markup in the console page and
/// in the downloadable file.
fn viewer_body(v: &ViewerInput) -> Markup {
    html! {
        p { "Paste or drop a " strong { "lineage proof" } " (the JSON proof of a call, checked against the trust root below), a C2SP "
            strong { "tlog-proof" } " (with the entry it proves) or a signed " strong { "checkpoint" } ". "
            "Every check runs in this browser with WebCrypto (SHA-256, Ed25519, ECDSA); the page makes no request to any server." }
        p id="status" role="status" { "This viewer needs JavaScript: the verification runs in your browser, not on a server." }
        form id="viewer" class="viewer" {
            div {
                label for="proof" { "Proof or checkpoint" }
                textarea id="proof" name="proof" rows="12" spellcheck="false" { (v.proof) }
                label for="proof-file" { "…or a file" }
                input id="proof-file" type="file";
            }
            div {
                label for="entry" { "The entry the tlog-proof is for (its exact bytes)" }
                textarea id="entry" name="entry" rows="4" spellcheck="false" { (v.entry) }
                label for="entry-file" { "…or a file" }
                input id="entry-file" type="file";
                label for="leafhash" { "…or its leaf hash (64 hex digits)" }
                input id="leafhash" name="leafhash" size="70" spellcheck="false";
            }
            fieldset {
                legend { "Keys you trust" }
                p class="hint" id="keysource" { (v.source) }
                label for="logkey" { "The log's verifier key" }
                input id="logkey" name="logkey" size="90" spellcheck="false" value=(v.log_key);
                label for="witnesses" { "Witness verifier keys (one per line)" }
                textarea id="witnesses" name="witnesses" rows="3" spellcheck="false" { (v.witnesses.join("\n")) }
                label for="quorum" { "Witness quorum (empty: all of them)" }
                input id="quorum" name="quorum" type="number" min="0" value=(v.quorum);
                label for="trustroot" { "For a lineage proof: the pinned trust root (the governance log's entry 0, "
                    code { "trust-root.dsse.json" } ")" }
                textarea id="trustroot" name="trustroot" rows="3" spellcheck="false" { (v.trust_root) }
                label for="trustroot-file" { "…or a file" }
                input id="trustroot-file" type="file";
            }
            div { button type="submit" { "Verify" } }
        }
        h2 { "Checks" }
        ol id="checks" aria-live="polite" {}
        p id="verdict" {}
    }
}

/// The proof viewer in the console, prefilled with entry `index`'s proof
/// when asked.
pub fn proof_viewer(c: &Console, index: Option<u64>, lineage: Option<(String, u64)>) -> Result<Markup, Miss> {
    let mut v = viewer_input(c, "served by this console");
    if let Some((node, i)) = lineage {
        use modelgate_authority::proof::ProofUnavailable as P;
        let p = modelgate_authority::proof::full_proof(&c.authority, &node, i).map_err(|e| match e {
            P::NotFound(m) => Miss(StatusCode::NOT_FOUND, m),
            P::NotYet(m) => Miss(StatusCode::CONFLICT, m),
            P::Store(m) => Miss(StatusCode::SERVICE_UNAVAILABLE, m),
        })?;
        v.proof = serde_json::to_string_pretty(&p).unwrap_or_default();
    }
    if let Some(i) = index {
        let proof = c
            .authority
            .tlog_proof(i)
            .map_err(|e| Miss(StatusCode::SERVICE_UNAVAILABLE, format!("proving entry {i}: {e}")))?
            .ok_or_else(|| Miss(StatusCode::NOT_FOUND, format!("no entry {i} in the served log")))?;
        let entry = c
            .authority
            .entries(i, i + 1)
            .map_err(|e| Miss(StatusCode::SERVICE_UNAVAILABLE, format!("reading entry {i}: {e}")))?
            .pop()
            .unwrap_or_default();
        v.proof = String::from_utf8_lossy(&proof).into_owned();
        v.entry = String::from_utf8_lossy(&entry).into_owned();
    }
    Ok(layout_with_scripts(
        c,
        "Proof viewer",
        html! {
            (viewer_body(&v))
            p { a href=(c.link("/proof/viewer.html")) download="modelgate-proof-viewer.html" { "Download this viewer" }
                " as one self-contained HTML file: open it from disk, with the network off, and it verifies the same." }
        },
    ))
}

/// The viewer as one self-contained HTML file: its style and scripts inline,
/// allowed by their hashes in its own Content-Security-Policy, which also
/// forbids every request (`default-src 'none'`, `connect-src 'none'`).
pub fn viewer_file(c: &Console) -> String {
    let mut v = viewer_input(c, "served by the console you downloaded this file from");
    v.source = format!("{} (downloaded {})", v.source, utc(now()));
    let css = crate::CSS;
    let js = format!("{}\n{}\n{}", crate::VERIFY_JS, crate::LINEAGE_JS, crate::VIEWER_JS);
    let csp = format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; connect-src 'none'; img-src 'none'; \
         form-action 'none'; base-uri 'none'",
        crate::csp_hash(&js),
        crate::csp_hash(css)
    );
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta http-equiv="Content-Security-Policy" content=(csp);
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "modelgate proof viewer" }
                style { (maud::PreEscaped(css)) }
            }
            body {
                main id="main" {
                    h1 { "modelgate proof viewer" }
                    (viewer_body(&v))
                }
                script { (maud::PreEscaped(&js)) }
            }
        }
    }
    .into_string()
}

pub use crate::lineage_pages::{lineage_explorer, lineage_record, ExplorerQuery};

#[cfg(test)]
mod tests {
    use super::short;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_short_digest_is_a_prefix_of_at_most_16_characters_whatever_a_node_sent(d in any::<String>()) {
            let s = short(&d);
            prop_assert!(d.starts_with(s));
            prop_assert_eq!(s.chars().count(), d.chars().count().min(16));
        }
    }
}
