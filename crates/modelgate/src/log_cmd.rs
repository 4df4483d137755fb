//! `modelgate log …`: offline tools for auditors. They read files, check them
//! against keys given on the command line, and never touch the network.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use modelgate_tlog::{
    leaf_hash, CheckpointPolicy, Hash, KeyType, TlogProof, VerifiedCheckpoint, VerifierKey, MAX_NOTE_BYTES,
};

use crate::oms_cmd::{hex, read_limited, write_new};
use crate::Failure;

/// Entries are at most 64 KiB in entry bundles; allow generous headroom for
/// logs that store larger entries elsewhere.
const ENTRY_BYTES_MAX: u64 = 64 << 20;
const PROOF_BYTES_MAX: u64 = MAX_NOTE_BYTES as u64 + 8192;

#[derive(Subcommand)]
pub enum LogCommand {
    /// Verify a C2SP tlog-proof offline: the checkpoint's signatures and
    /// witness quorum, then the entry's inclusion.
    ///
    /// Exit 0: valid. 1: checked and invalid (the reason is printed). 2: bad
    /// input (unreadable or malformed file, bad key).
    VerifyProof(VerifyProofArgs),
    /// Verify a signed checkpoint offline: the log's signature, the origin and
    /// the witness quorum. Prints the size, the root and each cosignature's time.
    ///
    /// Exit 0: valid. 1: checked and invalid. 2: bad input.
    VerifyCheckpoint(VerifyCheckpointArgs),
    /// Audit a log store (SQLite file) offline: recompute every leaf and node
    /// hash from the entries, verify every checkpoint's signature and root and
    /// the consistency between successive checkpoints. Read-only; safe beside
    /// a running writer.
    ///
    /// Exit 0: the store is intact. 1: a discrepancy (the first one is
    /// printed: what, where, expected, found). 2: bad input.
    Audit(AuditArgs),
    /// Fetch the authority's current checkpoint (and verify it with --vkey).
    Checkpoint(RemoteCheckpointArgs),
    /// Fetch a tlog-proof for entry INDEX from the authority (verify it with `verify-proof`).
    Proof(RemoteProofArgs),
    /// Generate a note key (Ed25519): PREFIX.skey (the PRIVATE+KEY string,
    /// mode 0600) and PREFIX.vkey (the verifier key string, also printed).
    Keygen(KeygenArgs),
    /// Prove a split view offline: an evidence file a node wrote
    /// (`DATA_DIR/split-view/*.json`) holds two checkpoints signed by the
    /// log's key that cannot both be true (equal sizes with two roots, or a
    /// consistency proof showing the larger tree's prefix is not the smaller one).
    ///
    /// Exit 0: the split view is proven. 1: it is not. 2: bad input.
    VerifySplitView(VerifySplitViewArgs),
}

#[derive(Args)]
pub struct VerifySplitViewArgs {
    /// The evidence file (`-` for standard input).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The log's verifier key: a vkey string or a file holding one.
    #[arg(long, value_name = "VKEY")]
    vkey: String,
}

/// The keys a checkpoint must be signed by.
#[derive(Args)]
pub struct PolicyArgs {
    /// The log's verifier key: a vkey string (`name+id+key`) or a file holding
    /// one. The key name is the log's origin.
    #[arg(long, value_name = "VKEY")]
    vkey: String,
    /// A witness verifier key (string or file). Repeat for each witness.
    #[arg(long = "witness", value_name = "VKEY")]
    witnesses: Vec<String>,
    /// How many of the witnesses must have cosigned. Defaults to all of them.
    #[arg(long, value_name = "K")]
    quorum: Option<usize>,
}

#[derive(Args)]
pub struct VerifyProofArgs {
    /// The tlog-proof file (`-` for standard input).
    #[arg(value_name = "PROOF")]
    proof: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
    /// The log entry the proof is for; its RFC 6962 leaf hash is checked.
    #[arg(long, value_name = "FILE", conflicts_with = "leaf_hash")]
    entry: Option<PathBuf>,
    /// The entry's leaf hash (64 hex digits), when the entry itself is not at hand.
    #[arg(long, value_name = "HEX")]
    leaf_hash: Option<String>,
}

#[derive(Args)]
pub struct VerifyCheckpointArgs {
    /// The signed checkpoint file (`-` for standard input).
    #[arg(value_name = "CHECKPOINT")]
    checkpoint: PathBuf,
    #[command(flatten)]
    policy: PolicyArgs,
}

#[derive(Args)]
pub struct RemoteCheckpointArgs {
    #[command(flatten)]
    remote: crate::gov_cmd::Remote,
    /// Verify it with this log key (string or file) before printing it.
    #[arg(long, value_name = "VKEY")]
    vkey: Option<String>,
}

#[derive(Args)]
pub struct RemoteProofArgs {
    /// The entry's index.
    index: u64,
    #[command(flatten)]
    remote: crate::gov_cmd::Remote,
}

#[derive(Args)]
pub struct AuditArgs {
    /// The log store: its SQLite database file, or a PostgreSQL URL
    /// (`postgres://USER@HOST/DB`); or give --authority to audit over HTTP.
    #[arg(value_name = "STORE", required_unless_present = "authority")]
    store: Option<String>,
    /// Audit a running authority instead: fetch its checkpoint, every entry
    /// bundle and every tile, verify them offline, refold the governance
    /// state and compare its digest with the one the authority publishes.
    #[arg(long, value_name = "URL", conflicts_with = "store")]
    authority: Option<String>,
    /// The trust root you pinned (for --authority): entry 0 must be exactly it.
    #[arg(long, value_name = "FILE", requires = "authority")]
    trust_root: Option<PathBuf>,
    /// The log's verifier key (string or file); its checkpoints must verify with it.
    #[arg(long, value_name = "VKEY")]
    vkey: String,
}

#[derive(Args)]
pub struct KeygenArgs {
    /// The key name; for a log key, the log's origin (e.g. `example.com/log`).
    #[arg(value_name = "NAME")]
    name: String,
    /// Output prefix: writes PREFIX.skey and PREFIX.vkey.
    #[arg(long, value_name = "PREFIX")]
    out: PathBuf,
    /// Make a witness cosignature key (tlog-cosignature/v1, type 0x04)
    /// instead of a note signing key (type 0x01).
    #[arg(long)]
    cosigner: bool,
    /// Overwrite existing key files.
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: LogCommand) -> Result<(), Failure> {
    match cmd {
        LogCommand::VerifyProof(a) => verify_proof(a),
        LogCommand::VerifyCheckpoint(a) => verify_checkpoint(a),
        LogCommand::Audit(a) => audit(a),
        LogCommand::Checkpoint(a) => {
            let note = crate::gov_cmd::get(&a.remote, "/log/checkpoint")?;
            if let Some(v) = &a.vkey {
                let key = load_vkey(v, "log key")?;
                CheckpointPolicy::new(key, vec![], 0)
                    .and_then(|p| p.verify(&note))
                    .map_err(tlog_failure)?;
            }
            emit(&note);
            Ok(())
        }
        LogCommand::Proof(a) => {
            let proof = crate::gov_cmd::get(&a.remote, &format!("/api/v1/tlog-proof/{}", a.index))?;
            emit(&proof);
            Ok(())
        }
        LogCommand::Keygen(a) => keygen(a),
        LogCommand::VerifySplitView(a) => {
            let key = load_vkey(&a.vkey, "log key")?;
            let bytes = read_input(&a.file, 4 << 20, "the evidence file")?;
            let proven = modelgate_node::split_view::verify_split_view(&bytes, &key).map_err(Failure::Invalid)?;
            println!("{proven}");
            Ok(())
        }
    }
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(bytes: &[u8]) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

fn tlog_failure(e: modelgate_tlog::Error) -> Failure {
    if e.is_malformed() {
        Failure::Usage(e.to_string())
    } else {
        Failure::Invalid(e.to_string())
    }
}

/// A file's bytes, or standard input's for `-`; at most `max` bytes (more is an error).
pub(crate) fn read_input(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Failure> {
    if path.as_os_str() != "-" {
        return read_limited(path, max, what);
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::Usage(format!("couldn't read {what} from standard input: {e}")))?;
    if buf.len() as u64 > max {
        return Err(Failure::Usage(format!(
            "{what} on standard input is more than the {max} bytes allowed"
        )));
    }
    Ok(buf)
}

fn load_vkey(arg: &str, what: &str) -> Result<VerifierKey, Failure> {
    Ok(modelgate_node::files::read_vkey(arg, what)?)
}

fn policy(args: &PolicyArgs) -> Result<CheckpointPolicy, Failure> {
    let log = load_vkey(&args.vkey, "log key")?;
    let witnesses = args
        .witnesses
        .iter()
        .map(|w| load_vkey(w, "witness key"))
        .collect::<Result<Vec<_>, _>>()?;
    let quorum = args.quorum.unwrap_or(witnesses.len());
    CheckpointPolicy::new(log, witnesses, quorum).map_err(tlog_failure)
}

fn report(v: &VerifiedCheckpoint) {
    for line in modelgate_node::audit::describe_checkpoint(v) {
        println!("{line}");
    }
}

fn verify_checkpoint(a: VerifyCheckpointArgs) -> Result<(), Failure> {
    let policy = policy(&a.policy)?;
    let note = read_input(&a.checkpoint, MAX_NOTE_BYTES as u64, "checkpoint")?;
    let v = policy.verify(&note).map_err(tlog_failure)?;
    println!("checkpoint: valid");
    report(&v);
    Ok(())
}

fn parse_leaf_hash(s: &str) -> Result<Hash, Failure> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Failure::Usage(format!("--leaf-hash {s:?} is not 64 hex digits")))
}

fn verify_proof(a: VerifyProofArgs) -> Result<(), Failure> {
    let policy = policy(&a.policy)?;
    let leaf = match (&a.entry, &a.leaf_hash) {
        (Some(entry), _) => leaf_hash(&read_limited(entry, ENTRY_BYTES_MAX, "entry")?),
        (None, Some(h)) => parse_leaf_hash(h)?,
        (None, None) => return Err(Failure::Usage(
            "give the entry (--entry FILE) or its leaf hash (--leaf-hash HEX): inclusion cannot be checked without it"
                .into(),
        )),
    };
    let proof = TlogProof::parse(&read_input(&a.proof, PROOF_BYTES_MAX, "proof")?).map_err(tlog_failure)?;
    let v = proof.verify(&leaf, &policy).map_err(tlog_failure)?;
    println!("proof: valid");
    println!("index: {}", v.index);
    println!("leaf hash: {}", hex(&leaf));
    report(&v.checkpoint);
    Ok(())
}

fn audit(a: AuditArgs) -> Result<(), Failure> {
    let key = load_vkey(&a.vkey, "log key")?;
    let policy = CheckpointPolicy::new(key, vec![], 0).map_err(tlog_failure)?;
    let store_at = match (&a.store, &a.authority) {
        (Some(p), _) => modelgate_authority::store::StoreAt::parse(Some(p), PathBuf::from(p)),
        (None, Some(url)) => return remote_audit(url, a.trust_root.as_deref(), &policy),
        (None, None) => return Err(Failure::Usage("give STORE or --authority URL".into())),
    };
    use modelgate_authority::audit::{audit_store, StoreAuditError};
    let r = audit_store(&store_at, &policy).map_err(|e| match e {
        StoreAuditError::Unreadable(m) => Failure::Usage(m),
        e @ StoreAuditError::Failed { .. } => Failure::Invalid(e.to_string()),
    })?;
    for line in r.describe() {
        println!("{line}");
    }
    Ok(())
}

/// Audit an authority over HTTP with nothing but its key (and the pinned
/// trust root): every byte served is checked against the signed checkpoint.
pub(crate) fn remote_audit(url: &str, pinned: Option<&Path>, policy: &CheckpointPolicy) -> Result<(), Failure> {
    use modelgate_node::audit::{remote_audit, RemoteAuditError};
    let pinned_bytes = pinned.map(|p| read_limited(p, 1 << 20, "trust root")).transpose()?;
    let client = modelgate_runtime::HttpAuthority::new(url);
    let mut shown = 0;
    let r = remote_audit(
        &modelgate_runtime::authority::Reads(&client),
        pinned_bytes.as_deref(),
        policy,
        |n, size| {
            if size > 5_120 && (n == size || n >= shown + size / 20) {
                shown = n;
                eprint!("\rentries: {n}/{size}{}", if n == size { "\n" } else { "" });
            }
        },
    )
    .map_err(|e| match e {
        RemoteAuditError::Fetch(e) => Failure::Usage(format!("couldn't read the authority: {e}")),
        RemoteAuditError::NotPinned => Failure::Invalid(format!(
            "audit of {url} failed: entry 0 is not the trust root pinned in {}",
            pinned.map_or_else(String::new, |p| p.display().to_string())
        )),
        RemoteAuditError::Invalid(m) => Failure::Invalid(format!("audit of {url} failed: {m}")),
    })?;
    for line in r.describe(pinned.is_some()) {
        println!("{line}");
    }
    Ok(())
}

fn keygen(a: KeygenArgs) -> Result<(), Failure> {
    let key_type = if a.cosigner {
        KeyType::CosignatureV1
    } else {
        KeyType::Ed25519
    };
    let key = modelgate_runtime::init::new_note_key(&a.name, key_type)?;
    let skey = a.out.with_extension("skey");
    let vkey = a.out.with_extension("vkey");
    let vkey_text = key.verifier().to_string();
    write_new(
        &skey,
        format!("{}\n", key.to_private_string()).as_bytes(),
        0o600,
        a.force,
    )?;
    write_new(&vkey, format!("{vkey_text}\n").as_bytes(), 0o644, a.force)?;
    eprintln!("wrote {} (secret, mode 0600) and {}", skey.display(), vkey.display());
    println!("{vkey_text}");
    Ok(())
}
