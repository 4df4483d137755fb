//! The TLS flags: a server's (`--tls-cert`, `--tls-key`, `--tls-client-ca`,
//! `--allow-plaintext`) and every client's (`--ca-bundle`, `--client-cert`,
//! `--client-key`, global).

use std::path::PathBuf;

use clap::Args;
use modelgate_http::tls::ClientFiles;

use crate::Failure;

/// How a server's listeners speak.
#[derive(Args, Clone, Default)]
pub struct ServerTlsArgs {
    /// The PEM certificate chain the listener presents (leaf first). With
    /// --tls-key the listener speaks TLS 1.2/1.3 only; the pair reloads on
    /// SIGHUP and when the files change.
    #[arg(long, value_name = "FILE", env = "MODELGATE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Its PEM private key (PKCS#8, SEC1 or RSA).
    #[arg(long, value_name = "FILE", env = "MODELGATE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: the PEM CA whose certificates every client must present;
    /// handshakes without one are refused before any HTTP.
    #[arg(long, value_name = "FILE", env = "MODELGATE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (refused without
    /// it): tokens and bodies then cross the network in the clear.
    #[arg(long, env = "MODELGATE_ALLOW_PLAINTEXT")]
    allow_plaintext: bool,
}

impl ServerTlsArgs {
    /// The listeners' transport, its files loaded (errors name the file).
    pub fn transport(&self) -> Result<modelgate_http::Transport, Failure> {
        modelgate_http::Transport::from_paths(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_client_ca.clone(),
            self.allow_plaintext,
        )
        .map_err(|e| Failure::Usage(e.to_string()))
    }
}

/// How every outgoing connection verifies `https://` servers.
#[derive(Args, Clone, Default)]
pub struct ClientTlsArgs {
    /// PEM CA certificates to verify https:// servers against (default: the
    /// system's roots). Verification cannot be turned off.
    #[arg(long, global = true, value_name = "FILE", env = "MODELGATE_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
    /// A PEM certificate chain to present to servers that ask (mutual TLS).
    #[arg(long, global = true, value_name = "FILE", env = "MODELGATE_CLIENT_CERT")]
    client_cert: Option<PathBuf>,
    /// Its PEM private key.
    #[arg(long, global = true, value_name = "FILE", env = "MODELGATE_CLIENT_KEY")]
    client_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    /// Make every client of this process use them (nothing when none is given).
    pub fn configure(&self) -> Result<(), Failure> {
        modelgate_http::tls::configure_clients(&ClientFiles {
            ca_bundle: self.ca_bundle.clone(),
            cert: self.client_cert.clone(),
            key: self.client_key.clone(),
        })
        .map_err(|e| Failure::Usage(e.to_string()))
    }
}
