//! `modelgate dev …`: development mode, every role on one machine (see
//! `modelgate_demo::dev`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use modelgate_demo::dev::{self, DevDir, GovernOptions};

use crate::authority_cmd::{init_server_logging, serve_until_signal, LogFormat};
use crate::Failure;

#[derive(Subcommand)]
pub enum DevCommand {
    /// Run a development authority. On first run it makes the authority, a
    /// key for every role (kept in DIR/dev-keys: UNFIT FOR PRODUCTION), trust
    /// root v2 naming them, a policy permitting approved calls and an admin
    /// token (DIR/admin.token).
    Serve(ServeArgs),
    /// Govern a model through the running dev authority: sign it (writes
    /// MODEL/model.sig), register it, approve it for a scope, enroll a node
    /// and write its configuration (DIR/node/node.toml) with a caller token
    /// (DIR/node/caller.token). Then: `modelgate node serve --config DIR/node/node.toml`.
    Govern(GovernArgs),
    /// Make certificates for a trial deployment over TLS: a CA (DIR/ca.pem,
    /// DIR/ca.key; reused when present) and, for each --server and --client,
    /// DIR/NAME.pem (leaf then CA) and DIR/NAME.key (mode 0600). Prints the
    /// files written. For production use your organisation's CA.
    Ca(CaArgs),
}

#[derive(Args)]
pub struct CaArgs {
    /// Where the CA and certificates go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A server certificate: NAME=SAN[,SAN…] (DNS names, IP addresses),
    /// e.g. authority=authority.example.org,127.0.0.1. Repeat for each.
    #[arg(long = "server", value_name = "NAME=SANS")]
    servers: Vec<String>,
    /// A client certificate: NAME=SAN[,SAN…] (a URI such as
    /// spiffe://example.org/scoring, or DNS names). Repeat for each.
    #[arg(long = "client", value_name = "NAME=SANS")]
    clients: Vec<String>,
    /// Days the certificates (and a new CA) are valid.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    days: u32,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The dev directory (made on first run).
    #[arg(long, value_name = "DIR", default_value = "modelgate-dev", env = "MODELGATE_DEV")]
    data: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7370")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: crate::tls_args::ServerTlsArgs,
}

#[derive(Args)]
pub struct GovernArgs {
    /// The model directory (or file); its OMS signature goes to MODEL/model.sig.
    model: PathBuf,
    /// The dev directory of the running `modelgate dev serve`.
    #[arg(long, value_name = "DIR", default_value = "modelgate-dev", env = "MODELGATE_DEV")]
    data: PathBuf,
    /// The OpenAI-compatible inference server the gateway forwards to.
    #[arg(long, value_name = "URL")]
    upstream: String,
    /// The name callers ask for (default: the model directory's name).
    #[arg(long)]
    name: Option<String>,
    /// The scope it is approved for and served in.
    #[arg(long, default_value = "dev/default")]
    scope: String,
    /// Where the node's gateway will listen.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7380")]
    listen: String,
}

fn fail(e: modelgate_demo::Failure) -> Failure {
    match e {
        modelgate_demo::Failure::Setup(m) => Failure::Usage(m),
        modelgate_demo::Failure::Failed(m) => Failure::Invalid(m),
    }
}

pub fn run(cmd: DevCommand) -> Result<(), Failure> {
    match cmd {
        DevCommand::Serve(a) => serve(a),
        DevCommand::Govern(a) => govern(a),
        DevCommand::Ca(a) => ca(a),
    }
}

fn serve(a: ServeArgs) -> Result<(), Failure> {
    let transport = a.tls.transport()?;
    init_server_logging(LogFormat::Text);
    let d = DevDir::new(&a.data);
    eprintln!("{}", dev::WARNING);
    let (authority, said) = dev::open_or_bootstrap(&a.data).map_err(fail)?;
    for line in said {
        eprintln!("{line}");
    }
    let url_file = d.url_file();
    let data = a.data.clone();
    serve_until_signal(
        move || Ok(authority),
        10.0,
        a.listen,
        &transport,
        &crate::authority_cmd::ConsoleArgs::default_on(),
        &d.authority(),
        move |url| {
            std::fs::write(&url_file, format!("{url}\n"))
                .map_err(|e| Failure::Usage(format!("couldn't write {}: {e}", url_file.display())))?;
            eprintln!("console: {url}/");
            eprintln!(
                "next: modelgate dev govern MODEL_DIR --data {} --upstream http://127.0.0.1:8000",
                data.display()
            );
            Ok(())
        },
    )
}

fn govern(a: GovernArgs) -> Result<(), Failure> {
    let name = match &a.name {
        Some(n) => n.clone(),
        None => dev::model_name(&a.model).map_err(fail)?,
    };
    let model = a
        .model
        .canonicalize()
        .map_err(|e| Failure::Usage(format!("{}: {e}", a.model.display())))?;
    eprintln!("{}", dev::WARNING);
    let options = GovernOptions {
        model: &model,
        name: &name,
        scope: &a.scope,
        upstream: &a.upstream,
        listen: &a.listen,
    };
    let g = dev::govern(&a.data, &options).map_err(fail)?;
    for line in g.instructions(&a.data, &name, &a.scope) {
        eprintln!("{line}");
    }
    println!("{}", g.config.display());
    Ok(())
}

fn ca(a: CaArgs) -> Result<(), Failure> {
    use modelgate_demo::ca::{parse_leaf, Ca, Usage};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let leaves = a
        .servers
        .iter()
        .map(|s| parse_leaf(s, Usage::Server, now, a.days))
        .chain(a.clients.iter().map(|s| parse_leaf(s, Usage::Client, now, a.days)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let ca = Ca::open_or_make(&a.out, now, a.days).map_err(fail)?;
    println!("{}", ca.cert_file().display());
    for leaf in &leaves {
        let (pem, key) = ca.issue(leaf).map_err(fail)?;
        println!("{}\n{}", pem.display(), key.display());
    }
    Ok(())
}
