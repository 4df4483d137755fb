//! TLS for every modelgate listener and every outgoing connection, on
//! rustls with one crypto provider for the whole process: *ring*, which is
//! already the ECDSA verifier of model signatures (aws-lc-rs, rustls'
//! other provider, would add a C and cmake build for nothing we lack).
//!
//! Servers ([`ServerTls`]) speak TLS 1.2 and 1.3 only, offer ALPN `h2` and
//! `http/1.1`, read a PEM chain (leaf first) and a PKCS#8, SEC1 or RSA key,
//! and with a client CA refuse, in the handshake, any client without a
//! certificate that chains to it. Their pair reloads on SIGHUP and when its
//! files change ([`ServerTls::watch`]); a new pair that does not load
//! leaves the old one serving, logged and counted
//! (`modelgate_tls_reload_failures_total`). Connections already open keep
//! the keys they began with.
//!
//! Clients ([`ClientTls`]) verify servers against the system's roots or a
//! named bundle, optionally presenting a certificate. There is no way to
//! turn verification off.
//!
//! A listener without TLS on an address other than loopback refuses to
//! start unless plaintext is explicitly allowed ([`check_plaintext`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

/// Why a TLS configuration could not be made. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A certificate file holds no PEM certificate.
    #[error("{}: no certificate in it (expected PEM CERTIFICATE blocks, the leaf first)", file.display())]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// A key file holds no usable private key.
    #[error("{}: not a PEM private key (PKCS#8, SEC1 or RSA): {why}", file.display())]
    Key {
        /// The file.
        file: PathBuf,
        /// What was wrong.
        why: String,
    },
    /// The key is not the certificate's.
    #[error("{} is not the private key of the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the certificate, key or CA.
    #[error("{}: {why}", file.display())]
    Refused {
        /// The file the refused item came from.
        file: PathBuf,
        /// What rustls said.
        why: String,
    },
    /// A certificate was given without its key, or a key without its certificate.
    #[error("{0}")]
    Incomplete(String),
    /// A listener off loopback would speak plain HTTP.
    #[error(
        "{addr} is not a loopback address and has no TLS: give a certificate and key \
         (--tls-cert/--tls-key, or tls_cert/tls_key in a node's configuration), or allow \
         plain HTTP explicitly (--allow-plaintext, allow_plaintext = true)"
    )]
    Plaintext {
        /// The address.
        addr: SocketAddr,
    },
}

/// The process's one crypto provider.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    Arc::clone(P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read(file: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(file).map_err(|source| TlsError::Read {
        file: file.to_owned(),
        source,
    })
}

/// The PEM certificates of `file`, in order.
pub fn load_chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Refused {
            file: file.to_owned(),
            why: format!("a PEM certificate does not parse: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { file: file.to_owned() });
    }
    Ok(chain)
}

/// The PEM private key of `file` (PKCS#8, SEC1 or RSA).
pub fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(file)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Key {
        file: file.to_owned(),
        why: e.to_string(),
    })
}

/// The CA certificates of `file` as a root store.
pub fn load_roots(file: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_chain(file)? {
        roots.add(c).map_err(|e| TlsError::Refused {
            file: file.to_owned(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

/// A server's certificate files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFiles {
    /// PEM chain, the leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// CA whose certificates clients must present (mutual TLS); none: no
    /// client certificate is asked for.
    pub client_ca: Option<PathBuf>,
}

impl ServerFiles {
    /// From optional flags: both of certificate and key, or neither.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        client_ca: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(Self { cert, key, client_ca })),
            (None, None) if client_ca.is_none() => Ok(None),
            (None, None) => Err(TlsError::Incomplete(
                "a client CA needs a server certificate and key as well".into(),
            )),
            (Some(_), None) => Err(TlsError::Incomplete("a TLS certificate needs its key as well".into())),
            (None, Some(_)) => Err(TlsError::Incomplete("a TLS key needs its certificate as well".into())),
        }
    }

    fn config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let chain = load_chain(&self.cert)?;
        let key = load_key(&self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Incomplete(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                        .build()
                        .map_err(|e| TlsError::Refused {
                            file: ca.clone(),
                            why: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
            },
            e => TlsError::Refused {
                file: self.key.clone(),
                why: e.to_string(),
            },
        })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        Ok(config)
    }

    /// What identifies the files' current contents: a change to any of
    /// them (rewritten, replaced by rename, touched) changes it.
    fn stamp(&self) -> Vec<Option<FileStamp>> {
        use std::os::unix::fs::MetadataExt as _;
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|f| {
                std::fs::metadata(f)
                    .ok()
                    .map(|m| (m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
            })
            .collect()
    }
}

/// A file's inode, size, mtime and ctime (seconds and nanoseconds).
type FileStamp = (u64, u64, i64, i64, i64, i64);

/// Reloads that took effect, and reloads refused (the old pair kept), in
/// this process.
static RELOADS: AtomicU64 = AtomicU64::new(0);
static RELOAD_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Whether a listener of this process speaks plain HTTP off loopback.
static PLAINTEXT_OFF_LOOPBACK: AtomicBool = AtomicBool::new(false);

/// A server's TLS: its current configuration, replaced whole on reload.
pub struct ServerTls {
    files: ServerFiles,
    /// Whether a watcher runs: listeners sharing this TLS (an API and its
    /// console) share one, so one change is one reload.
    watching: AtomicBool,
    current: RwLock<Arc<rustls::ServerConfig>>,
    stamp: Mutex<Vec<Option<FileStamp>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Load `files`; every error names the file at fault.
    pub fn load(files: ServerFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = files.stamp();
        let config = files.config()?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamp),
            watching: AtomicBool::new(false),
        }))
    }

    /// The files it serves.
    pub fn files(&self) -> &ServerFiles {
        &self.files
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration new connections are accepted with.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Load the files again. On success new connections use the new pair;
    /// on failure the old one keeps serving, and the failure is logged and
    /// counted. Connections already open are not touched either way.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamp = self.files.stamp();
        if let Ok(mut s) = self.stamp.lock() {
            *s = stamp;
        }
        match self.files.config() {
            Ok(c) => {
                match self.current.write() {
                    Ok(mut cur) => *cur = Arc::new(c),
                    Err(p) => *p.into_inner() = Arc::new(c),
                }
                RELOADS.fetch_add(1, Ordering::Relaxed);
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                RELOAD_FAILURES.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "the new TLS certificate or key does not load: the previous pair keeps serving");
                Err(e)
            }
        }
    }

    /// Whether the files changed since they were last loaded.
    fn changed(&self) -> bool {
        let now = self.files.stamp();
        self.stamp.lock().is_ok_and(|s| *s != now)
    }

    /// Reload on SIGHUP and whenever the files change (looked at every
    /// `poll`), until the runtime stops; once, however many listeners
    /// serve it. Needs a Tokio runtime.
    pub fn watch(self: &Arc<Self>, poll: Duration) {
        use tokio::signal::unix::{signal, SignalKind};
        if self.watching.swap(true, Ordering::SeqCst) {
            return;
        }
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            let mut hup = signal(SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(poll);
            loop {
                let hangup = async {
                    match hup.as_mut() {
                        Some(h) => {
                            h.recv().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let forced = tokio::select! {
                    () = hangup => true,
                    _ = tick.tick() => false,
                };
                if forced || tls.changed() {
                    let _ = tls.reload();
                }
            }
        });
    }
}

/// Refuse plain HTTP on `addr` unless it is loopback or `allowed`; when
/// allowed off loopback, warn and remember it ([`plaintext_off_loopback`]).
pub fn check_plaintext(addr: SocketAddr, tls: bool, allowed: bool) -> Result<(), TlsError> {
    if tls || addr.ip().is_loopback() {
        return Ok(());
    }
    if !allowed {
        return Err(TlsError::Plaintext { addr });
    }
    PLAINTEXT_OFF_LOOPBACK.store(true, Ordering::Relaxed);
    tracing::warn!(%addr, "serving plain HTTP on a non-loopback address (--allow-plaintext): tokens, prompts and approvals cross the network readable by anyone on the path");
    Ok(())
}

/// Whether this process serves plain HTTP off loopback (allowed explicitly).
pub fn plaintext_off_loopback() -> bool {
    PLAINTEXT_OFF_LOOPBACK.load(Ordering::Relaxed)
}

/// The TLS counters, for a server's `/metrics`.
pub fn metrics(o: &mut crate::prometheus::Text) {
    use crate::prometheus::Kind;
    o.single(
        "modelgate_tls_reloads_total",
        Kind::Counter,
        "TLS certificate reloads that took effect.",
        RELOADS.load(Ordering::Relaxed),
    );
    o.single(
        "modelgate_tls_reload_failures_total",
        Kind::Counter,
        "TLS reloads refused: the new certificate or key did not load, the previous pair kept serving.",
        RELOAD_FAILURES.load(Ordering::Relaxed),
    );
    o.single(
        "modelgate_plaintext_off_loopback",
        Kind::Gauge,
        "1 when a listener serves plain HTTP on a non-loopback address (--allow-plaintext).",
        u8::from(plaintext_off_loopback()),
    );
}

/// What a client's certificate says of its holder: the subject alternative
/// names of the leaf the handshake verified. Requests that came over mutual
/// TLS carry it as an extension.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// URI names (`spiffe://example.org/ns/credit/sa/scoring`).
    pub uris: Vec<String>,
    /// DNS names.
    pub dns: Vec<String>,
}

impl PeerCertificate {
    /// The names of a verified leaf certificate.
    pub fn of(leaf: &[u8]) -> Self {
        use x509_cert::der::Decode as _;
        use x509_cert::ext::pkix::name::GeneralName;
        let mut out = Self::default();
        let Ok(cert) = x509_cert::Certificate::from_der(leaf) else {
            return out;
        };
        let san = const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME;
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            if ext.extn_id != san {
                continue;
            }
            let Ok(names) = x509_cert::ext::pkix::SubjectAltName::from_der(ext.extn_value.as_bytes()) else {
                continue;
            };
            for n in names.0 {
                match n {
                    GeneralName::UniformResourceIdentifier(u) => out.uris.push(u.to_string()),
                    GeneralName::DnsName(d) => out.dns.push(d.to_string()),
                    _ => {}
                }
            }
        }
        out
    }

    /// Whether `name` (a URI with a scheme, else a DNS name) is one of its names.
    pub fn names(&self, name: &str) -> bool {
        if name.contains("://") {
            self.uris.iter().any(|u| u == name)
        } else {
            self.dns.iter().any(|d| d.eq_ignore_ascii_case(name))
        }
    }
}

/// A client's certificate files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientFiles {
    /// PEM CA certificates servers are verified against; none: the system's roots.
    pub ca_bundle: Option<PathBuf>,
    /// A PEM certificate chain to present (mutual TLS).
    pub cert: Option<PathBuf>,
    /// Its PEM private key.
    pub key: Option<PathBuf>,
}

/// How clients verify servers, and what they present.
#[derive(Clone, Debug)]
pub struct ClientTls {
    roots: Arc<Vec<CertificateDer<'static>>>,
    identity: Option<Identity>,
}

/// A client's chain, its key, and the key's PEM text (ureq reads it so).
type Identity = (Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>, Arc<Vec<u8>>);

impl ClientTls {
    /// Load `files`: the bundle or, without one, the system's roots.
    pub fn load(files: &ClientFiles) -> Result<Self, TlsError> {
        let roots = match &files.ca_bundle {
            Some(f) => load_chain(f)?,
            None => system_roots(),
        };
        let identity = match (&files.cert, &files.key) {
            (Some(c), Some(k)) => {
                let chain = load_chain(c)?;
                let key = load_key(k)?;
                // The same check a server's pair gets, so a mismatch is named here
                // and not as a handshake failure at the first call.
                rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()).map_err(|_| {
                    TlsError::Mismatch {
                        cert: c.clone(),
                        key: k.clone(),
                    }
                })?;
                Some((chain, Arc::new(key), Arc::new(read(k)?)))
            }
            (None, None) => None,
            _ => {
                return Err(TlsError::Incomplete(
                    "a client certificate needs its key, and a key its certificate".into(),
                ))
            }
        };
        Ok(Self {
            roots: Arc::new(roots),
            identity,
        })
    }

    /// A rustls client configuration (ALPN `http/1.1`).
    pub fn rustls(&self) -> Result<rustls::ClientConfig, TlsError> {
        let mut store = RootCertStore::empty();
        let (_, _) = store.add_parsable_certificates(self.roots.iter().cloned());
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Incomplete(e.to_string()))?
            .with_root_certificates(store);
        let mut c = match &self.identity {
            None => b.with_no_client_auth(),
            Some((chain, key, _)) => b
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .map_err(|e| TlsError::Incomplete(format!("the client certificate: {e}")))?,
        };
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(c)
    }

    /// ureq's form of it.
    pub fn ureq(&self) -> ureq::tls::TlsConfig {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let roots: Vec<Certificate<'static>> = self.roots.iter().map(|c| Certificate::from_der(c).to_owned()).collect();
        let cert = self.identity.as_ref().and_then(|(chain, _, pem)| {
            let chain: Vec<Certificate<'static>> = chain.iter().map(|c| Certificate::from_der(c).to_owned()).collect();
            // It parsed as a key in `load`: this cannot fail on the same bytes.
            PrivateKey::from_pem(pem)
                .ok()
                .map(|k| ClientCert::new_with_certs(&chain, k))
        });
        TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&roots))
            .client_cert(cert)
            .unversioned_rustls_crypto_provider(provider())
            .build()
    }
}

fn system_roots() -> Vec<CertificateDer<'static>> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's CA certificates");
    }
    found.certs
}

/// The process's clients' TLS, replaced by [`configure_clients`]: every
/// outgoing connection of a process trusts the same roots and presents the
/// same certificate, set once from its flags or configuration before its
/// first call.
static CLIENTS: RwLock<Option<Arc<ClientTls>>> = RwLock::new(None);

/// Make every client made from now on use `files`; with none of them
/// given, clients keep what they had (the system's roots by default).
pub fn configure_clients(files: &ClientFiles) -> Result<(), TlsError> {
    if *files == ClientFiles::default() {
        return Ok(());
    }
    let t = Arc::new(ClientTls::load(files)?);
    match CLIENTS.write() {
        Ok(mut c) => *c = Some(t),
        Err(p) => *p.into_inner() = Some(t),
    }
    Ok(())
}

/// The process's clients' TLS (the system's roots unless configured).
pub fn clients() -> Arc<ClientTls> {
    if let Ok(c) = CLIENTS.read() {
        if let Some(t) = c.as_ref() {
            return Arc::clone(t);
        }
    }
    static SYSTEM: OnceLock<Arc<ClientTls>> = OnceLock::new();
    Arc::clone(SYSTEM.get_or_init(|| {
        Arc::new(ClientTls {
            roots: Arc::new(system_roots()),
            identity: None,
        })
    }))
}
