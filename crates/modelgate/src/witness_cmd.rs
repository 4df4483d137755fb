//! `modelgate witness`: a C2SP tlog-witness for the governance log (or any
//! log whose checkpoints are C2SP signed notes).

use std::path::PathBuf;

use clap::Subcommand;
use modelgate_tlog::VerifierKey;
use serde_json::json;

use crate::Failure;

/// `modelgate witness ...`
#[derive(Subcommand)]
pub enum WitnessCommand {
    /// Create a witness: its cosignature/v1 key and its (empty) state in DIR.
    /// Prints the verifier key to name in the trust root (`trust edit --add-witness`).
    Init {
        /// The witness's data directory (created; refused if it holds a witness).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// The witness's name, a schema-less URL such as witness.example.org/w1.
        #[arg(long)]
        name: String,
        /// Keep the witness key on a PKCS#11 token: a `pkcs11:` URI naming
        /// an Ed25519 key (recorded in DIR; see docs/keys.md). Default: a
        /// new key file in DIR.
        #[arg(long, value_name = "URI")]
        key: Option<String>,
    },
    /// Serve POST /add-checkpoint (c2sp.org/tlog-witness) for the given logs:
    /// cosign each checkpoint that extends the one last recorded, recorded
    /// durably before the answer. Prints {"listening": URL} when ready.
    Serve {
        /// The witness's data directory (made by `witness init`).
        #[arg(long, value_name = "DIR")]
        data: PathBuf,
        /// Where to listen.
        #[arg(
            long,
            value_name = "ADDR",
            default_value = "127.0.0.1:7380",
            env = "MODELGATE_WITNESS_LISTEN"
        )]
        listen: String,
        /// A log's verifier key (its name is the log's origin); repeat for several logs.
        #[arg(long = "log", value_name = "VKEY", required = true)]
        logs: Vec<String>,
        #[command(flatten)]
        tls: crate::tls_args::ServerTlsArgs,
    },
}

pub fn run(c: WitnessCommand) -> Result<(), Failure> {
    let fail = |e: modelgate_witness::WitnessError| Failure::Usage(e.to_string());
    match c {
        WitnessCommand::Init { data, name, key } => {
            let v = modelgate_witness::init_with(&data, &name, key.as_deref()).map_err(fail)?;
            println!("{v}");
            Ok(())
        }
        WitnessCommand::Serve {
            data,
            listen,
            logs,
            tls,
        } => {
            let transport = tls.transport()?;
            crate::init_logging();
            let keys = logs
                .iter()
                .map(|l| VerifierKey::parse(l.trim()).map_err(|e| Failure::Usage(format!("--log {l}: {e}"))))
                .collect::<Result<Vec<_>, _>>()?;
            let w = std::sync::Arc::new(modelgate_witness::Witness::open(&data, keys).map_err(fail)?);
            let rt = modelgate_http::server_runtime(8)
                .map_err(|e| Failure::Usage(format!("starting the async runtime: {e}")))?;
            rt.block_on(async move {
                let listener = modelgate_http::Listener::bind(&listen, &transport)
                    .await
                    .map_err(|e| Failure::Usage(e.to_string()))?;
                let url = listener
                    .url()
                    .map_err(|e| Failure::Usage(format!("listening address: {e}")))?;
                crate::print_line(&json!({"listening": url, "witness": w.verifier().to_string()}));
                modelgate_http::serve(
                    listener,
                    modelgate_witness::router(w),
                    modelgate_http::Limits::default(),
                    modelgate_http::shutdown_signal(),
                )
                .await
                .map_err(|e| Failure::Usage(format!("serving: {e}")))
            })
        }
    }
}
