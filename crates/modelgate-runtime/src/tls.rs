//! The node's TLS, from its configuration: how its gateway listens
//! (`tls_cert`, `tls_key`, `tls_client_ca`, `allow_plaintext`) and how its
//! clients — to the authority, its peers and the upstream — verify servers
//! and present themselves (`ca_file`, `client_cert`, `client_key`).

use modelgate_http::tls::ClientFiles;
use modelgate_node::config::NodeConfig;

use crate::Error;

/// Make every client of this process verify and present as `c` says; with
/// none of `ca_file`, `client_cert`, `client_key`, the system's roots stay.
pub fn configure_clients(c: &NodeConfig) -> Result<(), Error> {
    modelgate_http::tls::configure_clients(&ClientFiles {
        ca_bundle: c.ca_file.clone(),
        cert: c.client_cert.clone(),
        key: c.client_key.clone(),
    })
    .map_err(|e| Error::Config(e.to_string()))
}

/// How the gateway listens (its files loaded; errors name the file).
pub fn transport(c: &NodeConfig) -> Result<modelgate_http::Transport, Error> {
    modelgate_http::Transport::from_paths(
        c.tls_cert.clone(),
        c.tls_key.clone(),
        c.tls_client_ca.clone(),
        c.allow_plaintext,
    )
    .map_err(|e| Error::Config(e.to_string()))
}

/// `https` when the gateway speaks TLS, else `http`.
pub fn scheme(c: &NodeConfig) -> &'static str {
    if c.tls_cert.is_some() {
        "https"
    } else {
        "http"
    }
}
