//! Development mode (`modelgate dev`): one person plays every role, on one
//! machine, with keys on its disk — in the spirit of `vault server -dev`.
//!
//! [`bootstrap`] makes an authority whose trust root v2 names a key for each
//! role (model signer, two approvers, policy admin, node admin), all kept in
//! `DIR/dev-keys/` beside the root key, and publishes a policy that permits
//! every approved call. [`govern`] then takes a model directory the whole way
//! through an *already running* dev authority: OMS signature, registration,
//! approval, a node key and its enrollment, and a node configuration with a
//! caller token.
//!
//! Nothing here is a shortcut around governance: every entry is signed and
//! submitted, folded and checked exactly as in production, and a node of a
//! dev authority verifies everything itself. What makes it unfit for
//! production is only that the keys that should belong to different people,
//! some of them offline, sit together in one directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use modelgate_authority::Authority;
use modelgate_governance::{
    ApprovalEntry, EntryPayload as _, ModelEntry, NodeEnrollmentEntry, PolicySetEntry, RiskTier,
};
use modelgate_tlog::{KeyType, SignerKey};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::json;

use crate::governance::{accepted, b64, signed};
use crate::{fail, Failure};

/// The warning every dev command prints.
pub const WARNING: &str = "DEVELOPMENT MODE: every role's private key is on this disk, in one directory. \
Unfit for production: there, each role is a different person and the root keys are offline.";

/// The roles' keys, by file name under `DIR/dev-keys/`.
const ROLES: [(&str, &str); 5] = [
    ("dev-signer", "model-signer"),
    ("dev-approver-1", "approver"),
    ("dev-approver-2", "approver"),
    ("dev-policy-admin", "policy-admin"),
    ("dev-node-admin", "node-admin"),
];

/// Where a dev directory keeps what `govern` needs.
pub struct DevDir {
    root: PathBuf,
}

impl DevDir {
    /// The dev directory at `root`.
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }
    /// The authority's data directory.
    pub fn authority(&self) -> PathBuf {
        self.root.join("authority")
    }
    /// The role keys.
    pub fn keys(&self) -> PathBuf {
        self.root.join("dev-keys")
    }
    /// A role's governance key (PKCS#8 PEM, Ed25519).
    pub fn key(&self, role: &str) -> PathBuf {
        self.keys().join(format!("{role}.key"))
    }
    /// The model signer's OMS key (PKCS#8 PEM, ECDSA P-256).
    pub fn model_key(&self) -> PathBuf {
        self.keys().join("dev-signer-model.key")
    }
    /// The admin token for the authority's write API.
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }
    /// The URL the running dev authority listens on.
    pub fn url_file(&self) -> PathBuf {
        self.root.join("authority.url")
    }
    /// The node's directory (`node.toml`, its key, its data).
    pub fn node(&self) -> PathBuf {
        self.root.join("node")
    }
}

fn write_secret(path: &Path, data: &[u8]) -> Result<(), Failure> {
    modelgate_node::files::write_new(path, data, 0o600, false).map_err(fail)
}

fn ed25519_pem(k: &SigningKey) -> Result<String, Failure> {
    // PKCS#8 v1 (RFC 8410), as `modelgate keygen` writes it.
    let v1 = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: k.to_bytes(),
        public_key: None,
    };
    Ok(v1.to_pkcs8_pem(LineEnding::LF).map_err(fail)?.to_string())
}

fn read_ed25519(path: &Path) -> Result<SigningKey, Failure> {
    let pem = fs::read_to_string(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| fail(format!("{}: {e}", path.display())))
}

/// What [`bootstrap`] made.
pub struct Bootstrapped {
    /// The authority, open, its trust root v2 and policy in the log.
    pub authority: Arc<Authority>,
    /// The admin token (also in `DIR/admin.token`).
    pub admin_token: String,
    /// The log's verifier key.
    pub log_vkey: String,
}

impl Bootstrapped {
    /// What `dev serve` tells its user about the authority it made in `dir`.
    pub fn instructions(&self, dir: &Path) -> Vec<String> {
        let d = DevDir::new(dir);
        vec![
            format!("made a dev authority in {}:", dir.display()),
            format!("  log verifier key: {}", self.log_vkey),
            format!(
                "  role keys (signer, two approvers, policy admin, node admin): {}",
                d.keys().display()
            ),
            format!(
                "  root key: {}",
                d.authority().join("offline-root-keys/root-1.key").display()
            ),
            format!("  admin token: {} (in {})", self.admin_token, d.admin_token().display()),
        ]
    }
}

/// The dev authority in `dir`: opened when there is one, made when `dir`
/// is empty or absent (the lines to tell the user then), refused when
/// `dir` holds other files.
pub fn open_or_bootstrap(dir: &Path) -> Result<(Arc<Authority>, Vec<String>), Failure> {
    let d = DevDir::new(dir);
    if d.authority().join("trust-root.dsse.json").exists() {
        return Ok((Authority::open(&d.authority()).map_err(fail)?, Vec::new()));
    }
    if dir.exists() && fs::read_dir(dir).is_ok_and(|mut r| r.next().is_some()) {
        return Err(Failure::Setup(format!(
            "{} holds files but no dev authority; give an empty or new directory",
            dir.display()
        )));
    }
    let b = bootstrap(dir)?;
    let said = b.instructions(dir);
    Ok((b.authority, said))
}

/// Create a dev authority in `dir` (which must be empty or absent): the
/// authority itself, a key per role, trust root v2 naming them (signed by
/// the root key), a policy permitting every approved call, and an admin
/// token.
pub fn bootstrap(dir: &Path) -> Result<Bootstrapped, Failure> {
    let d = DevDir::new(dir);
    let report = modelgate_authority::init(&d.authority(), "localhost/modelgate-dev").map_err(fail)?;
    fs::create_dir_all(d.keys()).map_err(fail)?;
    let authority = Authority::open(&d.authority()).map_err(fail)?;

    let mut v = serde_json::to_value(
        authority
            .state()
            .trust_root
            .as_ref()
            .map(|r| r.doc.clone())
            .ok_or_else(|| fail("the new authority has no trust root"))?,
    )
    .map_err(fail)?;
    v["root_version"] = json!(2);
    let model_key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let model_pub = model_key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(fail)?;
    write_secret(
        &d.model_key(),
        model_key.to_pkcs8_pem(LineEnding::LF).map_err(fail)?.as_bytes(),
    )?;
    fs::write(d.model_key().with_extension("pub"), &model_pub).map_err(fail)?;
    let mut keys = Vec::new();
    for (id, role) in ROLES {
        let k = SigningKey::generate(&mut rand_core::OsRng);
        write_secret(&d.key(id), ed25519_pem(&k)?.as_bytes())?;
        let model_keys = if role == "model-signer" {
            vec![model_pub.clone()]
        } else {
            vec![]
        };
        v["principals"][id] = json!({"roles": [role], "keys": [b64(&k)], "model_keys": model_keys});
        keys.push(k);
    }
    let root = read_ed25519(&report.root_key)?;
    accepted(&authority, signed(&v, &[&root])?, "dev trust root v2")?;
    let padmin = read_ed25519(&d.key("dev-policy-admin"))?;
    // Approvals are still required: a model with none is refused before
    // Cedar is asked, so permitting here opens nothing unapproved.
    let policy = "@id(\"dev-permit-approved\") permit(principal, action, resource);";
    accepted(
        &authority,
        PolicySetEntry::new("dev", policy, "").sign(&[&padmin]).map_err(fail)?,
        "the dev policy",
    )?;
    let token = modelgate_authority::tokens::create(
        &modelgate_authority::DataDir::new(&d.authority()).tokens(),
        modelgate_authority::TokenRole::Admin,
        "dev",
    )
    .map_err(fail)?;
    write_secret(&d.admin_token(), format!("{token}\n").as_bytes())?;
    Ok(Bootstrapped {
        authority,
        admin_token: token,
        log_vkey: report.log_vkey,
    })
}

/// What [`govern`] is asked to do.
pub struct GovernOptions<'a> {
    /// The model directory (its `model.sig` is written there).
    pub model: &'a Path,
    /// The name callers use.
    pub name: &'a str,
    /// The scope (e.g. `dev/chat`) the model is approved for, the node is
    /// enrolled for and serves, and the caller calls in.
    pub scope: &'a str,
    /// The OpenAI-compatible inference server.
    pub upstream: &'a str,
    /// Where the node's gateway will listen.
    pub listen: &'a str,
}

/// What [`govern`] made.
pub struct Governed {
    /// The model's root digest.
    pub digest: String,
    /// The node configuration to serve.
    pub config: PathBuf,
    /// The caller's bearer token (also in `DIR/node/caller.token`).
    pub caller_token: String,
}

impl Governed {
    /// What `dev govern` tells its user: what was done and what to run next.
    pub fn instructions(&self, dir: &Path, name: &str, scope: &str) -> Vec<String> {
        vec![
            format!(
                "governed {name} (digest {}): signed, registered, approved for {scope}, node enrolled",
                self.digest
            ),
            format!("  node configuration: {}", self.config.display()),
            format!(
                "  caller token (in {}): {}",
                DevDir::new(dir).node().join("caller.token").display(),
                self.caller_token
            ),
            format!("next: modelgate node serve --config {}", self.config.display()),
        ]
    }
}

/// The name a model directory is governed under when none is given: its
/// directory's name.
pub fn model_name(model: &Path) -> Result<String, Failure> {
    model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or_else(|| Failure::Setup(format!("{}: give the model a --name", model.display())))
}

fn submit_http(url: &str, token: &str, entry: &[u8], what: &str) -> Result<u64, Failure> {
    let agent = modelgate_http::agent(modelgate_http::Timeouts::CLI);
    let mut r = agent
        .post(&format!("{url}/api/v1/entries"))
        .header("Content-Type", "application/json")
        .header("Authorization", &format!("Bearer {token}"))
        .send(entry)
        .map_err(|e| {
            fail(format!(
                "{what}: the dev authority at {url} did not answer ({e}); is `modelgate dev serve` running?"
            ))
        })?;
    let body: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default();
    match (r.status().as_u16(), body["index"].as_u64()) {
        (201, Some(i)) => Ok(i),
        (status, _) => Err(Failure::Failed(format!(
            "{what} was refused ({status}): {}",
            body["error"]["message"].as_str().unwrap_or("no reason given")
        ))),
    }
}

/// The URL of the dev authority of `d`, once it answers `/healthz` (it may
/// have been started a moment ago, in the background).
fn wait_for_authority(d: &DevDir, patience: std::time::Duration) -> Result<String, Failure> {
    let agent = modelgate_http::agent(modelgate_http::Timeouts::PROBE);
    let deadline = std::time::Instant::now() + patience;
    loop {
        let url = fs::read_to_string(d.url_file()).ok().map(|s| s.trim().to_owned());
        if let Some(url) = &url {
            if agent
                .get(&format!("{url}/healthz"))
                .call()
                .is_ok_and(|r| r.status().as_u16() == 200)
            {
                return Ok(url.clone());
            }
        }
        if std::time::Instant::now() > deadline {
            return Err(fail(match url {
                None => format!(
                    "{} does not exist: start `modelgate dev serve --data {}` first",
                    d.url_file().display(),
                    d.root.display()
                ),
                Some(u) => format!("the dev authority at {u} does not answer: is `modelgate dev serve` running?"),
            }));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A valid scope, a model not signed yet, a dev directory that governs none:
/// `govern` overwrites nothing.
fn nothing_governed_yet(d: &DevDir, o: &GovernOptions<'_>) -> Result<(), Failure> {
    modelgate_governance::check_scope(o.scope).map_err(fail)?;
    let bundle_path = o.model.join("model.sig");
    if bundle_path.exists() {
        return Err(fail(format!(
            "{} exists: this model is signed already (remove it to sign it again with the dev key)",
            bundle_path.display()
        )));
    }
    if d.node().join("node.toml").exists() {
        return Err(fail(format!(
            "{} exists: this dev directory governs a model already (use a new one)",
            d.node().join("node.toml").display()
        )));
    }
    Ok(())
}

/// Take `o.model` through the running dev authority of `dir`: sign it with
/// the dev model key, register it, approve it for `o.scope` (low tier, by a
/// dev approver), make and enroll a node, and write its configuration with a
/// new caller token. The model's `model.sig` and `dir/node/` must not exist.
pub fn govern(dir: &Path, o: &GovernOptions<'_>) -> Result<Governed, Failure> {
    // `dev serve` may have been started a moment ago, in the background.
    let url = wait_for_authority(&DevDir::new(dir), std::time::Duration::from_secs(15))?;
    // The configuration names its files absolutely: it may be read from anywhere.
    let dir = &dir
        .canonicalize()
        .map_err(|e| fail(format!("{}: {e} (start `modelgate dev serve` first)", dir.display())))?;
    let d = DevDir::new(dir);
    let read = |p: PathBuf| {
        fs::read_to_string(&p).map(|s| s.trim().to_owned()).map_err(|e| {
            fail(format!(
                "{}: {e} (is {} a dev directory made by `modelgate dev serve`?)",
                p.display(),
                dir.display()
            ))
        })
    };
    let admin = read(d.admin_token())?;
    nothing_governed_yet(&d, o)?;
    let bundle_path = o.model.join("model.sig");

    let model_key = modelgate_oms::PrivateKey::from_pem(&read(d.model_key())?, "the dev model key").map_err(fail)?;
    let (manifest, bundle) = crate::sign_model(o.model, model_key)?;
    let digest = hex::encode(manifest.root_digest());

    let signer = read_ed25519(&d.key("dev-signer"))?;
    let approver = read_ed25519(&d.key("dev-approver-1"))?;
    let nadmin = read_ed25519(&d.key("dev-node-admin"))?;
    let registration = ModelEntry::new(o.name, "dev", &bundle).sign(&[&signer]).map_err(fail)?;
    match submit_http(&url, &admin, &registration, "the model's registration") {
        // A second try after a failure further on: the digest is registered
        // (by this dev signer: any other is refused at the approval).
        Err(Failure::Failed(m)) if m.contains("model-duplicate") => {}
        other => {
            other?;
        }
    }
    let now = modelgate_runtime::Clock::now(&modelgate_runtime::SystemClock);
    let approval = ApprovalEntry::new(
        &digest,
        vec![o.scope.to_owned()],
        now.saturating_sub(60),
        now + 30 * 86_400,
        RiskTier::Low,
        &format!("DEV-{now}"),
    )
    .sign(&[&approver])
    .map_err(fail)?;
    submit_http(&url, &admin, &approval, "the approval")?;

    let ndir = d.node();
    fs::create_dir_all(&ndir).map_err(fail)?;
    let seed: [u8; 32] = SigningKey::generate(&mut rand_core::OsRng).to_bytes();
    let node_key = SignerKey::from_seed(
        &format!("dev-node-{}/lineage", &hex::encode(seed)[..8]),
        KeyType::Ed25519,
        &seed,
    )
    .map_err(fail)?;
    modelgate_node::files::write_new(
        &ndir.join("node.skey"),
        format!("{}\n", node_key.to_private_string()).as_bytes(),
        0o600,
        true,
    )
    .map_err(fail)?;
    let node_id = format!("dev-node-{}", &hex::encode(seed)[..8]);
    let enrollment = NodeEnrollmentEntry::new(&node_id, &node_key.verifier().to_string(), vec![o.scope.to_owned()])
        .sign(&[&nadmin])
        .map_err(fail)?;
    submit_http(&url, &admin, &enrollment, "the node's enrollment")?;

    let mut t = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut t);
    let caller_token = format!("mg-dev-{}", hex::encode(t));
    modelgate_node::files::write_new(
        &ndir.join("caller.token"),
        format!("{caller_token}\n").as_bytes(),
        0o600,
        true,
    )
    .map_err(fail)?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(caller_token.as_bytes()));
    let toml = format!(
        "# Made by `modelgate dev govern` (development mode). Reference: docs/node-config.md\n\
         node = {node}\nauthority = \"{url}\"\ntrust_root = {tr}\nkey = \"node.skey\"\n\
         scopes = [{scope}]\nmax_staleness_seconds = 30\ndata_dir = \"data\"\nanchor_interval_seconds = 2\n\
         listen = {listen}\nupstream = {upstream}\n\n[models.{name}]\ndir = {dir}\nbundle = {bundle}\n\n\
         [callers.dev-caller]\ntoken_sha256 = \"{sha}\"\nscopes = [{scope}]\n",
        tr = toml_str(&d.authority().join("trust-root.dsse.json").display().to_string()),
        node = toml_str(&node_id),
        scope = toml_str(o.scope),
        listen = toml_str(o.listen),
        upstream = toml_str(o.upstream),
        name = toml_str(o.name),
        dir = toml_str(&o.model.display().to_string()),
        bundle = toml_str(&bundle_path.display().to_string()),
    );
    // The signature last but one, the configuration last: a failure
    // before leaves nothing that a second try would trip over.
    fs::write(&bundle_path, &bundle).map_err(fail)?;
    let config = ndir.join("node.toml");
    modelgate_node::files::write_atomic(&config, toml.as_bytes()).map_err(fail)?;
    Ok(Governed {
        digest,
        config,
        caller_token,
    })
}

/// A TOML basic string (JSON's escapes are TOML's for these characters).
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}
