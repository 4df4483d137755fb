//! Keys on a PKCS#11 token, through the `cryptoki` crate: Ed25519
//! (`CKM_EDDSA`) and ECDSA P-256/P-384 (`CKM_ECDSA` over a digest computed
//! here, the token's raw `r || s` returned as DER).
//!
//! The module comes from the URI's `module-path`, else the caller's
//! (`--pkcs11-module`), else `MODELGATE_PKCS11_MODULE`. The public key is
//! read from the token's public-key object of the same label or id, so
//! nothing but signatures ever comes out of it. One session per key, held
//! under a lock: a token serialises a session's operations anyway.

use std::path::Path;
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use der::Decode as _;
use sha2::Digest as _;

use crate::uri::Pkcs11Uri;
use crate::{Algorithm, SignError, Signer};

/// The environment variable naming the PKCS#11 module.
pub const MODULE_ENV: &str = "MODELGATE_PKCS11_MODULE";

const P256: &str = "1.2.840.10045.3.1.7";
const P384: &str = "1.3.132.0.34";
const ED25519: &str = "1.3.101.112";

/// A signing key on a token.
pub struct Pkcs11Key {
    uri: String,
    session: Mutex<Session>,
    key: ObjectHandle,
    algorithm: Algorithm,
    public: Vec<u8>,
    // The module stays loaded while the key lives (the session needs it).
    _module: Pkcs11,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("uri", &self.uri)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn pin_of(u: &Pkcs11Uri, uri: &str) -> Result<Option<AuthPin>, SignError> {
    if let Some(p) = &u.pin_value {
        return Ok(Some(AuthPin::new(p.clone().into())));
    }
    let Some(file) = &u.pin_source else { return Ok(None) };
    let text = std::fs::read_to_string(file).map_err(|e| SignError::Uri {
        uri: uri.to_owned(),
        why: format!("pin-source {file}: {e}"),
    })?;
    Ok(Some(AuthPin::new(
        text.trim_end_matches(['\n', '\r']).to_owned().into(),
    )))
}

impl Pkcs11Key {
    /// Open the key `uri` names, with `module` when the URI names none.
    pub fn open(uri: &str, module: Option<&Path>) -> Result<Self, SignError> {
        let u = Pkcs11Uri::parse(uri)?;
        let shown = Pkcs11Uri::redacted(uri);
        let module = u
            .module_path
            .clone()
            .or_else(|| module.map(|m| m.display().to_string()))
            .or_else(|| std::env::var(MODULE_ENV).ok())
            .ok_or_else(|| SignError::Uri {
                uri: shown.clone(),
                why: format!("no PKCS#11 module: give module-path in the URI, --pkcs11-module or {MODULE_ENV}"),
            })?;
        let failed = |why: String| SignError::Module {
            uri: shown.clone(),
            module: module.clone(),
            why,
        };
        let ctx = loaded(&module).map_err(failed)?;
        let not_found = |why: String| SignError::NotFound {
            uri: shown.clone(),
            why,
        };
        let slots = ctx.get_slots_with_token().map_err(|e| failed(e.to_string()))?;
        let slot = slots
            .into_iter()
            .find(|s| {
                let label_ok = u
                    .token
                    .as_ref()
                    .is_none_or(|t| ctx.get_token_info(*s).is_ok_and(|i| i.label().trim_end() == t.as_str()));
                label_ok && u.slot_id.is_none_or(|id| s.id() == id)
            })
            .ok_or_else(|| not_found("no token matches its token and slot-id".into()))?;
        let session = ctx.open_ro_session(slot).map_err(|e| failed(e.to_string()))?;
        if let Some(pin) = pin_of(&u, &shown)? {
            // Logins are per token and application: a second key on the
            // same token finds the user logged in already.
            // same token finds the user logged in already, and the token
            // does not check its PIN then: this process does, against the
            // PIN it logged in with.
            use secrecy::ExposeSecret as _;
            let digest: [u8; 32] = sha2::Sha256::digest(pin.expose_secret().as_bytes()).into();
            let login_failed = |why: String| SignError::Login {
                uri: shown.clone(),
                why,
            };
            let mut logins = LOGINS
                .lock()
                .map_err(|_| login_failed("a thread logging in panicked".into()))?;
            let known = (module.clone(), slot.id());
            match session.login(UserType::User, Some(&pin)) {
                Ok(()) => {
                    logins.retain(|(k, _)| *k != known);
                    logins.push((known, digest));
                }
                Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
                    if !logins.iter().any(|(k, d)| *k == known && *d == digest) {
                        return Err(login_failed(
                            "the token is logged in with another PIN than this one".into(),
                        ));
                    }
                }
                Err(e) => return Err(login_failed(e.to_string())),
            }
        }
        let find = |class: ObjectClass| -> Result<ObjectHandle, SignError> {
            let what = if class == ObjectClass::PRIVATE_KEY {
                "private key"
            } else {
                "public key"
            };
            let mut t = vec![Attribute::Class(class)];
            t.extend(u.object.as_ref().map(|o| Attribute::Label(o.as_bytes().to_vec())));
            t.extend(u.id.as_ref().map(|i| Attribute::Id(i.clone())));
            let found = session.find_objects(&t).map_err(|e| failed(e.to_string()))?;
            match found.as_slice() {
                [one] => Ok(*one),
                [] => Err(not_found(format!("no {what} object matches its object and id"))),
                _ => Err(not_found(format!(
                    "{} {what} objects match: name one (id=…)",
                    found.len()
                ))),
            }
        };
        let key = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let (algorithm, point) = public_key(&session, public).map_err(not_found)?;
        Ok(Self {
            uri: shown,
            session: Mutex::new(session),
            key,
            algorithm,
            public: point,
            _module: ctx,
        })
    }
}

/// SHA-256 of the PIN each (module, slot) was logged in with by this process.
static LOGINS: Mutex<Vec<(Token, [u8; 32])>> = Mutex::new(Vec::new());

/// A token as this process knows it: its module's path and its slot.
type Token = (String, u64);

/// The module at `path`, loaded and initialised once per process: a
/// module may be initialised only once, and every key on it shares it.
fn loaded(path: &str) -> Result<Pkcs11, String> {
    static MODULES: Mutex<Vec<(String, Pkcs11)>> = Mutex::new(Vec::new());
    let mut m = MODULES
        .lock()
        .map_err(|_| "a thread loading a module panicked".to_owned())?;
    if let Some((_, ctx)) = m.iter().find(|(p, _)| p == path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| e.to_string())?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| e.to_string())?;
    m.push((path.to_owned(), ctx.clone()));
    Ok(ctx)
}

/// The algorithm and public key of a token's public-key object.
fn public_key(session: &Session, public: ObjectHandle) -> Result<(Algorithm, Vec<u8>), String> {
    let attrs = session
        .get_attributes(
            public,
            &[AttributeType::KeyType, AttributeType::EcParams, AttributeType::EcPoint],
        )
        .map_err(|e| format!("reading the public key: {e}"))?;
    let (mut kind, mut params, mut point) = (None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => kind = Some(k),
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let params = params.ok_or("the public key has no CKA_EC_PARAMS")?;
    let point = point.ok_or("the public key has no CKA_EC_POINT")?;
    // CKA_EC_POINT is a DER OCTET STRING holding the point (some modules give it bare).
    let point = der::asn1::OctetString::from_der(&point).map_or(point, |o| o.as_bytes().to_vec());
    let curve = der::asn1::ObjectIdentifier::from_der(&params).map(|o| o.to_string());
    let algorithm = match (kind, curve.as_deref()) {
        (Some(KeyType::EC), Ok(P256)) => Algorithm::EcdsaP256Sha256,
        (Some(KeyType::EC), Ok(P384)) => Algorithm::EcdsaP384Sha384,
        (Some(KeyType::EC_EDWARDS), Ok(ED25519)) => Algorithm::Ed25519,
        // SoftHSM and others name the Edwards curve by a PrintableString.
        (Some(KeyType::EC_EDWARDS), Err(_)) if params.ends_with(b"edwards25519") => Algorithm::Ed25519,
        (k, c) => {
            return Err(format!(
                "an unsupported key ({k:?}, curve {c:?}): Ed25519, P-256 or P-384"
            ))
        }
    };
    let expected = match algorithm {
        Algorithm::Ed25519 => 32,
        Algorithm::EcdsaP256Sha256 => 65,
        Algorithm::EcdsaP384Sha384 => 97,
    };
    if point.len() != expected {
        return Err(format!("a public key of {} bytes for {algorithm:?}", point.len()));
    }
    Ok((algorithm, point))
}

impl Signer for Pkcs11Key {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let failed = |why: String| SignError::Sign {
            uri: self.uri.clone(),
            why,
        };
        let session = self.session.lock().map_err(|_| failed("a signer panicked".into()))?;
        let raw = |mechanism: &Mechanism, data: &[u8]| {
            session
                .sign(mechanism, self.key, data)
                .map_err(|e| failed(e.to_string()))
        };
        match self.algorithm {
            Algorithm::Ed25519 => {
                let sig = raw(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), message)?;
                if sig.len() != 64 {
                    return Err(failed(format!("an Ed25519 signature of {} bytes", sig.len())));
                }
                Ok(sig)
            }
            Algorithm::EcdsaP256Sha256 => {
                let rs = raw(&Mechanism::Ecdsa, &sha2::Sha256::digest(message))?;
                p256::ecdsa::Signature::from_slice(&rs)
                    .map(|s| s.to_der().as_bytes().to_vec())
                    .map_err(|e| failed(format!("the token's ECDSA signature: {e}")))
            }
            Algorithm::EcdsaP384Sha384 => {
                let rs = raw(&Mechanism::Ecdsa, &sha2::Sha384::digest(message))?;
                p384::ecdsa::Signature::from_slice(&rs)
                    .map(|s| s.to_der().as_bytes().to_vec())
                    .map_err(|e| failed(format!("the token's ECDSA signature: {e}")))
            }
        }
    }
}
