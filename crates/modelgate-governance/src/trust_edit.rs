//! Drafting the next trust-root version: the edits `modelgate trust edit`
//! makes to the document in force, checked as a trust root on its own
//! before anyone signs it. Pure: the caller reads the keys and writes the
//! draft.

use serde_json::{json, Value};

use crate::error::GovernanceError;

/// A principal added (or replaced).
#[derive(Clone, Debug, Default)]
pub struct PrincipalEdit {
    /// Its id.
    pub id: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its governance keys: Ed25519 public keys as SPKI PEM (what
    /// `modelgate keygen --algorithm ed25519` writes) or base64 of 32 bytes.
    pub keys: Vec<String>,
    /// Its model-signing keys (PEM).
    pub model_keys: Vec<String>,
}

/// The edits of one draft.
#[derive(Clone, Debug, Default)]
pub struct TrustRootEdit {
    /// The document is already a draft of the next version: keep its version.
    pub amend: bool,
    /// Principals removed.
    pub remove: Vec<String>,
    /// A principal added or replaced.
    pub principal: Option<PrincipalEdit>,
    /// Thresholds set, each `NAME=N` (`approval.TIER=N` for a tier).
    pub thresholds: Vec<String>,
    /// Witness verifier keys added.
    pub witnesses: Vec<String>,
    /// The witness quorum.
    pub witness_quorum: Option<u64>,
    /// A keyless identity added to a principal (made a model signer; created
    /// with that role alone when it does not exist).
    pub keyless: Option<(String, crate::KeylessIdentity)>,
    /// The Sigstore trusted root keyless signers are verified against (a
    /// TrustedRoot or ClientTrustConfig document); absent, the embedded one.
    pub sigstore_root: Option<Value>,
}

fn bad(m: impl Into<String>) -> GovernanceError {
    GovernanceError::Edit(m.into())
}

/// Add `identity` to principal `id`'s keyless signers, with the
/// model-signer role; a new principal holds that role alone.
fn keyless_signer(doc: &mut Value, id: &str, identity: &crate::KeylessIdentity) -> Result<(), GovernanceError> {
    identity
        .to_oms()
        .map_err(|e| bad(format!("--add-keyless-signer {id}: {e}")))?;
    let p = &mut doc["principals"][id];
    if p.is_null() {
        *p = json!({"roles": ["model-signer"], "keys": [], "model_keys": []});
    }
    let roles = p["roles"]
        .as_array_mut()
        .ok_or_else(|| bad(format!("principal {id} has no roles list")))?;
    if !roles.iter().any(|r| r == "model-signer") {
        roles.push(json!("model-signer"));
    }
    let entry = serde_json::to_value(identity).map_err(|e| bad(e.to_string()))?;
    match p["keyless"].as_array_mut() {
        Some(list) if list.contains(&entry) => return Err(bad(format!("{id} already has this keyless identity"))),
        Some(list) => list.push(entry),
        None => p["keyless"] = json!([entry]),
    }
    Ok(())
}

/// A governance key as the trust root holds it (base64 of the 32 bytes),
/// from SPKI PEM or base64 already.
fn governance_key(k: &str) -> Result<String, GovernanceError> {
    use base64::Engine as _;
    use ed25519_dalek::pkcs8::DecodePublicKey;
    if !k.trim_start().starts_with("-----BEGIN") {
        return Ok(k.trim().to_owned());
    }
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(k)
        .map_err(|e| bad(format!("not an Ed25519 public key ({e})")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(key.as_bytes()))
}

/// Apply `edit` to `doc` (the trust root in force, or a draft with
/// `amend`): the draft and its version. Refused, naming what, when an edit
/// does not apply ([`GovernanceError::Edit`]) or the result is not a valid
/// trust root ([`GovernanceError::TrustRoot`]).
pub fn edit_trust_root(mut doc: Value, edit: &TrustRootEdit) -> Result<(Value, u64), GovernanceError> {
    let current = doc["root_version"]
        .as_u64()
        .ok_or_else(|| bad("the document has no root_version"))?;
    // An amended draft already carries the next version.
    let version = if edit.amend { current.saturating_sub(1) } else { current } + 1;
    doc["root_version"] = json!(version);
    for id in &edit.remove {
        if doc["principals"].as_object_mut().and_then(|p| p.remove(id)).is_none() {
            return Err(bad(format!("no principal {id:?} to remove")));
        }
    }
    if let Some(p) = &edit.principal {
        let keys = p
            .keys
            .iter()
            .map(|k| governance_key(k))
            .collect::<Result<Vec<_>, _>>()?;
        doc["principals"][&p.id] = json!({"roles": p.roles, "keys": keys, "model_keys": p.model_keys});
    }
    if let Some((id, identity)) = &edit.keyless {
        keyless_signer(&mut doc, id, identity)?;
    }
    if let Some(root) = &edit.sigstore_root {
        let root = match root.get("trustedRoot") {
            Some(inner) => inner.clone(),
            None => root.clone(),
        };
        doc["sigstore_trusted_root"] = root;
    }
    for t in &edit.thresholds {
        let (name, n) = t
            .split_once('=')
            .ok_or_else(|| bad(format!("threshold {t:?}: write NAME=N")))?;
        let n: u64 = n
            .parse()
            .map_err(|_| bad(format!("threshold {t:?}: N must be a number")))?;
        let slot = match name.split_once('.') {
            Some(("approval", tier)) => &mut doc["thresholds"]["approval"][tier],
            _ => &mut doc["thresholds"][name],
        };
        if slot.is_null() {
            return Err(bad(format!("unknown threshold {name:?}")));
        }
        *slot = json!(n);
    }
    if let Some(w) = doc["witnesses"].as_array_mut() {
        w.extend(edit.witnesses.iter().map(|v| json!(v)));
    }
    if let Some(q) = edit.witness_quorum {
        doc["witness_quorum"] = json!(q);
    }
    // The new document on its own, before anyone signs it.
    let invalid = |m: String| GovernanceError::TrustRoot(m);
    let typed: crate::TrustRootDoc =
        serde_json::from_value(doc.clone()).map_err(|e| invalid(format!("the edited trust root: {e}")))?;
    crate::TrustRoot::from_doc(typed).map_err(|e| invalid(format!("the edited trust root is invalid: {e}")))?;
    Ok((doc, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note_key(t: modelgate_tlog::KeyType) -> String {
        modelgate_tlog::SignerKey::from_seed("x.example/log", t, &[3; 32])
            .unwrap()
            .verifier()
            .to_string()
    }

    fn root() -> Value {
        let public = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, public.as_bytes());
        json!({"type": "trust-root", "version": 1, "root_version": 1,
            "principals": {"root-1": {"roles": ["root"], "keys": [key], "model_keys": []}},
            "thresholds": {"root": 1, "model": 1, "approval": {"low": 1, "medium": 1, "high": 2, "critical": 2},
                           "revocation": 1, "exception": 1, "policy": 1, "enrollment": 1},
            "authority": {"log": note_key(modelgate_tlog::KeyType::Ed25519), "cosigner": note_key(modelgate_tlog::KeyType::CosignatureV1)},
            "witnesses": [], "witness_quorum": 0,
            "freshness": {"max_staleness_seconds": 30, "anchor_max_age_seconds": 60}})
    }

    #[test]
    fn a_keyless_signer_is_a_model_signer_under_the_named_sigstore_root() {
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../modelgate-oms/tests/data/keyless/trusted_root.json"
        );
        let sigstore: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
        let identity = crate::KeylessIdentity {
            issuer: "https://accounts.example.com".into(),
            identity: Some("signer@example.com".into()),
            identity_regexp: None,
        };
        let e = TrustRootEdit {
            keyless: Some(("ci-signer".into(), identity.clone())),
            sigstore_root: Some(sigstore.clone()),
            ..Default::default()
        };
        let (doc, _) = edit_trust_root(root(), &e).unwrap();
        assert_eq!(doc["principals"]["ci-signer"]["roles"], json!(["model-signer"]));
        assert_eq!(doc["sigstore_trusted_root"], sigstore);
        // The same identity twice, or a malformed one, does not apply.
        assert!(matches!(
            edit_trust_root(
                doc.clone(),
                &TrustRootEdit {
                    amend: true,
                    keyless: Some(("ci-signer".into(), identity.clone())),
                    ..Default::default()
                }
            ),
            Err(GovernanceError::Edit(_))
        ));
        let both = crate::KeylessIdentity {
            identity_regexp: Some(".*".into()),
            ..identity.clone()
        };
        assert!(matches!(
            edit_trust_root(
                root(),
                &TrustRootEdit {
                    keyless: Some(("x".into(), both)),
                    ..Default::default()
                }
            ),
            Err(GovernanceError::Edit(_))
        ));
        // The registration of the keyless fixture names the keyless principal.
        let typed: crate::TrustRootDoc = serde_json::from_value(doc).unwrap();
        let tr = crate::TrustRoot::from_doc(typed).unwrap();
        let bundle = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../modelgate-oms/tests/data/keyless/keyless.sig"
        ))
        .unwrap();
        let (signers, _) = tr.model_signers(&bundle).unwrap();
        assert_eq!(signers.into_iter().collect::<Vec<_>>(), ["ci-signer"]);
        // Under the embedded public-good root the test instance proves nothing.
        let (public, _) = edit_trust_root(
            root(),
            &TrustRootEdit {
                keyless: Some(("ci-signer".into(), identity)),
                ..Default::default()
            },
        )
        .unwrap();
        let tr = crate::TrustRoot::from_doc(serde_json::from_value(public).unwrap()).unwrap();
        assert!(tr.model_signers(&bundle).is_err());
    }

    #[test]
    fn edits_apply_and_the_version_moves_once() {
        let e = TrustRootEdit {
            thresholds: vec!["approval.high=1".into(), "revocation=1".into()],
            ..Default::default()
        };
        let (doc, v) = edit_trust_root(root(), &e).unwrap();
        assert_eq!(v, 2);
        assert_eq!(doc["thresholds"]["approval"]["high"], 1);
        let again = TrustRootEdit {
            amend: true,
            ..Default::default()
        };
        assert_eq!(edit_trust_root(doc.clone(), &again).unwrap().1, 2);
        // A draft that is not a valid trust root: named as such.
        let e = TrustRootEdit {
            thresholds: vec!["root=5".into()],
            ..Default::default()
        };
        assert!(matches!(edit_trust_root(doc, &e), Err(GovernanceError::TrustRoot(_))));
    }

    #[test]
    fn a_bad_edit_is_refused_by_name() {
        for (e, says) in [
            (
                TrustRootEdit {
                    remove: vec!["nobody".into()],
                    ..Default::default()
                },
                "no principal \"nobody\"",
            ),
            (
                TrustRootEdit {
                    thresholds: vec!["root".into()],
                    ..Default::default()
                },
                "write NAME=N",
            ),
            (
                TrustRootEdit {
                    thresholds: vec!["root=x".into()],
                    ..Default::default()
                },
                "must be a number",
            ),
            (
                TrustRootEdit {
                    thresholds: vec!["nonesuch=1".into()],
                    ..Default::default()
                },
                "unknown threshold",
            ),
        ] {
            let err = edit_trust_root(root(), &e).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let mut no_version = root();
        no_version.as_object_mut().unwrap().remove("root_version");
        assert!(edit_trust_root(no_version, &TrustRootEdit::default()).is_err());
    }
}
