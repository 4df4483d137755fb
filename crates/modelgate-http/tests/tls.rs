//! Real TLS handshakes against the listener, in-process: versions, ALPN,
//! wrong and expired certificates, mutual TLS refused before any HTTP, plain
//! HTTP sent to a TLS port, errors that name the file, and reloads (a bad
//! pair keeps the old one; 1,000 requests in flight across a reload all
//! finish).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;

use modelgate_http::tls::{ClientFiles, ClientTls, PeerCertificate, ServerFiles, ServerTls};
use modelgate_http::{Limits, Listener};
use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, SanType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// A CA in a directory, issuing leaves into it.
struct Pki {
    dir: PathBuf,
    params: CertificateParams,
    key: KeyPair,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = at(now() - DAY);
        params.not_after = at(now() + DAY);
        let cert = params.self_signed(&key).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Self {
            dir: dir.to_owned(),
            params,
            key,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// NAME.pem and NAME.key, valid from `from` to `until` (Unix times).
    fn leaf(&self, name: &str, sans: &[&str], client: bool, from: i64, until: i64) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        for s in sans {
            p.subject_alt_names.push(if let Ok(ip) = s.parse() {
                SanType::IpAddress(ip)
            } else if s.contains("://") {
                SanType::URI((*s).try_into().unwrap())
            } else {
                SanType::DnsName((*s).try_into().unwrap())
            });
        }
        p.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        p.not_before = at(from);
        p.not_after = at(until);
        let cert = p
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn server(&self, name: &str) -> (PathBuf, PathBuf) {
        self.leaf(name, &["127.0.0.1", "localhost"], false, now() - DAY, now() + DAY)
    }
}

fn client_tls(ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> ClientTls {
    ClientTls::load(&ClientFiles {
        ca_bundle: Some(ca.to_owned()),
        cert: identity.map(|i| i.0.clone()),
        key: identity.map(|i| i.1.clone()),
    })
    .unwrap()
}

/// Serve `app` over `tls` on a loopback port, in the background.
async fn serve(tls: Arc<ServerTls>, app: axum::Router, limits: Limits) -> std::net::SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    tokio::spawn(modelgate_http::serve(
        Listener::with_tls(tcp, Some(tls)),
        app,
        limits,
        std::future::pending(),
    ));
    addr
}

/// Connect with `config`; the leaf the server presented, and the stream.
async fn connect(
    addr: std::net::SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// GET `path` over HTTP/1.1 on a TLS connection: (status, body).
async fn get_over(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt as _;
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

async fn fetch(addr: std::net::SocketAddr, config: rustls::ClientConfig) -> Result<(u16, String), String> {
    let s = connect(addr, config).await.map_err(|e| e.to_string())?;
    get_over(s, "/").await
}

fn ok_app() -> axum::Router {
    axum::Router::new().route("/", get(|| async { "ok" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_12_and_13_and_h2_are_served_and_wrong_or_expired_certificates_and_plain_http_are_not() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(&d.path().join("ca"), "test CA");
    let (cert, key) = pki.server("server");
    let tls = ServerTls::load(ServerFiles {
        cert,
        key,
        client_ca: None,
    })
    .unwrap();
    let addr = serve(tls, ok_app(), Limits::default()).await;
    let client = client_tls(&pki.ca(), None);

    // TLS 1.3 (the default) and HTTP/1.1.
    let s = connect(addr, client.rustls().unwrap()).await.unwrap();
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(get_over(s, "/").await.unwrap(), (200, "ok".into()));

    // TLS 1.2.
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(modelgate_http::tls::load_chain(&pki.ca()).unwrap());
    let v12 = rustls::ClientConfig::builder_with_provider(modelgate_http::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let s = connect(addr, v12).await.unwrap();
    assert_eq!(s.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(get_over(s, "/").await.unwrap(), (200, "ok".into()));

    // HTTP/2 by ALPN.
    let mut h2 = client.rustls().unwrap();
    h2.alpn_protocols = vec![b"h2".to_vec()];
    let s = connect(addr, h2).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(s))
            .await
            .unwrap();
    tokio::spawn(conn);
    let r = send
        .send_request(
            hyper::Request::get("https://127.0.0.1/")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), hyper::Version::HTTP_2);

    // A client that trusts another CA refuses the server.
    let other = Pki::new(&d.path().join("other"), "another CA");
    let e = fetch(addr, client_tls(&other.ca(), None).rustls().unwrap())
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer") || e.contains("unknown issuer"), "{e}");

    // Plain HTTP to the TLS port: no HTTP answer, at most a TLS alert record.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    assert!(
        got.is_empty() || got[0] == 0x15,
        "plain HTTP got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(!String::from_utf8_lossy(&got).contains("HTTP/"), "{got:?}");

    // An expired server certificate is refused by a client.
    let expired = pki.leaf("expired", &["127.0.0.1"], false, now() - 10 * DAY, now() - DAY);
    let tls = ServerTls::load(ServerFiles {
        cert: expired.0,
        key: expired.1,
        client_ca: None,
    })
    .unwrap();
    let old = serve(tls, ok_app(), Limits::default()).await;
    let e = fetch(old, client.rustls().unwrap()).await.unwrap_err();
    assert!(e.contains("Expired") || e.contains("expired"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_valid_certificate_before_any_http() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(&d.path().join("ca"), "test CA");
    let (cert, key) = pki.server("server");
    let tls = ServerTls::load(ServerFiles {
        cert,
        key,
        client_ca: Some(pki.ca()),
    })
    .unwrap();
    assert!(tls.mutual());
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&reached);
    let app = axum::Router::new().route(
        "/",
        get(move |ext: axum::http::Extensions| {
            let seen = Arc::clone(&seen);
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                let p = ext.get::<PeerCertificate>().cloned().unwrap_or_default();
                format!("{}|{}", p.uris.join(","), p.dns.join(","))
            }
        }),
    );
    let addr = serve(tls, app, Limits::default()).await;

    let none = fetch(addr, client_tls(&pki.ca(), None).rustls().unwrap()).await;
    assert!(none.is_err(), "{none:?}");
    let other = Pki::new(&d.path().join("other"), "another CA");
    let foreign = other.leaf("foreign", &["spiffe://example.org/x"], true, now() - DAY, now() + DAY);
    let r = fetch(addr, client_tls(&pki.ca(), Some(&foreign)).rustls().unwrap()).await;
    assert!(r.is_err(), "{r:?}");
    let expired = pki.leaf("old", &["spiffe://example.org/x"], true, now() - 10 * DAY, now() - DAY);
    let r = fetch(addr, client_tls(&pki.ca(), Some(&expired)).rustls().unwrap()).await;
    assert!(r.is_err(), "{r:?}");
    assert_eq!(reached.load(Ordering::SeqCst), 0, "a refused client reached a handler");

    let good = pki.leaf(
        "scoring",
        &["spiffe://example.org/scoring", "scoring.example.org"],
        true,
        now() - DAY,
        now() + DAY,
    );
    let r = fetch(addr, client_tls(&pki.ca(), Some(&good)).rustls().unwrap())
        .await
        .unwrap();
    assert_eq!(r, (200, "spiffe://example.org/scoring|scoring.example.org".into()));
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    let p = PeerCertificate {
        uris: vec!["spiffe://example.org/scoring".into()],
        dns: vec!["scoring.example.org".into()],
    };
    assert!(p.names("spiffe://example.org/scoring") && p.names("SCORING.example.org"));
    assert!(!p.names("spiffe://example.org/other") && !p.names("example.org"));
}

#[test]
fn errors_name_the_file_and_plain_http_off_loopback_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(&d.path().join("ca"), "test CA");
    let (cert, key) = pki.server("a");
    let (_, other_key) = pki.server("b");
    let load = |cert: &Path, key: &Path| {
        ServerTls::load(ServerFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: None,
        })
        .unwrap_err()
        .to_string()
    };
    let missing = d.path().join("missing.pem");
    assert!(load(&missing, &key).contains("missing.pem"), "{}", load(&missing, &key));
    let garbage = d.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let e = load(&garbage, &key);
    assert!(e.contains("garbage.pem") && e.contains("no certificate"), "{e}");
    let e = load(&cert, &garbage);
    assert!(e.contains("garbage.pem") && e.contains("private key"), "{e}");
    let e = load(&cert, &other_key);
    assert!(
        e.contains("b.key") && e.contains("a.pem") && e.contains("not the private key"),
        "{e}"
    );
    assert!(ServerFiles::from_flags(Some(cert.clone()), None, None).is_err());
    assert!(ServerFiles::from_flags(None, None, Some(cert.clone())).is_err());
    assert!(ServerFiles::from_flags(None, None, None).unwrap().is_none());
    let e = ClientTls::load(&ClientFiles {
        ca_bundle: Some(pki.ca()),
        cert: Some(cert.clone()),
        key: Some(other_key.clone()),
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("not the private key"), "{e}");

    let off = "0.0.0.0:7000".parse().unwrap();
    let e = modelgate_http::tls::check_plaintext(off, false, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0.0.0.0:7000") && e.contains("--allow-plaintext"), "{e}");
    assert!(modelgate_http::tls::check_plaintext(off, true, false).is_ok());
    assert!(modelgate_http::tls::check_plaintext("127.0.0.1:7000".parse().unwrap(), false, false).is_ok());
    assert!(modelgate_http::tls::check_plaintext("[::1]:7000".parse().unwrap(), false, false).is_ok());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let e = rt
        .block_on(Listener::bind("0.0.0.0:0", &modelgate_http::Transport::default()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("not a loopback address"), "{e}");
}

/// The DER of the leaf a fresh connection is shown.
async fn leaf_shown(addr: std::net::SocketAddr, client: &ClientTls) -> Vec<u8> {
    let s = connect(addr, client.rustls().unwrap()).await.unwrap();
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_a_thousand_requests_in_flight_fails_none_and_a_bad_pair_keeps_the_old() {
    const IN_FLIGHT: usize = 1_000;
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(&d.path().join("ca"), "test CA");
    let (cert, key) = pki.server("server");
    let tls = ServerTls::load(ServerFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: None,
    })
    .unwrap();
    let (release, released) = tokio::sync::watch::channel(false);
    let waiting = Arc::new(AtomicUsize::new(0));
    let w = Arc::clone(&waiting);
    let app = axum::Router::new().route(
        "/",
        get(move || {
            let (w, mut released) = (Arc::clone(&w), released.clone());
            async move {
                w.fetch_add(1, Ordering::SeqCst);
                let _ = released.wait_for(|r| *r).await;
                "done"
            }
        }),
    );
    let limits = Limits {
        connections: 4 * IN_FLIGHT,
        per_client: 4 * IN_FLIGHT,
        ..Limits::default()
    };
    let addr = serve(Arc::clone(&tls), app, limits).await;
    let client = client_tls(&pki.ca(), None);
    let first = leaf_shown(addr, &client).await;

    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let config = client.rustls().unwrap();
            tokio::spawn(async move { fetch(addr, config).await })
        })
        .collect();
    let t0 = std::time::Instant::now();
    while waiting.load(Ordering::SeqCst) < IN_FLIGHT {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "{} of {IN_FLIGHT} in flight",
            waiting.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A bad pair (another certificate's key): refused, the old one serves on.
    let (_, wrong_key) = pki.server("wrong");
    std::fs::copy(&wrong_key, &key).unwrap();
    let e = tls.reload().unwrap_err().to_string();
    assert!(e.contains("not the private key"), "{e}");
    assert_eq!(
        leaf_shown(addr, &client).await,
        first,
        "a bad pair replaced the serving one"
    );

    // A good new pair, taken by renaming over the old files, as certbot and
    // cert-manager do: new connections get it.
    let (new_cert, new_key) = pki.server("renewed");
    std::fs::rename(&new_key, &key).unwrap();
    std::fs::rename(&new_cert, &cert).unwrap();
    tls.reload().unwrap();
    let second = leaf_shown(addr, &client).await;
    assert_ne!(second, first);

    // Every request in flight across both reloads finishes.
    release.send(true).unwrap();
    let mut done = 0;
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), (200, "done".into()));
        done += 1;
    }
    assert_eq!(done, IN_FLIGHT);

    // The watcher sees a changed file by itself (no explicit reload).
    let (third_cert, third_key) = pki.server("third");
    std::fs::rename(&third_key, &key).unwrap();
    std::fs::rename(&third_cert, &cert).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let shown = leaf_shown(addr, &client).await;
        if shown != second {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the changed files were not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Run openssl (installed by scripts/test.sh), which must succeed.
fn openssl(args: &[&str]) {
    let o = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sec1_and_rsa_keys_are_served_as_well_as_pkcs8() {
    let d = tempfile::tempdir().unwrap();
    let pki = Pki::new(&d.path().join("ca"), "test CA");
    let client = client_tls(&pki.ca(), None);
    // SEC1 ("EC PRIVATE KEY"): the PKCS#8 key rcgen made, converted by openssl.
    let (cert, key) = pki.server("ec");
    let sec1 = d.path().join("ec-sec1.key");
    openssl(&["ec", "-in", key.to_str().unwrap(), "-out", sec1.to_str().unwrap()]);
    assert!(std::fs::read_to_string(&sec1).unwrap().contains("BEGIN EC PRIVATE KEY"));
    // RSA ("RSA PRIVATE KEY", PKCS#1): a key made by openssl, its certificate issued by the CA.
    let rsa8 = d.path().join("rsa.p8");
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        rsa8.to_str().unwrap(),
    ]);
    let rsa_key = KeyPair::from_pem(&std::fs::read_to_string(&rsa8).unwrap()).unwrap();
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    p.not_before = at(now() - DAY);
    p.not_after = at(now() + DAY);
    let rsa_cert = p
        .signed_by(&rsa_key, &Issuer::from_params(&pki.params, &pki.key))
        .unwrap();
    let rsa_pem = d.path().join("rsa.pem");
    std::fs::write(&rsa_pem, rsa_cert.pem()).unwrap();
    let pkcs1 = d.path().join("rsa-pkcs1.key");
    openssl(&[
        "rsa",
        "-in",
        rsa8.to_str().unwrap(),
        "-traditional",
        "-out",
        pkcs1.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    for (cert, key) in [(&cert, &key), (&cert, &sec1), (&rsa_pem, &pkcs1), (&rsa_pem, &rsa8)] {
        let tls = ServerTls::load(ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        })
        .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        let addr = serve(tls, ok_app(), Limits::default()).await;
        assert_eq!(
            fetch(addr, client.rustls().unwrap()).await.unwrap(),
            (200, "ok".into()),
            "{}",
            key.display()
        );
    }
}
