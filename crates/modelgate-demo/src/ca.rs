//! Certificates for a trial deployment (`modelgate dev ca`): a CA and the
//! server and client certificates its listeners and callers present, made
//! with rcgen. A trial CA's key sits on the same disk as everything else:
//! for production, certificates come from the organisation's own CA.
//!
//! Every key is ECDSA P-256, written PKCS#8 PEM with mode 0600; every
//! certificate is PEM. A CA already in the directory is reused, so more
//! certificates can be issued by it later.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Failure;

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A listener's (TLS server authentication).
    Server,
    /// A caller's, node's or witness's (TLS client authentication).
    Client,
}

/// One certificate to issue: its file name, its subject alternative names
/// (an IP address, a URI such as `spiffe://example.org/scoring`, else a DNS
/// name), what it is for, and its validity.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// File stem: NAME.pem and NAME.key.
    pub name: String,
    /// Subject alternative names.
    pub names: Vec<String>,
    /// Server or client.
    pub usage: Usage,
    /// Valid from this Unix time.
    pub not_before: i64,
    /// Until this Unix time.
    pub not_after: i64,
}

/// The CA of a directory.
pub struct Ca {
    dir: PathBuf,
    key: KeyPair,
}

const CA_NAME: &str = "modelgate trial CA";

fn setup(what: String) -> Failure {
    Failure::Setup(what)
}

fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| setup(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| setup(format!("{}: {e}", path.display())))
}

fn time(unix: i64) -> Result<time::OffsetDateTime, Failure> {
    time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| setup(format!("a certificate time {unix}: {e}")))
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

impl Ca {
    /// The CA of `dir` (ca.pem, ca.key), made valid from `now` for `days`
    /// when the directory has none.
    pub fn open_or_make(dir: &Path, now: i64, days: u32) -> Result<Self, Failure> {
        std::fs::create_dir_all(dir).map_err(|e| setup(format!("{}: {e}", dir.display())))?;
        let key_file = dir.join("ca.key");
        if key_file.exists() {
            let pem = std::fs::read_to_string(&key_file).map_err(|e| setup(format!("{}: {e}", key_file.display())))?;
            let key = KeyPair::from_pem(&pem).map_err(|e| setup(format!("{}: {e}", key_file.display())))?;
            return Ok(Self {
                dir: dir.to_owned(),
                key,
            });
        }
        let key = KeyPair::generate().map_err(|e| setup(format!("making the CA key: {e}")))?;
        let mut p = ca_params();
        p.not_before = time(now - 60)?;
        p.not_after = time(now + i64::from(days) * 86_400)?;
        let cert = p.self_signed(&key).map_err(|e| setup(format!("making the CA: {e}")))?;
        write_private(&key_file, &key.serialize_pem())?;
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, cert.pem()).map_err(|e| setup(format!("{}: {e}", ca_pem.display())))?;
        Ok(Self {
            dir: dir.to_owned(),
            key,
        })
    }

    /// The CA certificate's file.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issue `leaf`: writes NAME.pem (the leaf, then the CA) and NAME.key.
    pub fn issue(&self, leaf: &Leaf) -> Result<(PathBuf, PathBuf), Failure> {
        if leaf.name.is_empty() || leaf.name.contains(['/', '.']) || leaf.name == "ca" {
            return Err(setup(format!(
                "a certificate's name {:?} must be a plain file stem (not \"ca\")",
                leaf.name
            )));
        }
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, leaf.name.as_str());
        p.distinguished_name = dn;
        for n in &leaf.names {
            p.subject_alt_names.push(san(n)?);
        }
        p.not_before = time(leaf.not_before)?;
        p.not_after = time(leaf.not_after)?;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![match leaf.usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| setup(format!("making {}'s key: {e}", leaf.name)))?;
        let issuer = Issuer::new(ca_params(), &self.key);
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| setup(format!("issuing {}: {e}", leaf.name)))?;
        let ca = std::fs::read_to_string(self.cert_file())
            .map_err(|e| setup(format!("{}: {e}", self.cert_file().display())))?;
        let pem = self.dir.join(format!("{}.pem", leaf.name));
        let key_file = self.dir.join(format!("{}.key", leaf.name));
        write_private(&key_file, &key.serialize_pem())?;
        std::fs::write(&pem, format!("{}{ca}", cert.pem())).map_err(|e| setup(format!("{}: {e}", pem.display())))?;
        Ok((pem, key_file))
    }
}

fn san(n: &str) -> Result<SanType, Failure> {
    let bad = |e: rcgen::Error| setup(format!("subject name {n:?}: {e}"));
    if let Ok(ip) = n.parse::<std::net::IpAddr>() {
        Ok(SanType::IpAddress(ip))
    } else if n.contains("://") {
        Ok(SanType::URI(n.try_into().map_err(bad)?))
    } else {
        Ok(SanType::DnsName(n.try_into().map_err(bad)?))
    }
}

/// Parse `NAME=SAN,SAN,…` (`modelgate dev ca --server/--client`).
pub fn parse_leaf(spec: &str, usage: Usage, now: i64, days: u32) -> Result<Leaf, Failure> {
    let (name, names) = spec.split_once('=').ok_or_else(|| {
        setup(format!(
            "{spec:?}: expected NAME=SAN[,SAN…], such as node-1=node-1.example.org,10.0.0.5"
        ))
    })?;
    let names: Vec<String> = names
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Err(setup(format!("{spec:?}: at least one subject name is needed")));
    }
    Ok(Leaf {
        name: name.trim().to_owned(),
        names,
        usage,
        not_before: now - 60,
        not_after: now + i64::from(days) * 86_400,
    })
}
