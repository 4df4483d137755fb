//! `modelgate`: the one binary. It parses arguments (no I/O), then runs a command.
//!
//! Exit codes, for every command: 0 success (verified, done), 1 verification failed
//! (the input was read and is not what it must be), 2 usage error or unreadable input;
//! `exec` adds 3 (contained) and passes on its server's own exit code.

#![forbid(unsafe_code)]

mod authority_cmd;
mod dev_cmd;
mod exec_cmd;
mod generate_cmd;
mod gov_cmd;
mod lineage_cmd;
mod log_cmd;
mod node_cmd;
mod oms_cmd;
mod tls_args;
mod witness_cmd;

use std::process::ExitCode;

/// mimalloc rather than glibc's malloc: the gateway and the authority
/// allocate on many threads at once, and glibc either gives each busy thread
/// an arena that keeps what it freed (hundreds of MiB under load) or, limited
/// to one arena, serialises every thread on that arena's lock (the gateway
/// spent about a fifth of its CPU in malloc, free and that lock). mimalloc's
/// per-thread heaps need neither. The v2 line, and services that return
/// freed memory at once (see [`return_freed_memory_promptly`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// For the runtime node (`node run`, `node serve`): mimalloc gives freed
/// pages back to the system only after a delay, and only when the thread
/// that freed them allocates again, so a node kept about 20 MiB of its
/// start-up's garbage for a minute (idle 62–67 MiB in some runs against
/// 42–45 MiB, over its 64 MiB budget). With no delay the pages go back at
/// once (idle 41–43 MiB). Not for the authority: there it cost 30% of its
/// submissions/s (madvise on every free under load), and its peak stays
/// within budget without it (115.7 MiB of 128 MiB). mimalloc reads its
/// options when the process starts, before `main`, so the process
/// re-executes itself once with the option set (`exec` keeps the PID); if
/// that fails it runs with the default.
pub(crate) fn return_freed_memory_promptly() {
    use std::os::unix::process::CommandExt as _;
    const OPTION: &str = "MIMALLOC_PURGE_DELAY";
    if std::env::var_os(OPTION).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    // `exec` returns only on failure; then we run with the default, which
    // costs memory, not correctness. (No log: logging is not set up yet.)
    let _ = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(OPTION, "0")
        .exec();
}

use clap::{Parser, Subcommand};

/// Runtime model governance: sign and verify models (OpenSSF Model Signing), run the
/// governance authority, approve and revoke models, verify logs and proofs offline.
///
/// Exit codes: 0 success, 1 verification failed, 2 usage error or unreadable input.
#[derive(Parser)]
#[command(name = "modelgate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client_tls: tls_args::ClientTlsArgs,
    /// The PKCS#11 module (a shared library) for `pkcs11:` key URIs that
    /// name none with `module-path`, e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, global = true, value_name = "PATH", env = "MODELGATE_PKCS11_MODULE")]
    pkcs11_module: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a signing key pair: PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM).
    Keygen(oms_cmd::KeygenArgs),
    /// Sign a model directory or file, writing an OMS (Sigstore bundle v0.3) signature.
    Sign(oms_cmd::SignArgs),
    /// Verify a model against its OMS signature: signature, statement and every file.
    Verify(oms_cmd::VerifyArgs),
    /// Print a model's OMS root digest (hex), the identity used everywhere else.
    Digest(oms_cmd::DigestArgs),
    /// Offline transparency-log tools: verify checkpoints and tlog-proofs, make note keys.
    Log {
        #[command(subcommand)]
        command: log_cmd::LogCommand,
    },
    /// Create, run and administer the authority (the governance log's sequencer).
    Authority {
        #[command(subcommand)]
        command: authority_cmd::AuthorityCommand,
    },
    /// Trust-root administration with the offline root keys.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Models in the governance log.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Approve a model for scopes and a time window (one or more approvers).
    Approve(gov_cmd::ApproveArgs),
    /// Revoke a model: it stops running everywhere from this entry on.
    Revoke(gov_cmd::RevokeArgs),
    /// Grant a time-bounded exception: the model may run in scopes without an
    /// approval until it expires (ticket mandatory).
    Exception(gov_cmd::ExceptionArgs),
    /// Policy sets (Cedar).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Runtime nodes: create and enroll a node, check it once, run it, or serve as a governed gateway.
    Node {
        #[command(subcommand)]
        command: node_cmd::NodeCommand,
    },
    /// Add your signature to a signed entry file (e.g. a second approver).
    Cosign(gov_cmd::CosignArgs),
    /// Submit a signed entry file to the authority.
    Submit(gov_cmd::SubmitArgs),
    /// Run an inference server under governance: start it only once the model
    /// is Serving, stop it (SIGTERM, then SIGKILL) the moment it is contained.
    ///
    /// Exit 3 with the reason when the model is contained; the server's own
    /// exit code when it exits by itself.
    Exec(exec_cmd::ExecArgs),
    /// Lineage proofs: verify offline that an inference happened as recorded.
    Lineage {
        #[command(subcommand)]
        command: lineage_cmd::LineageCommand,
    },
    /// A transparency-log witness (c2sp.org/tlog-witness): it cosigns the
    /// authority's checkpoints only when they extend what it saw before.
    Witness {
        #[command(subcommand)]
        command: witness_cmd::WitnessCommand,
    },
    /// Run the end-to-end demonstration on this machine (no service needed).
    ///
    /// With --serve: the live demonstration. An authority with its console,
    /// two nodes and their gateways and an inference server; it prints
    /// `console: URL`, then plays, until Ctrl-C, calls through both gateways,
    /// a changed byte in node 2's model (contained) and its restore, a
    /// revocation contained on both nodes, and the authority cut off past the
    /// nodes' staleness bound (SyncInterrupted) and back.
    Demo(DemoArgs),
    /// Man pages and shell completions, from this CLI's definition.
    Generate {
        #[command(subcommand)]
        command: generate_cmd::GenerateCommand,
    },
    /// Development mode: an authority with every role's keys on this disk
    /// (UNFIT FOR PRODUCTION), and a model governed in one command.
    Dev {
        #[command(subcommand)]
        command: dev_cmd::DevCommand,
    },
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Serve the console and play the live demonstration in a loop.
    #[arg(long)]
    serve: bool,
    /// Where the authority and its console listen (with --serve).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7370", requires = "serve")]
    listen: std::net::SocketAddr,
    /// Stop after this many rounds (with --serve; default: until Ctrl-C).
    #[arg(long, value_name = "N", requires = "serve")]
    rounds: Option<u64>,
    /// The inference server behind the gateways (with --serve): `auto` runs
    /// a real llama.cpp server with a generated GGUF model when the Python
    /// package llama-cpp-python is importable (by $MODELGATE_PYTHON, else
    /// python3), otherwise the built-in scorer; `llama-cpp` fails when it
    /// cannot run; `builtin` never tries.
    #[arg(long, value_enum, default_value = "auto", requires = "serve")]
    inference: modelgate_demo::inference::Inference,
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Write the next trust-root version: add or remove principals, keys and
    /// roles, set thresholds, add witnesses. It is validated before it is written.
    Edit(Box<gov_cmd::TrustEditArgs>),
    /// Sign a trust-root document with root key(s).
    Sign(gov_cmd::TrustSignArgs),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Register a signed model (its OMS bundle) in the governance log.
    Register(gov_cmd::RegisterArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a Cedar policy file against the schema and publish it.
    Publish(gov_cmd::PolicyArgs),
}

/// A command's failure, carrying its exit code.
pub(crate) enum Failure {
    /// Exit 1: checked, and not valid.
    Invalid(String),
    /// Exit 2: could not be checked (bad arguments, unreadable input).
    Usage(String),
    /// Exit 3: `exec` stopped its server because the model was contained.
    Contained(String),
    /// `exec`: the server exited by itself; pass its exit code on.
    Child(u8, String),
}

impl From<modelgate_runtime::Error> for Failure {
    fn from(e: modelgate_runtime::Error) -> Self {
        Failure::Usage(e.to_string())
    }
}

impl From<modelgate_node::NodeError> for Failure {
    fn from(e: modelgate_node::NodeError) -> Self {
        Failure::Usage(e.to_string())
    }
}

/// Diagnostics to stderr (RUST_LOG overrides; warnings by default). The
/// node's own events go to stdout as JSON lines.
fn demo(a: &DemoArgs) -> Result<(), modelgate_demo::Failure> {
    if !a.serve {
        return modelgate_demo::run(&mut |line| println!("{line}"));
    }
    let stop = modelgate_demo::live::stop_on_ctrl_c();
    let o = modelgate_demo::live::LiveOptions {
        listen: a.listen,
        rounds: a.rounds,
        inference: a.inference,
    };
    modelgate_demo::live::serve(
        &o,
        &mut |line| {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        },
        &stop,
    )
}

/// Logs for a one-shot command: warnings and errors on stderr (stdout is
/// the command's answer), `RUST_LOG` to see more. Servers log through
/// `authority_cmd::init_server_logging` (text or JSON lines).
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// One JSON line on stdout, flushed (scripts and tests follow it live).
pub(crate) fn print_line(v: &serde_json::Value) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}").and_then(|()| out.flush());
}

impl From<modelgate_oms::Error> for Failure {
    fn from(e: modelgate_oms::Error) -> Self {
        if e.is_verification_failure() {
            Failure::Invalid(e.to_string())
        } else {
            Failure::Usage(e.to_string())
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if let Err(Failure::Usage(m) | Failure::Invalid(m) | Failure::Contained(m) | Failure::Child(_, m)) =
        cli.client_tls.configure()
    {
        eprintln!("modelgate: {m}");
        return ExitCode::from(2);
    }
    if let Some(module) = &cli.pkcs11_module {
        modelgate_signer::pkcs11::set_default_module(module);
    }
    let result = match cli.command {
        Command::Keygen(a) => oms_cmd::keygen(a),
        Command::Sign(a) => oms_cmd::sign(a),
        Command::Verify(a) => oms_cmd::verify(a),
        Command::Digest(a) => oms_cmd::digest(a),
        Command::Log { command } => log_cmd::run(command),
        Command::Authority { command } => authority_cmd::run(command),
        Command::Trust {
            command: TrustCommand::Edit(a),
        } => gov_cmd::trust_edit(*a),
        Command::Trust {
            command: TrustCommand::Sign(a),
        } => gov_cmd::trust_sign(a),
        Command::Model {
            command: ModelCommand::Register(a),
        } => gov_cmd::register(a),
        Command::Approve(a) => gov_cmd::approve(a),
        Command::Revoke(a) => gov_cmd::revoke(a),
        Command::Exception(a) => gov_cmd::exception(a),
        Command::Policy {
            command: PolicyCommand::Publish(a),
        } => gov_cmd::policy_publish(a),
        Command::Node { command } => node_cmd::run(command),
        Command::Cosign(a) => gov_cmd::cosign(a),
        Command::Submit(a) => gov_cmd::submit(a),
        Command::Exec(a) => exec_cmd::run(a),
        Command::Lineage { command } => lineage_cmd::run(command),
        Command::Witness { command } => witness_cmd::run(command),
        Command::Dev { command } => dev_cmd::run(command),
        Command::Generate { command } => generate_cmd::run(command, <Cli as clap::CommandFactory>::command()),
        Command::Demo(a) => demo(&a).map_err(|e| match e {
            modelgate_demo::Failure::Failed(m) => Failure::Invalid(m),
            modelgate_demo::Failure::Setup(m) => Failure::Usage(m),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(msg)) => {
            eprintln!("modelgate: {msg}");
            ExitCode::from(1)
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("modelgate: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Contained(msg)) => {
            eprintln!("modelgate: contained: {msg}");
            ExitCode::from(3)
        }
        Err(Failure::Child(code, msg)) => {
            eprintln!("modelgate: {msg}");
            ExitCode::from(code)
        }
    }
}
