//! The governance half of `modelgate demo`: an embedded authority, the trust
//! root, approvals, a node's lifecycle, containment and an offline audit.

use std::path::Path;
use std::sync::Arc;

use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use modelgate_authority::service::Outcome;
use modelgate_authority::Authority;
use modelgate_governance::{
    to_canonical, ApprovalEntry, EntryPayload as _, Envelope, ModelEntry, NodeEnrollmentEntry, PolicySetEntry,
    RevocationEntry, RiskTier,
};
use modelgate_tlog::{CheckpointPolicy, KeyType, SignerKey};
use serde_json::{json, Value};

use crate::{fail, say, Failure};

pub(crate) fn b64(k: &SigningKey) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(k.verifying_key().as_bytes())
}

pub(crate) fn signed(v: &Value, keys: &[&dyn modelgate_signer::Signer]) -> Result<Vec<u8>, Failure> {
    Envelope::sign(&to_canonical(v).map_err(fail)?, keys).map_err(fail)
}

/// Submit in-process and wait for the durable answer.
fn submit(a: &Authority, entry: Vec<u8>) -> Result<Result<u64, String>, Failure> {
    let rx = a.submit(entry).map_err(fail)?;
    match rx.blocking_recv().map_err(fail)? {
        Outcome::Accepted { index, .. } => Ok(Ok(index)),
        Outcome::Refused(e) => Ok(Err(format!("{}: {}", e.rule, e.detail))),
        Outcome::Failed(m) | Outcome::SignerUnavailable(m) => Err(fail(m)),
        Outcome::NotSequencer => Err(fail("the demo authority is not the sequencer")),
    }
}

pub(crate) fn accepted(a: &Authority, entry: Vec<u8>, what: &str) -> Result<u64, Failure> {
    submit(a, entry)?.map_err(|e| Failure::Failed(format!("{what} was refused: {e}")))
}

pub fn run(dir: &Path, model: &Path, model_key_pem: &str, out: &mut dyn FnMut(&str)) -> Result<(), Failure> {
    let adir = dir.join("authority");
    let report = modelgate_authority::init(&adir, "demo.modelgate/governance").map_err(fail)?;
    let authority = Authority::open(&adir).map_err(fail)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(fail)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(fail)?;
    let url = format!("http://{}", listener.local_addr().map_err(fail)?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(modelgate_authority::serve(
        Arc::clone(&authority),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    say!(out, "6. started an authority at {url} (log key {})", report.log_vkey);

    let cast = governed(&authority, &report, model, model_key_pem, out)?;
    approve(&authority, &cast, out)?;
    let ndir = dir.join("node");
    let mut node = node_serves(&ndir, &url, &report, model, &cast.node_key, out)?;
    let pinned = std::fs::read(&report.trust_root).map_err(fail)?;
    gateway_calls(&runtime, &ndir, &url, &report, model, &pinned, out)?;
    contain(&authority, &mut node, model, &cast, out)?;
    audit(&report, &url, &pinned, out)?;
    let _ = stop.send(());
    runtime.block_on(server).map_err(fail)?.map_err(fail)?;
    Ok(())
}

/// Who takes part, once the trust root names them, and the model.
struct Cast {
    alice: SigningKey,
    bob: SigningKey,
    pipeline: SigningKey,
    node_key: SignerKey,
    digest: String,
}

/// 7–8. Trust root v2 naming the people, the model registered, a policy
/// published and the node enrolled.
fn governed(
    authority: &Authority,
    report: &modelgate_authority::InitReport,
    model: &Path,
    model_key_pem: &str,
    out: &mut dyn FnMut(&str),
) -> Result<Cast, Failure> {
    let key = || SigningKey::generate(&mut rand_core::OsRng);
    let (alice, bob, pipeline, padmin, nadmin) = (key(), key(), key(), key(), key());
    let root_pem = std::fs::read_to_string(&report.root_key).map_err(fail)?;
    let root = SigningKey::from_pkcs8_pem(&root_pem).map_err(fail)?;
    let doc = authority
        .state()
        .trust_root
        .as_ref()
        .map(|r| r.doc.clone())
        .ok_or_else(|| fail("no trust root"))?;
    let mut v = serde_json::to_value(&doc).map_err(fail)?;
    v["root_version"] = json!(2);
    for (id, role, k, model_keys) in [
        ("alice", "approver", &alice, vec![]),
        ("bob", "approver", &bob, vec![]),
        ("ml-pipeline", "model-signer", &pipeline, vec![model_key_pem.to_owned()]),
        ("policy-admin", "policy-admin", &padmin, vec![]),
        ("node-admin", "node-admin", &nadmin, vec![]),
    ] {
        v["principals"][id] = json!({"roles": [role], "keys": [b64(k)], "model_keys": model_keys});
    }
    accepted(authority, signed(&v, &[&root])?, "trust root v2")?;
    say!(out, "7. trust root v2, signed with the offline root key: approvers alice and bob, an ML pipeline, a policy admin, a node admin");

    let bundle = std::fs::read(model.join("model.sig")).map_err(fail)?;
    let digest = modelgate_oms::Bundle::parse(&bundle)
        .and_then(|b| modelgate_oms::decode_statement(&b.envelope.payload))
        .map(|m| crate::hex(&m.root_digest()))?;
    accepted(
        authority,
        ModelEntry::new("credit-scorer", "1.0", &bundle)
            .sign(&[&pipeline])
            .map_err(fail)?,
        "the model",
    )?;
    let policy =
        "@id(\"credit-only\") permit(principal, action, resource) when { context.scope like \"prod/credit/*\" };";
    accepted(
        authority,
        PolicySetEntry::new("demo", policy, "").sign(&[&padmin]).map_err(fail)?,
        "the policy",
    )?;
    let node_key = SignerKey::from_seed("demo-node/lineage", KeyType::Ed25519, &key().to_bytes()).map_err(fail)?;
    accepted(
        authority,
        NodeEnrollmentEntry::new("demo-node", &node_key.verifier().to_string(), vec!["prod/*".into()])
            .sign(&[&nadmin])
            .map_err(fail)?,
        "the node enrollment",
    )?;
    say!(
        out,
        "8. registered the model ({digest}), published a Cedar policy, enrolled node demo-node"
    );

    Ok(Cast {
        alice,
        bob,
        pipeline,
        node_key,
        digest,
    })
}

/// 9–11. Separation of duties and the high tier's threshold refuse, two
/// approvers approve.
fn approve(authority: &Authority, cast: &Cast, out: &mut dyn FnMut(&str)) -> Result<(), Failure> {
    let Cast {
        alice,
        bob,
        pipeline,
        digest,
        ..
    } = cast;
    let far = modelgate_runtime::Clock::now(&modelgate_runtime::SystemClock) + 86_400;
    let approval = |keys: &[&dyn modelgate_signer::Signer], ticket: &str| {
        ApprovalEntry::new(digest, vec!["prod/credit/*".into()], 0, far, RiskTier::High, ticket)
            .sign(keys)
            .map_err(fail)
    };
    match submit(authority, approval(&[pipeline], "CHG-1")?)? {
        Err(why) if why.starts_with("separation-of-duties") => {
            say!(
                out,
                "9. the ML pipeline tried to approve its own model: refused ({why})"
            )
        }
        other => return Err(Failure::Failed(format!("a self-approval was not refused: {other:?}"))),
    }
    match submit(authority, approval(&[alice], "CHG-2")?)? {
        Err(why) if why.starts_with("threshold") => {
            say!(out, "10. alice alone approved at the high tier: refused ({why})")
        }
        other => {
            return Err(Failure::Failed(format!(
                "a one-approver high-tier approval was not refused: {other:?}"
            )))
        }
    }
    let i = accepted(authority, approval(&[alice, bob], "CHG-3")?, "the approval")?;
    say!(
        out,
        "11. alice and bob approved it for prod/credit/* (log index {i}, durable)"
    );

    Ok(())
}

/// The node's own judgement of the model now: Serving, or why not.
fn check(
    node: &mut modelgate_runtime::Node,
    what: &str,
) -> Result<Result<modelgate_runtime::runtime::ServingModel, (String, String)>, Failure> {
    let t = node.now();
    let view = node
        .sync(t)
        .cloned()
        .map_err(|e| Failure::Failed(format!("{what}: sync failed: {e}")))?;
    Ok(node
        .lifecycle("credit-scorer", Some(&view), t)
        .map_err(|c| (format!("{:?}", c.contained().reason), c.contained().detail.clone())))
}

/// Step 12: The node, with its own key and configuration, takes the model
/// through the ten steps.
fn node_serves(
    ndir: &Path,
    url: &str,
    report: &modelgate_authority::InitReport,
    model: &Path,
    node_key: &SignerKey,
    out: &mut dyn FnMut(&str),
) -> Result<modelgate_runtime::Node, Failure> {
    std::fs::create_dir_all(ndir).map_err(fail)?;
    modelgate_node::files::write_new(
        &ndir.join("node.skey"),
        format!("{}\n", node_key.to_private_string()).as_bytes(),
        0o600,
        false,
    )
    .map_err(fail)?;
    let toml = format!(
        "node = \"demo-node\"\nauthority = \"{url}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = 30\ndata_dir = \"data\"\n\n[models.credit-scorer]\ndir = \"{}\"\nbundle = \"{}\"\n",
        report.trust_root.display(),
        model.display(),
        model.join("model.sig").display()
    );
    std::fs::write(ndir.join("node.toml"), toml).map_err(fail)?;
    let mut node = modelgate_runtime::Node::open(&ndir.join("node.toml"))?;
    match check(&mut node, "serving")? {
        Ok(s) => say!(out, "12. node demo-node verified the log itself and took the model through all ten lifecycle steps: Serving under approval {}", &s.basis[..16]),
        Err((r, d)) => return Err(Failure::Failed(format!("the approved model did not serve: {r}: {d}"))),
    }
    Ok(node)
}

/// 13–15. The same node as a gateway: a governed call, a refused scope, and
/// the call's proof verified offline.
fn gateway_calls(
    runtime: &tokio::runtime::Runtime,
    ndir: &Path,
    url: &str,
    report: &modelgate_authority::InitReport,
    model: &Path,
    pinned: &[u8],
    out: &mut dyn FnMut(&str),
) -> Result<(), Failure> {
    let upstream = spawn_scorer(runtime)?;
    let token = "demo-scoring-service-token";
    let token_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    std::fs::write(
        ndir.join("gateway.toml"),
        format!(
            "node = \"demo-node\"\nauthority = \"{url}\"\ntrust_root = \"{}\"\nkey = \"node.skey\"\nscopes = [\"prod/credit/scoring\"]\nmax_staleness_seconds = 30\ndata_dir = \"gateway-data\"\nanchor_interval_seconds = 1\nlisten = \"127.0.0.1:0\"\nupstream = \"{upstream}\"\n\n[models.credit-scorer]\ndir = \"{}\"\nbundle = \"{}\"\n\n[callers.scoring-service]\ntoken_sha256 = \"{token_sha}\"\nscopes = [\"prod/credit/scoring\", \"prod/risk/review\"]\n",
            report.trust_root.display(),
            model.display(),
            model.join("model.sig").display()
        ),
    )
    .map_err(fail)?;
    let (gw, gw_state) = spawn_gateway(&ndir.join("gateway.toml"), runtime)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !matches!(
        gw_state.snapshot().models.get("credit-scorer"),
        Some(modelgate_runtime::ModelStatus::Serving { .. })
    ) {
        if std::time::Instant::now() > deadline {
            return Err(Failure::Failed("the gateway's model never reached Serving".into()));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let agent = modelgate_http::agent(modelgate_http::Timeouts::DEMO_CALL);
    let call = |scope: &str| -> Result<(u16, Option<String>, Value), Failure> {
        let mut r = agent
            .post(&format!("{gw}/v1/chat/completions"))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .header("x-modelgate-scope", scope)
            .send(
                json!({"model": "credit-scorer", "messages": [{"role": "user", "content": "score applicant 42"}]})
                    .to_string(),
            )
            .map_err(fail)?;
        let id = r
            .headers()
            .get("x-modelgate-lineage-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = serde_json::from_str(&r.body_mut().read_to_string().map_err(fail)?).unwrap_or(Value::Null);
        Ok((r.status().as_u16(), id, body))
    };
    let (status, id, body) = call("prod/credit/scoring")?;
    let id = match (status, id) {
        (200, Some(id)) => id,
        other => return Err(Failure::Failed(format!("the governed call failed: {other:?} {body}"))),
    };
    say!(out,
        "13. scoring-service called credit-scorer through the node's gateway: 200 ({:?}), lineage record #{id} made durable before the call went upstream",
        body["choices"][0]["message"]["content"].as_str().unwrap_or("?")
    );
    let (status, _, body) = call("prod/risk/review")?;
    say!(
        out,
        "14. the same caller in prod/risk/review, a scope no approval covers: {status} {}",
        body["error"]["code"].as_str().unwrap_or("?")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let verified = loop {
        let mut r = agent
            .get(&format!("{gw}/lineage/{id}"))
            .header("Authorization", &format!("Bearer {token}"))
            .call()
            .map_err(fail)?;
        let proof = r.body_mut().read_to_vec().map_err(fail)?;
        if r.status().as_u16() == 200 {
            if let Ok(v) = modelgate_node::proof::verify_lineage_proof(&proof, pinned) {
                break v;
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(Failure::Failed(format!(
                "no verifiable proof for lineage record {id}: {}",
                String::from_utf8_lossy(&proof)
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    say!(out,
        "15. its proof, verified offline with the pinned trust root only: record #{id} and its completion are in the node's lineage log (size {}), anchored at governance index {}",
        verified.lineage_size, verified.anchor_index
    );
    gw_state.stop();

    Ok(())
}

/// 16–17. One bit of the weights changed, then a revocation: the node
/// contains the model each time.
fn contain(
    authority: &Authority,
    node: &mut modelgate_runtime::Node,
    model: &Path,
    cast: &Cast,
    out: &mut dyn FnMut(&str),
) -> Result<(), Failure> {
    let weights = model.join("weights.bin");
    let original = std::fs::read(&weights).map_err(fail)?;
    let mut flipped = original.clone();
    flipped[7] ^= 0x80;
    std::fs::write(&weights, &flipped).map_err(fail)?;
    match check(node, "tampered")? {
        Err((r, d)) if r == "UnauthorizedModification" => {
            say!(
                out,
                "16. one bit of weights.bin changed on the node: Contained {r} ({d})"
            )
        }
        other => {
            return Err(Failure::Failed(format!(
                "a tampered model was not contained: {:?}",
                other.map(|s| s.digest)
            )))
        }
    }
    std::fs::write(&weights, &original).map_err(fail)?;
    accepted(
        authority,
        RevocationEntry::new(&cast.digest, "drift found in monitoring", "INC-7")
            .sign(&[&cast.alice])
            .map_err(fail)?,
        "the revocation",
    )?;
    match check(node, "revoked")? {
        Err((r, d)) => say!(out, "17. alice revoked the model: the node contains it ({r}: {d})"),
        Ok(_) => return Err(Failure::Failed("a revoked model still served".into())),
    }

    Ok(())
}

/// Step 18: The authority audited offline: every tile and entry against its
/// signed checkpoint, the state refolded.
fn audit(
    report: &modelgate_authority::InitReport,
    url: &str,
    pinned: &[u8],
    out: &mut dyn FnMut(&str),
) -> Result<(), Failure> {
    let policy = CheckpointPolicy::new(
        modelgate_tlog::VerifierKey::parse(&report.log_vkey).map_err(fail)?,
        vec![],
        0,
    )
    .map_err(fail)?;
    let client = modelgate_runtime::HttpAuthority::new(url);
    let audit = modelgate_node::audit::remote_audit(
        &modelgate_runtime::authority::Reads(&client),
        Some(pinned),
        &policy,
        |_, _| {},
    )
    .map_err(|e| Failure::Failed(format!("the offline audit of the authority failed: {e}")))?;
    say!(
        out,
        "18. offline audit of the authority: every tile and entry against the signed checkpoint, the state refolded: authority: consistent ({} entries, state digest {})",
        audit.size,
        &audit.state_digest[..16]
    );

    Ok(())
}

/// The demo's inference server, in this process: it answers every chat call
/// with a fixed score (an inference server stands here for the model the
/// node governs). Its URL.
pub(crate) fn spawn_scorer(rt: &tokio::runtime::Runtime) -> Result<String, Failure> {
    use axum::routing::post;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .map_err(fail)?;
    let addr = listener.local_addr().map_err(fail)?;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|axum::Json(v): axum::Json<Value>| async move {
            axum::Json(json!({"id": "demo", "object": "chat.completion", "created": 0, "model": v["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "score: 712"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}))
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// A gateway and its node loop inside this process, on `rt`; the loop
/// runs until the returned state is told to stop.
pub(crate) fn spawn_gateway(
    config: &Path,
    rt: &tokio::runtime::Runtime,
) -> Result<(String, Arc<modelgate_runtime::Shared>), Failure> {
    let runtime = modelgate_runtime::Runtime::open(config, std::time::Duration::from_millis(100))?;
    let shared = runtime.shared();
    let gw = Arc::new(modelgate_runtime::gateway::gateway(Arc::clone(&shared))?);
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&shared.config.listen))
        .map_err(|e| Failure::Setup(format!("couldn't listen on {}: {e}", shared.config.listen)))?;
    let addr = listener.local_addr().map_err(fail)?;
    runtime.spawn(|_| {})?;
    rt.spawn(modelgate_runtime::gateway::serve(listener, gw, std::future::pending()));
    Ok((format!("http://{addr}"), shared))
}
