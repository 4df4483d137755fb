//! The writes: entries, pending approvals and node heartbeats. Each decides what it can on the request's head (cross-site, token, rate limit, enrolled node) before its body is read, then appends through the writer or passes the write on to the sequencer.

use super::*;

/// Approvals waiting for cosigners: who signed, how many more are needed.
pub(super) async fn pending_list(AxState(a): AxState<Shared>) -> Answer {
    Ok(Json(json!({"pending": a.pending.list(&a.state(), crate::service::now())})).into_response())
}

/// Post an approval short of its threshold (an approver's or admin's
/// token): kept, its signatures pooled with earlier copies; once they meet
/// the threshold it is submitted to the log (201 with its index).
pub(super) async fn pending_post(AxState(a): AxState<Shared>, peer: Peer, headers: HeaderMap, body: Body) -> Answer {
    cross_site(&headers)?;
    let Some(token) = bearer(&headers) else {
        return Err(ApiError::new(
            ErrorKind::MissingToken,
            "an Authorization: Bearer token is required",
        ));
    };
    may_submit(&a, token, "approval")?;
    let body = read_body(&a.caller_bodies, &peer, &headers, body, MAX_ENVELOPE_BYTES).await?;
    let a2 = Arc::clone(&a);
    let posted = blocking(move || a2.pending.post(&a2.state(), &body, crate::service::now())).await??;
    match posted {
        crate::pending::Posted::Pending(p) => Ok((StatusCode::ACCEPTED, Json(json!({"pending": p}))).into_response()),
        crate::pending::Posted::Complete(bytes) => write(&a, &headers, Bytes::from(bytes)).await,
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub(super) async fn submit(AxState(a): AxState<Shared>, peer: Peer, headers: HeaderMap, body: Body) -> Answer {
    cross_site(&headers)?;
    // Decided on the head: a token must be known before its body is read;
    // without one only node-signed entries are taken, rate-limited per
    // client and read within the strangers' budget.
    let token = bearer(&headers);
    // A token given here is known: the route's guard refused any other.
    let budget = match token {
        Some(_) => &a.caller_bodies,
        None => {
            rate_limited(&a, &peer)?;
            &a.stranger_bodies
        }
    };
    let body = read_body(budget, &peer, &headers, body, MAX_ENVELOPE_BYTES).await?;
    let kind = Envelope::parse(&body)
        .and_then(|env| {
            let v = parse_canonical(&env.payload)
                .map_err(|e| modelgate_governance::EntryError::Malformed(e.to_string()))?;
            Payload::decode(v)
        })
        .map_err(|e| ApiError::new(ErrorKind::MalformedEntry, e.to_string()))?
        .kind();
    // A node authenticates by its enrolled key: its anchors and reports are
    // accepted without a token because the fold accepts them only when
    // signed by that node's key. A token, if given, must still be valid.
    let node_signed = matches!(kind, "node-anchor" | "containment-report");
    match token {
        None if node_signed => {}
        None => {
            return Err(ApiError::new(
                ErrorKind::MissingToken,
                "an Authorization: Bearer token is required to submit",
            ))
        }
        Some(token) => may_submit(&a, token, kind)?,
    }
    write(&a, &headers, body.bytes().clone()).await
}

/// Append a checked submission here, or on a replica pass it to the sequencer.
pub(super) async fn write(a: &Shared, headers: &HeaderMap, body: Bytes) -> Answer {
    match a.sequencing.role() {
        crate::store::Role::Replica(_) => forward(a, headers, body).await,
        _ => append(a, body.to_vec()).await,
    }
}

/// Largest answer a replica passes back from the sequencer.
pub(super) const FORWARDED_ANSWER_MAX: u64 = 1 << 20;
/// How long a replica waits for a sequencer it can reach (a takeover under
/// way) before it answers 503.
pub(super) const FORWARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Why a write was not passed on.
pub(super) enum NotPassed {
    /// It never reached the sequencer (refused, unreachable): safe to send again.
    Undelivered(String),
    /// It may have reached it: not sent again, the client decides.
    Unanswered(String),
}

/// Send `body` to the sequencer at `url`: its status, Retry-After and body.
pub(super) async fn pass_on(
    a: &Shared,
    url: &str,
    auth: Option<String>,
    body: Bytes,
) -> Result<(u16, Option<String>, Vec<u8>), NotPassed> {
    let agent = a.forwarder.clone();
    let to = format!("{url}/api/v1/entries");
    blocking(move || {
        let mut req = agent
            .post(&to)
            .header("Content-Type", "application/json")
            .header(crate::api_error::FORWARDED_HEADER, "1");
        if let Some(t) = auth {
            req = req.header("Authorization", &t);
        }
        let mut r = req.send(&body[..]).map_err(|e| match &e {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => NotPassed::Undelivered(e.to_string()),
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                NotPassed::Undelivered(e.to_string())
            }
            _ => NotPassed::Unanswered(e.to_string()),
        })?;
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = r
            .body_mut()
            .with_config()
            .limit(FORWARDED_ANSWER_MAX)
            .read_to_vec()
            .map_err(|e| NotPassed::Unanswered(e.to_string()))?;
        Ok((r.status().as_u16(), retry, bytes))
    })
    .await
    .map_err(|e| NotPassed::Unanswered(e.to_string()))?
}

/// On a replica: pass a checked submission to the sequencer and its answer
/// back (201 with the index, or the sequencer's refusal), with the
/// sequencer named in `Modelgate-Sequencer`. While a takeover is under way
/// (no sequencer, or one that cannot be reached) it waits up to
/// [`FORWARD_PATIENCE`] — and appends itself if it wins the lease; then 503
/// with Retry-After. A request already passed on once is never passed on
/// again.
pub(super) async fn forward(a: &Shared, headers: &HeaderMap, body: Bytes) -> Answer {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let deadline = tokio::time::Instant::now() + FORWARD_PATIENCE;
    let mut why = "no authority holds the sequencer lease now (a takeover is under way)".to_owned();
    let mut named = None;
    while tokio::time::Instant::now() < deadline {
        let holder = match a.sequencing.role() {
            crate::store::Role::Replica(h) => h,
            _ => return append(a, body.to_vec()).await,
        };
        match holder {
            Some(h) if !h.url.is_empty() => {
                let url = h.url;
                if !a.sequencing.may_pass_to(&url) {
                    return Err(ApiError::new(
                        ErrorKind::NotSequencer { sequencer: None },
                        format!(
                            "this authority is a replica and the sequencer advertises {url}, which is not one of \
                             its --peer-url authorities: nothing was passed on"
                        ),
                    ));
                }
                if headers.contains_key(crate::api_error::FORWARDED_HEADER) {
                    return Err(ApiError::new(
                        ErrorKind::NotSequencer {
                            sequencer: Some(url.clone()),
                        },
                        format!("this authority is a replica too; submit to the sequencer at {url}"),
                    ));
                }
                match pass_on(a, &url, auth.clone(), body.clone()).await {
                    Ok((status, retry, bytes)) => {
                        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                        let mut r = (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
                        if let Some(v) = retry.and_then(|v| HeaderValue::from_str(&v).ok()) {
                            r.headers_mut().insert(header::RETRY_AFTER, v);
                        }
                        if let Ok(v) = HeaderValue::from_str(&url) {
                            r.headers_mut().insert(crate::api_error::SEQUENCER_HEADER, v);
                        }
                        return Ok(r);
                    }
                    Err(NotPassed::Undelivered(e)) => {
                        why = format!("the sequencer at {url} cannot be reached ({e})");
                        named = Some(url);
                    }
                    Err(NotPassed::Unanswered(e)) => {
                        return Err(ApiError::new(
                            ErrorKind::NotSequencer {
                                sequencer: Some(url.clone()),
                            },
                            format!(
                                "this authority is a replica and the sequencer at {url} did not answer ({e}); \
                                 the entry may or may not be in the log"
                            ),
                        ))
                    }
                }
            }
            Some(h) => why = format!("the sequencer ({}) has not advertised its URL yet", h.lease.holder),
            None => {}
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(ApiError::new(
        ErrorKind::NotSequencer { sequencer: named },
        format!("this authority is a replica and {why}; retry"),
    ))
}

/// Refused unless `token` names a role that may submit entries of `kind`.
pub(super) fn may_submit(a: &Authority, token: &str, kind: &str) -> Result<(), ApiError> {
    match a.tokens.check(token) {
        Ok(Some((role, _))) if role.may_submit(kind) => Ok(()),
        Ok(Some((role, _))) => Err(ApiError::new(
            ErrorKind::WrongRole,
            format!("a {role:?} token may not submit {kind} entries"),
        )),
        Ok(None) => Err(ApiError::new(ErrorKind::UnknownToken, "the bearer token is not known")),
        Err(e) => Err(ApiError::internal("tokens", e.to_string())),
    }
}

/// Queue `entry` for the writer and answer once it is durable (201 with its
/// index) or refused.
pub(super) async fn append(a: &Authority, entry: Vec<u8>) -> Answer {
    let rx = a.submit(entry).map_err(|e| match e {
        NotQueued::Busy => ApiError::new(ErrorKind::Busy, e.message().to_string()),
        NotQueued::ShuttingDown | NotQueued::WriterStopped => {
            ApiError::new(ErrorKind::Unavailable, e.message().to_string())
        }
    })?;
    let outcome = rx
        .await
        .map_err(|_| ApiError::new(ErrorKind::Unavailable, "the writer stopped before answering"))?;
    match outcome {
        Outcome::Accepted { index, checkpoint } => Ok((
            StatusCode::CREATED,
            Json(json!({"index": index, "checkpoint": String::from_utf8_lossy(&checkpoint)})),
        )
            .into_response()),
        Outcome::Refused(e) => Err(ApiError::refused(&e)),
        Outcome::Failed(m) => Err(ApiError::new(
            ErrorKind::StoreUnavailable,
            format!("the store could not write; nothing was appended, retry: {m}"),
        )),
        Outcome::SignerUnavailable(m) => Err(ApiError::new(
            ErrorKind::SignerUnavailable,
            format!("the log key cannot sign; nothing was appended, retry: {m}"),
        )),
        Outcome::NotSequencer => Err(ApiError::new(
            ErrorKind::NotSequencer { sequencer: None },
            "this authority is no longer the sequencer; nothing was appended, retry",
        )),
    }
}

/// A node's write (a heartbeat, a lineage batch): it needs no token, so it
/// is rate-limited per client and its node must be enrolled, both decided on
/// the head; then its body is read within the strangers' budget. Returns
/// the body and the node's enrolled key.
pub(super) async fn node_write(
    a: &Authority,
    peer: &Peer,
    id: &str,
    headers: &HeaderMap,
    body: Body,
    max: usize,
) -> Result<(modelgate_http::Held, String), ApiError> {
    rate_limited(a, peer)?;
    let key = node_key(a, id)?;
    Ok((read_body(&a.stranger_bodies, peer, headers, body, max).await?, key))
}

/// Heartbeat clock window: how far a node's clock may be behind or ahead.
pub(super) const HEARTBEAT_WINDOW_SECONDS: u64 = 300;

/// A node's heartbeat: a note signed by its enrolled key (see
/// `modelgate_governance::heartbeat`). Kept in memory, latest per node.
pub(super) async fn heartbeat(
    AxState(a): AxState<Shared>,
    peer: Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    use modelgate_governance::heartbeat::verify_heartbeat;
    let (body, key) = node_write(&a, &peer, &id, &headers, body, MAX_ENVELOPE_BYTES).await?;
    let key = modelgate_tlog::VerifierKey::parse(&key)
        .map_err(|e| ApiError::internal("internal", format!("enrolled key: {e}")))?;
    if std::str::from_utf8(&body).is_err() {
        return Err(ApiError::new(
            ErrorKind::BadText,
            "a heartbeat is a signed note: UTF-8 text",
        ));
    }
    let hb =
        verify_heartbeat(&body, &id, &key).map_err(|e| ApiError::new(ErrorKind::HeartbeatInvalid, e.to_string()))?;
    let t = now();
    if hb.time + HEARTBEAT_WINDOW_SECONDS < t || hb.time > t + HEARTBEAT_WINDOW_SECONDS {
        return Err(ApiError::new(
            ErrorKind::HeartbeatTime,
            format!(
                "heartbeat time {} is not within {HEARTBEAT_WINDOW_SECONDS} s of {t}",
                hb.time
            ),
        ));
    }
    let Ok(mut beats) = a.heartbeats.lock() else {
        return Err(ApiError::internal("internal", "lock poisoned"));
    };
    if let Some(prev) = beats.get(&id) {
        if hb.time <= prev.time {
            return Err(ApiError::new(
                ErrorKind::HeartbeatReplayed,
                format!(
                    "heartbeat time {} is not after the previous one ({})",
                    hb.time, prev.time
                ),
            ));
        }
    }
    beats.insert(id, hb);
    Ok(StatusCode::NO_CONTENT.into_response())
}
