//! `modelgate`: the one binary. It parses arguments (no I/O), then runs a command.
//!
//! Exit codes, for every command: 0 success (verified, done), 1 verification failed
//! (the input was read and is not what it must be), 2 usage error or unreadable input.

#![forbid(unsafe_code)]

mod demo;
mod log_cmd;
mod oms_cmd;
mod progress;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Runtime model governance: sign and verify models (OpenSSF Model Signing), and
/// verify transparency-log checkpoints and proofs offline.
///
/// Exit codes: 0 success, 1 verification failed, 2 usage error or unreadable input.
#[derive(Parser)]
#[command(name = "modelgate", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Run the end-to-end demonstration on this machine (no service needed).
    Demo,
}

/// A command's failure, carrying its exit code.
pub(crate) enum Failure {
    /// Exit 1: checked, and not valid.
    Invalid(String),
    /// Exit 2: could not be checked (bad arguments, unreadable input).
    Usage(String),
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
    let result = match cli.command {
        Command::Keygen(a) => oms_cmd::keygen(a),
        Command::Sign(a) => oms_cmd::sign(a),
        Command::Verify(a) => oms_cmd::verify(a),
        Command::Digest(a) => oms_cmd::digest(a),
        Command::Log { command } => log_cmd::run(command),
        Command::Demo => demo::run(),
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
    }
}
