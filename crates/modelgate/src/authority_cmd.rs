//! `modelgate authority …`: create, run and administer an authority.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use modelgate_authority::{Authority, AuthorityError, TokenRole};

use crate::Failure;

#[derive(Subcommand)]
pub enum AuthorityCommand {
    /// Create an authority: note keys, a first trust root signed by a new
    /// root key, and the governance log with the trust root as entry 0.
    Init(InitArgs),
    /// Run the authority (initialises an empty DATA dir on first run).
    Serve(Box<ServeArgs>),
    /// Write-API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Args)]
pub struct InitArgs {
    /// The data directory (must be empty or absent).
    #[arg(long, value_name = "DIR", env = "MODELGATE_DATA")]
    data: PathBuf,
    /// The log's origin, e.g. `example.com/governance`; also the key name.
    #[arg(long, value_name = "ORIGIN")]
    origin: String,
    /// Root keys to make (n), one per custodian: principals root-1 … root-n,
    /// in DATA/offline-root-keys/. Trust root v1 is signed by all of them.
    #[arg(long, value_name = "N", default_value_t = 1)]
    root_keys: usize,
    /// Root signatures a new trust-root version needs (k of n).
    #[arg(long, value_name = "K", default_value_t = 1)]
    root_threshold: usize,
    /// The log key on a PKCS#11 token: a `pkcs11:` URI naming an Ed25519
    /// key, recorded in DATA and opened by `serve` (see docs/keys.md).
    /// Default: a new key file in DATA.
    #[arg(long, value_name = "URI")]
    log_key: Option<String>,
    /// The cosigner key on a PKCS#11 token (as --log-key).
    #[arg(long, value_name = "URI")]
    cosigner_key: Option<String>,
    /// A root key on a PKCS#11 token (repeat, one per custodian's token):
    /// the root role is then these keys, none is made as a file.
    #[arg(long = "root-key", value_name = "URI")]
    root_key_uris: Vec<String>,
    #[command(flatten)]
    store: StoreArg,
}

/// Where the governance log is.
#[derive(Args, Clone)]
pub struct StoreArg {
    /// The governance log's database: a PostgreSQL URL
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB`, scale-out) or a SQLite
    /// file; default DATA/governance.db (SQLite, embedded). Give `serve` and
    /// `log audit` the same store as `init`. Several authorities may serve
    /// one PostgreSQL database: one sequences, the others serve reads and
    /// pass writes to it, and one of them takes over when it dies.
    #[arg(long, value_name = "URL|FILE", env = "MODELGATE_STORE")]
    store: Option<String>,
}

impl StoreArg {
    fn at(&self, data: &std::path::Path) -> modelgate_authority::store::StoreAt {
        modelgate_authority::store::StoreAt::parse(
            self.store.as_deref(),
            modelgate_authority::DataDir::new(data).store(),
        )
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The data directory.
    #[arg(long, value_name = "DIR", env = "MODELGATE_DATA")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:7370",
        env = "MODELGATE_LISTEN"
    )]
    listen: SocketAddr,
    /// Origin used when DATA is empty and gets initialised.
    #[arg(long, value_name = "ORIGIN", default_value = "localhost/modelgate-governance")]
    origin: String,
    /// Log format (RUST_LOG sets the level, default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Writes that need no token (node-signed entries, heartbeats, lineage
    /// batches) a client address may make per second, sustained (bursts of
    /// 4 s of it). Nodes behind one address share it: raise it for many
    /// nodes behind a NAT.
    #[arg(
        long,
        value_name = "PER_SECOND",
        default_value_t = 10.0,
        env = "MODELGATE_NODE_WRITE_RATE"
    )]
    node_write_rate: f64,
    /// A witness to ask for a cosignature of every checkpoint (its URL; it
    /// serves c2sp.org/tlog-witness `/add-checkpoint` under it). Repeat for
    /// each witness of the trust root; with a witness quorum the checkpoint
    /// served is the last one that met it. Also MODELGATE_WITNESS_URLS,
    /// comma-separated.
    #[arg(
        long = "witness-url",
        value_name = "URL",
        env = "MODELGATE_WITNESS_URLS",
        value_delimiter = ','
    )]
    witness_urls: Vec<String>,
    #[command(flatten)]
    store: StoreArg,
    /// With several authorities on one PostgreSQL database: the URL the
    /// others pass writes to while this one sequences (its API as they
    /// reach it). Default: http:// and the address it listens on.
    #[arg(long, value_name = "URL", env = "MODELGATE_ADVERTISE_URL")]
    advertise_url: Option<String>,
    /// With several authorities on one PostgreSQL database: another
    /// authority's URL (as it advertises it). Repeat for each; a replica
    /// then passes writes, with their bearer tokens, only to one of these,
    /// whatever the database names. Without it, to the URL the sequencer
    /// advertises in the database. Also MODELGATE_PEER_URLS, comma-separated.
    #[arg(
        long = "peer-url",
        value_name = "URL",
        env = "MODELGATE_PEER_URLS",
        value_delimiter = ','
    )]
    peer_urls: Vec<String>,
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
}

/// Where the public governance console is served.
#[derive(Args, Clone)]
pub struct ConsoleArgs {
    /// Serve the public, read-only console on a listener of its own (publish
    /// it, keep the write API private); without it the console is at `/` on
    /// the API's listener.
    #[arg(long, value_name = "ADDR", env = "MODELGATE_CONSOLE_LISTEN")]
    console_listen: Option<SocketAddr>,
    /// The path the console is reached at behind a reverse proxy (e.g.
    /// `/governance`): every link starts with it, and its pages are served under it.
    #[arg(long, value_name = "PATH", default_value = "", env = "MODELGATE_CONSOLE_PREFIX")]
    console_prefix: String,
    /// Serve no console.
    #[arg(long, conflicts_with = "console_listen")]
    no_console: bool,
}

impl ConsoleArgs {
    /// The prefix, checked: empty, or a path starting with `/`.
    fn prefix(&self) -> Result<String, Failure> {
        modelgate_console::serve::console_prefix(&self.console_prefix).ok_or_else(|| {
            Failure::Usage(format!(
                "--console-prefix {:?} must be a path starting with / (e.g. /governance)",
                self.console_prefix
            ))
        })
    }

    /// The console at `/` of the main listener.
    pub fn default_on() -> Self {
        Self {
            console_listen: None,
            console_prefix: String::new(),
            no_console: false,
        }
    }
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create(TokenArgs),
}

#[derive(Args)]
pub struct TokenArgs {
    /// The data directory.
    #[arg(long, value_name = "DIR", env = "MODELGATE_DATA")]
    data: PathBuf,
    /// admin, root, model-signer, approver, policy-admin, node-admin or node.
    #[arg(long, value_name = "ROLE")]
    role: String,
    /// A name for the token's holder (shown in logs).
    #[arg(long, value_name = "NAME", default_value = "unnamed")]
    name: String,
}

/// The kind's exit code: 1 for a log that does not fold, else 2.
fn fail(e: AuthorityError) -> Failure {
    match e.kind.exit_code() {
        1 => Failure::Invalid(e.to_string()),
        _ => Failure::Usage(e.to_string()),
    }
}

pub fn run(cmd: AuthorityCommand) -> Result<(), Failure> {
    match cmd {
        AuthorityCommand::Init(a) => {
            let roots = if a.root_key_uris.is_empty() {
                modelgate_authority::RootKeys::new(a.root_keys, a.root_threshold).map_err(fail)?
            } else {
                modelgate_authority::RootKeys::new(a.root_key_uris.len(), a.root_threshold).map_err(fail)?
            };
            let tokens = modelgate_authority::TokenKeys {
                log: a.log_key,
                cosigner: a.cosigner_key,
                roots: a.root_key_uris,
            };
            init(&a.data, &a.origin, roots, true, &a.store.at(&a.data), &tokens)
        }
        AuthorityCommand::Serve(a) => serve(*a),
        AuthorityCommand::Token {
            command: TokenCommand::Create(a),
        } => {
            let role = TokenRole::parse(&a.role).map_err(|e| Failure::Usage(e.to_string()))?;
            let token = modelgate_authority::tokens::create_for(&a.data, role, &a.name).map_err(fail)?;
            eprintln!(
                "token for {} ({}) — shown once; the authority stores only its hash:",
                a.name, a.role
            );
            println!("{token}");
            Ok(())
        }
    }
}

/// With `vkey_on_stdout` false (first run of `serve`), stdout keeps its one-line contract.
fn init(
    data: &std::path::Path,
    origin: &str,
    roots: modelgate_authority::RootKeys,
    vkey_on_stdout: bool,
    store: &modelgate_authority::store::StoreAt,
    tokens: &modelgate_authority::TokenKeys,
) -> Result<(), Failure> {
    let r = modelgate_authority::init_keys(data, origin, roots, store, tokens).map_err(fail)?;
    for line in r.instructions(data, store) {
        eprintln!("{line}");
    }
    if vkey_on_stdout {
        println!("{}", r.log_vkey);
    } else {
        eprintln!("{}", r.log_vkey);
    }
    Ok(())
}

/// Server logs on stderr (RUST_LOG sets the level, default info).
pub fn init_server_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn serve(a: ServeArgs) -> Result<(), Failure> {
    if !(a.node_write_rate.is_finite() && a.node_write_rate > 0.0) {
        return Err(Failure::Usage(format!(
            "--node-write-rate must be a positive number of writes per second, not {}",
            a.node_write_rate
        )));
    }
    a.console.prefix()?;
    let transport = a.tls.transport()?;
    init_server_logging(a.log_format);
    let d = modelgate_authority::DataDir::new(&a.data);
    if d.is_empty() {
        init(
            &a.data,
            &a.origin,
            modelgate_authority::RootKeys::SINGLE,
            false,
            &a.store.at(&a.data),
            &modelgate_authority::TokenKeys::default(),
        )?;
    }
    for (flag, u) in a
        .advertise_url
        .iter()
        .map(|u| ("--advertise-url", u))
        .chain(a.peer_urls.iter().map(|u| ("--peer-url", u)))
    {
        modelgate_authority::store::check_peer_url(u).map_err(|m| Failure::Usage(format!("{flag} {u:?}: {m}")))?;
    }
    let store_at = a.store.at(&a.data);
    let opened = std::cell::OnceCell::new();
    serve_until_signal(
        || {
            let authority = Authority::open_with(&a.data, store_at).map_err(fail)?;
            authority.start_witnesses(&a.witness_urls).map_err(fail)?;
            authority.sequencing.set_peers(&a.peer_urls);
            let _ = opened.set(std::sync::Arc::clone(&authority));
            Ok(authority)
        },
        a.node_write_rate,
        a.listen,
        &transport,
        &a.console,
        &a.data,
        |bound| {
            if let Some(authority) = opened.get() {
                authority
                    .sequencing
                    .set_advertised(a.advertise_url.as_deref().unwrap_or(bound));
            }
            Ok(())
        },
    )
}

/// Run `open()`'s authority on `listen` until SIGINT or SIGTERM; `bound`
/// is told the URL once the listener is bound, before the first request.
pub fn serve_until_signal(
    open: impl FnOnce() -> Result<std::sync::Arc<Authority>, Failure>,
    node_write_rate: f64,
    listen: SocketAddr,
    transport: &modelgate_http::Transport,
    console: &ConsoleArgs,
    data: &std::path::Path,
    bound: impl FnOnce(&str) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let prefix = console.prefix()?;
    let runtime =
        modelgate_http::server_runtime(8).map_err(|e| Failure::Usage(format!("starting the runtime: {e}")))?;
    // Opened before the runtime runs: a PostgreSQL store's client blocks,
    // which no async worker may do.
    let authority = open()?;
    authority.unauthenticated.set_rate(node_write_rate);
    use modelgate_console::serve::{authority_with_console, Announced, Placement};
    let placement = Placement::from_flags(console.no_console, console.console_listen);
    let mut bound = Some(bound);
    let announce = |a: Announced<'_>| -> Result<(), String> {
        match a {
            Announced::Api(url) => {
                if let Some(b) = bound.take() {
                    b(url).map_err(|e| match e {
                        Failure::Invalid(m) | Failure::Usage(m) | Failure::Contained(m) | Failure::Child(_, m) => m,
                    })?;
                }
                // Scripts and tests read the bound address (port 0 picks a free one).
                println!("listening on {url}");
            }
            Announced::Console(url) => eprintln!("console: {url}"),
        }
        Ok(())
    };
    tracing::info!(data = %data.display(), "serving the authority's data directory");
    runtime
        .block_on(authority_with_console(
            authority,
            listen,
            transport,
            placement,
            &prefix,
            announce,
            modelgate_http::shutdown_signal(),
        ))
        .map_err(|e| Failure::Usage(e.to_string()))
}
