//! Keys on a PKCS#11 token, through the `cryptoki` crate: Ed25519
//! (`CKM_EDDSA`) and ECDSA P-256/P-384 (`CKM_ECDSA` over a digest computed
//! here, the token's raw `r || s` returned as DER).
//!
//! The module comes from the URI's `module-path`, else the caller's, else
//! the program's default ([`set_default_module`], from `--pkcs11-module`),
//! else `MODELGATE_PKCS11_MODULE`. The public key is
//! read from the token's public-key object of the same label or id, so
//! nothing but signatures ever comes out of it. Sessions are pooled: each
//! signature takes a logged-in session and gives it back, so concurrent
//! signers each have one and no signature opens one. A session that fails
//! (the token was removed) is dropped; the next signature logs in afresh,
//! and must find the same public key.

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
    target: Target,
    algorithm: Algorithm,
    public: Vec<u8>,
    // Sessions not signing now, each with its key's handle. A signer takes
    // one (or opens one when none is free) and gives it back: a thread that
    // signs again finds it, and concurrent signers do not queue on one.
    pool: Mutex<Vec<(Session, ObjectHandle)>>,
    // The module stays loaded while the key lives (the sessions need it).
    ctx: Pkcs11,
}

/// What the URI asks for, resolved: where to look again after a failure.
struct Target {
    module: String,
    token: Option<String>,
    slot_id: Option<u64>,
    object: Option<String>,
    id: Option<Vec<u8>>,
    pin: Option<AuthPin>,
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

/// The module used when a URI names none and the caller gave none: set
/// once by the program (`--pkcs11-module`, a node's `pkcs11_module`).
static DEFAULT_MODULE: Mutex<Option<String>> = Mutex::new(None);

/// Make `path` the module of every key whose URI names none.
pub fn set_default_module(path: &Path) {
    if let Ok(mut m) = DEFAULT_MODULE.lock() {
        *m = Some(path.display().to_string());
    }
}

impl Pkcs11Key {
    /// Open the key `uri` names, with `module` when the URI names none
    /// (then the default module, then `MODELGATE_PKCS11_MODULE`).
    pub fn open(uri: &str, module: Option<&Path>) -> Result<Self, SignError> {
        let u = Pkcs11Uri::parse(uri)?;
        let shown = Pkcs11Uri::redacted(uri);
        let module = u
            .module_path
            .clone()
            .or_else(|| module.map(|m| m.display().to_string()))
            .or_else(|| DEFAULT_MODULE.lock().ok().and_then(|m| m.clone()))
            .or_else(|| std::env::var(MODULE_ENV).ok())
            .ok_or_else(|| SignError::Uri {
                uri: shown.clone(),
                why: format!("no PKCS#11 module: give module-path in the URI, --pkcs11-module or {MODULE_ENV}"),
            })?;
        let ctx = loaded(&module).map_err(|why| SignError::Module {
            uri: shown.clone(),
            module: module.clone(),
            why,
        })?;
        let target = Target {
            pin: pin_of(&u, &shown)?,
            module,
            token: u.token,
            slot_id: u.slot_id,
            object: u.object,
            id: u.id,
        };
        let (session, key, public) = using(|| connect(&ctx, &target, &shown))?;
        let (algorithm, point) = using(|| public_key(&session, public)).map_err(|why| SignError::NotFound {
            uri: shown.clone(),
            why,
        })?;
        Ok(Self {
            uri: shown,
            target,
            algorithm,
            public: point,
            pool: Mutex::new(vec![(session, key)]),
            ctx,
        })
    }

    /// A session for one signature: a pooled one, or a new one (logging in
    /// again and finding the key again, as after the token came back). A
    /// new session must find the same public key: a token put back with
    /// another key under the same name signs nothing.
    fn session(&self) -> Result<(Session, ObjectHandle), SignError> {
        if let Some(pooled) = self.pool.lock().ok().and_then(|mut p| p.pop()) {
            return Ok(pooled);
        }
        let (session, key, public) = match using(|| connect(&self.ctx, &self.target, &self.uri)) {
            // A module lists its tokens when it is initialised: one put back
            // is seen only after initialising it again.
            Err(SignError::NotFound { .. }) if rescan(&self.ctx, &self.target.module) => {
                using(|| connect(&self.ctx, &self.target, &self.uri))?
            }
            r => r?,
        };
        match using(|| public_key(&session, public)) {
            Ok((a, p)) if a == self.algorithm && p == self.public => Ok((session, key)),
            Ok(_) => Err(SignError::NotFound {
                uri: self.uri.clone(),
                why: "the token now holds another key under this name".into(),
            }),
            Err(why) => Err(SignError::NotFound {
                uri: self.uri.clone(),
                why,
            }),
        }
    }

    /// The token's signature of `data`, raw. A session that fails is
    /// dropped, and the signature is tried once more on a new one (a token
    /// that was removed and put back); then the failure is the answer.
    fn raw(&self, mechanism: &Mechanism, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut last = None;
        for _ in 0..2 {
            let (session, key) = match self.session() {
                Ok(s) => s,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let signed = using(|| session.sign(mechanism, key, data));
            match signed {
                Ok(sig) => {
                    if let Ok(mut p) = self.pool.lock() {
                        p.push((session, key));
                    }
                    return Ok(sig);
                }
                Err(e) => {
                    // The others were opened on the same token: if it went
                    // away they are stale too.
                    using(|| {
                        drop(session);
                        if let Ok(mut p) = self.pool.lock() {
                            p.clear();
                        }
                    });
                    last = Some(SignError::Sign {
                        uri: self.uri.clone(),
                        why: e.to_string(),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| SignError::Sign {
            uri: self.uri.clone(),
            why: "no session".into(),
        }))
    }
}

impl Drop for Pkcs11Key {
    fn drop(&mut self) {
        // Closing the sessions calls into the module: not while it is being
        // initialised again.
        using(|| {
            if let Ok(mut p) = self.pool.lock() {
                p.clear();
            }
        });
    }
}

/// Calls into a module, shared; [`rescan`]'s finalise and initialise,
/// exclusive: a module must not be finalised while another thread is in it.
static IN_USE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// `f`, while no module is being initialised again.
fn using<T>(f: impl FnOnce() -> T) -> T {
    let _shared = IN_USE.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    f()
}

/// Find the token, open a session, log in, and find the key's private and
/// public objects.
fn connect(ctx: &Pkcs11, t: &Target, shown: &str) -> Result<(Session, ObjectHandle, ObjectHandle), SignError> {
    let failed = |why: String| SignError::Module {
        uri: shown.to_owned(),
        module: t.module.clone(),
        why,
    };
    let not_found = |why: String| SignError::NotFound {
        uri: shown.to_owned(),
        why,
    };
    let slots = ctx.get_slots_with_token().map_err(|e| failed(e.to_string()))?;
    let slot = slots
        .into_iter()
        .find(|s| {
            let label_ok = t.token.as_ref().is_none_or(|want| {
                ctx.get_token_info(*s)
                    .is_ok_and(|i| i.label().trim_end() == want.as_str())
            });
            label_ok && t.slot_id.is_none_or(|id| s.id() == id)
        })
        .ok_or_else(|| not_found("no token matches its token and slot-id".into()))?;
    let session = ctx.open_ro_session(slot).map_err(|e| failed(e.to_string()))?;
    if let Some(pin) = &t.pin {
        login(&session, pin, (t.module.clone(), slot.id()), shown)?;
    }
    let find = |class: ObjectClass| -> Result<ObjectHandle, SignError> {
        let what = if class == ObjectClass::PRIVATE_KEY {
            "private key"
        } else {
            "public key"
        };
        let mut template = vec![Attribute::Class(class)];
        template.extend(t.object.as_ref().map(|o| Attribute::Label(o.as_bytes().to_vec())));
        template.extend(t.id.as_ref().map(|i| Attribute::Id(i.clone())));
        let found = session.find_objects(&template).map_err(|e| failed(e.to_string()))?;
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
    Ok((session, key, public))
}

/// Log in to `token`. Logins are per token and application: a second key
/// (or session) on the same token finds the user logged in already, and
/// the token does not check its PIN then: this process does, against the
/// PIN it logged in with.
fn login(session: &Session, pin: &AuthPin, token: Token, shown: &str) -> Result<(), SignError> {
    use secrecy::ExposeSecret as _;
    let digest: [u8; 32] = sha2::Sha256::digest(pin.expose_secret().as_bytes()).into();
    let login_failed = |why: String| SignError::Login {
        uri: shown.to_owned(),
        why,
    };
    let mut logins = LOGINS
        .lock()
        .map_err(|_| login_failed("a thread logging in panicked".into()))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => {
            logins.retain(|(k, _)| *k != token);
            logins.push((token, digest));
            Ok(())
        }
        Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
            if logins.iter().any(|(k, d)| *k == token && *d == digest) {
                Ok(())
            } else {
                Err(login_failed(
                    "the token is logged in with another PIN than this one".into(),
                ))
            }
        }
        Err(e) => Err(login_failed(e.to_string())),
    }
}

/// SHA-256 of the PIN each (module, slot) was logged in with by this process.
static LOGINS: Mutex<Vec<(Token, [u8; 32])>> = Mutex::new(Vec::new());

/// A token as this process knows it: its module's path and its slot.
type Token = (String, u64);

/// Modules loaded by this process: each path, its context, and when it was
/// last initialised.
static MODULES: Mutex<Vec<(String, Pkcs11, std::time::Instant)>> = Mutex::new(Vec::new());

/// The module at `path`, loaded and initialised once per process: a
/// module may be initialised only once, and every key on it shares it.
fn loaded(path: &str) -> Result<Pkcs11, String> {
    let mut m = MODULES
        .lock()
        .map_err(|_| "a thread loading a module panicked".to_owned())?;
    if let Some((_, ctx, _)) = m.iter().find(|(p, _, _)| p == path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| e.to_string())?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| e.to_string())?;
    m.push((path.to_owned(), ctx.clone(), std::time::Instant::now()));
    Ok(ctx)
}

/// Finalise and initialise the module again, so that it lists its tokens
/// afresh (a token put back after it was removed); at most once a second,
/// so a token that stays away is not rescanned at every signature. Every
/// session of every key on the module ends, and so does its login: each
/// key's next signature opens a new session and logs in again. Whether it
/// was rescanned now.
fn rescan(ctx: &Pkcs11, path: &str) -> bool {
    let Ok(mut m) = MODULES.lock() else { return false };
    let Some(entry) = m.iter_mut().find(|(p, _, _)| p == path) else {
        return false;
    };
    if entry.2.elapsed() < std::time::Duration::from_secs(1) {
        return false;
    }
    entry.2 = std::time::Instant::now();
    let _alone = IN_USE.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A module that will not finalise is initialised still: try anyway.
    let _ = ctx.clone().finalize();
    if let Ok(mut logins) = LOGINS.lock() {
        logins.retain(|((module, _), _)| module != path);
    }
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .is_ok()
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
        match self.algorithm {
            Algorithm::Ed25519 => {
                let sig = self.raw(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), message)?;
                if sig.len() != 64 {
                    return Err(failed(format!("an Ed25519 signature of {} bytes", sig.len())));
                }
                Ok(sig)
            }
            Algorithm::EcdsaP256Sha256 => {
                let rs = self.raw(&Mechanism::Ecdsa, &sha2::Sha256::digest(message))?;
                p256::ecdsa::Signature::from_slice(&rs)
                    .map(|s| s.to_der().as_bytes().to_vec())
                    .map_err(|e| failed(format!("the token's ECDSA signature: {e}")))
            }
            Algorithm::EcdsaP384Sha384 => {
                let rs = self.raw(&Mechanism::Ecdsa, &sha2::Sha384::digest(message))?;
                p384::ecdsa::Signature::from_slice(&rs)
                    .map(|s| s.to_der().as_bytes().to_vec())
                    .map_err(|e| failed(format!("the token's ECDSA signature: {e}")))
            }
        }
    }
}
