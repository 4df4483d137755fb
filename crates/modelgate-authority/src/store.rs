//! Where the governance log lives: the SQLite file in the data directory
//! (the embedded default) or a PostgreSQL database (`--store
//! postgres://…`). Everything else of an authority (keys, tokens, pending
//! approvals, snapshots, the replicated lineage) stays in its data directory.
//!
//! On PostgreSQL several authorities share one log, and exactly one
//! sequences: the holder of the database's lease (`modelgate-pgstore`).
//! Each authority's lease thread ([`start_lease`]) renews the lease while
//! it holds it, every [`LEASE_RENEW`], and otherwise tries to take it every
//! [`ACQUIRE_EVERY`]; every commit checks the fencing token, so an
//! authority that lost the lease can never append. The others are
//! replicas ([`Role::Replica`]): they follow the database, serve every
//! read, and pass writes to the sequencer at the URL it advertises.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use modelgate_pgstore::{Holder, PgStore};
use modelgate_store::{Lease, LogStore, SqliteStore, StoreError};

/// How long a sequencer lease runs without renewal: a dead sequencer's
/// successor starts within this.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the lease is renewed (four chances before it runs out).
pub const LEASE_RENEW: Duration = Duration::from_millis(700);
/// How often a replica tries to take the lease.
pub const ACQUIRE_EVERY: Duration = Duration::from_millis(200);

/// What this authority is to the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The only writer of a store no other process writes (SQLite's file lock).
    Sole,
    /// The sequencer of a shared database, under this lease.
    Sequencer(Lease),
    /// A replica of a shared database: it serves reads and passes writes
    /// to the sequencer (`None` while nobody holds the lease).
    Replica(Option<Holder>),
}

/// This authority's role, shared by the lease thread (which takes, renews
/// or loses the lease), the writer (which sequences or follows) and the
/// HTTP layer (which appends or passes writes on).
#[derive(Debug)]
pub struct Sequencing {
    role: RwLock<Role>,
    advertised: Mutex<String>,
    peers: Mutex<Vec<String>>,
}

impl Sequencing {
    fn new(role: Role) -> Self {
        Self {
            role: RwLock::new(role),
            advertised: Mutex::new(String::new()),
            peers: Mutex::new(Vec::new()),
        }
    }

    /// The role now.
    pub fn role(&self) -> Role {
        match self.role.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Change the role (logged when it changes between kinds).
    pub fn set(&self, role: Role) {
        let Ok(mut r) = self.role.write() else { return };
        match (&*r, &role) {
            (Role::Replica(_), Role::Sequencer(l)) => {
                tracing::info!(token = l.token, "took the sequencer lease: sequencing")
            }
            (Role::Sequencer(l), Role::Replica(_)) => {
                tracing::warn!(token = l.token, "no longer the sequencer: serving as a replica")
            }
            _ => {}
        }
        *r = role;
    }

    /// The URL other authorities pass writes to while this one sequences.
    pub fn set_advertised(&self, url: &str) {
        if let Ok(mut a) = self.advertised.lock() {
            url.trim_end_matches('/').clone_into(&mut a);
        }
    }

    /// The URLs a replica may pass writes to (with the client's bearer
    /// token); empty: whichever URL the sequencer advertises in the database.
    pub fn set_peers(&self, urls: &[String]) {
        if let Ok(mut p) = self.peers.lock() {
            *p = urls.iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
        }
    }

    /// Whether writes may be passed to `url`.
    pub fn may_pass_to(&self, url: &str) -> bool {
        self.peers
            .lock()
            .map(|p| p.is_empty() || p.iter().any(|u| u == url))
            .unwrap_or(false)
    }

    fn advertised(&self) -> String {
        self.advertised.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// The governance log's database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreAt {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl StoreAt {
    /// `--store`: absent for the data directory's SQLite file, a
    /// `postgres://` (or `postgresql://`) URL, or a SQLite file path.
    pub fn parse(arg: Option<&str>, default: PathBuf) -> Self {
        match arg.map(str::trim).filter(|a| !a.is_empty()) {
            None => StoreAt::Sqlite(default),
            Some(a) if a.starts_with("postgres://") || a.starts_with("postgresql://") => {
                StoreAt::Postgres(a.to_owned())
            }
            Some(a) => StoreAt::Sqlite(PathBuf::from(a)),
        }
    }

    /// For messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreAt::Sqlite(p) => p.display().to_string(),
            StoreAt::Postgres(u) => redact(u),
        }
    }

    /// Open the log for the writer thread: SQLite takes its file's writer
    /// lock; PostgreSQL opens a handle that appends only once given the
    /// lease ([`LogStore::set_lease`]).
    pub fn open_log(&self) -> Result<Box<dyn LogStore>, StoreError> {
        match self {
            StoreAt::Sqlite(p) => Ok(Box::new(SqliteStore::open(p)?)),
            StoreAt::Postgres(url) => Ok(Box::new(PgStore::open_reader(url)?)),
        }
    }

    /// Open the log to write its first entry (`authority init`): on
    /// PostgreSQL under a lease taken for `holder` (refused while another's
    /// runs) and handed back when the store closes.
    pub fn open_for_init(&self, holder: &str) -> Result<Box<dyn LogStore>, StoreError> {
        match self {
            StoreAt::Sqlite(p) => Ok(Box::new(SqliteStore::open(p)?)),
            StoreAt::Postgres(url) => Ok(Box::new(PgStore::open_writer(url, holder, LEASE_TTL)?)),
        }
    }

    /// Open the log for reading one consistent state of it (an audit).
    pub fn open_snapshot(&self) -> Result<Box<dyn LogStore>, StoreError> {
        match self {
            StoreAt::Sqlite(p) => Ok(Box::new(SqliteStore::open_snapshot(p)?)),
            StoreAt::Postgres(url) => Ok(Box::new(PgStore::open_snapshot(url)?)),
        }
    }

    /// Open the log for reading.
    pub fn open_reader(&self) -> Result<Box<dyn LogStore>, StoreError> {
        match self {
            StoreAt::Sqlite(p) => Ok(Box::new(SqliteStore::open_read_only(p)?)),
            StoreAt::Postgres(url) => Ok(Box::new(modelgate_pgstore::PgStore::open_reader(url)?)),
        }
    }
}

/// The role this authority starts in, and for a shared database the lease
/// thread that keeps it: a first attempt at the lease here (so a lone
/// authority sequences from its first request), then renewals or further
/// attempts until `stop` is set.
pub fn start_lease(store_at: &StoreAt, holder: &str, stop: Arc<AtomicBool>) -> Result<Arc<Sequencing>, StoreError> {
    let StoreAt::Postgres(url) = store_at else {
        return Ok(Arc::new(Sequencing::new(Role::Sole)));
    };
    let mut db = PgStore::open_reader(url)?;
    let role = match db.acquire(holder, "", LEASE_TTL)? {
        Some(lease) => Role::Sequencer(lease),
        None => Role::Replica(db.holder()?),
    };
    let seq = Arc::new(Sequencing::new(role));
    let (url, holder, s) = (url.clone(), holder.to_owned(), Arc::clone(&seq));
    std::thread::Builder::new()
        .name("modelgate-lease".into())
        .spawn(move || keep(&url, &holder, &s, Some(db), &stop))
        .map_err(|e| StoreError::Io(format!("starting the lease thread: {e}")))?;
    Ok(seq)
}

/// Renew the lease while it is ours, try to take it while it is not, and
/// keep the role in step. A renewal that finds the lease gone makes this
/// authority a replica at once; the writer steps down before its next
/// batch, and the fence refuses any commit it had under way.
fn keep(url: &str, holder: &str, seq: &Sequencing, mut db: Option<PgStore>, stop: &AtomicBool) {
    let tick = Duration::from_millis(50);
    let mut waited = Duration::ZERO;
    // What the database holds as our URL: a new one is written at once.
    let mut told = String::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(tick);
        waited += tick;
        let Some(pg) = db.as_mut() else {
            // The connection broke: a new one, at the next tick.
            db = PgStore::open_reader(url)
                .inspect_err(|e| tracing::warn!(error = %e, "reconnecting the lease thread"))
                .ok();
            continue;
        };
        let outcome = match seq.role() {
            Role::Sole => return,
            Role::Sequencer(lease) if waited >= LEASE_RENEW || told != seq.advertised() => {
                waited = Duration::ZERO;
                pg.set_lease(Some(lease.clone()));
                told = seq.advertised();
                pg.renew(&told, LEASE_TTL).map(|kept| {
                    if !kept {
                        tracing::error!(
                            token = lease.token,
                            "the sequencer lease was lost: this authority can no longer append"
                        );
                        seq.set(Role::Replica(None));
                    }
                })
            }
            Role::Replica(_) if waited >= ACQUIRE_EVERY => {
                waited = Duration::ZERO;
                told = seq.advertised();
                pg.acquire(holder, &told, LEASE_TTL).and_then(|won| {
                    let role = match won {
                        Some(lease) => Role::Sequencer(lease),
                        None => Role::Replica(pg.holder()?),
                    };
                    if !stop.load(Ordering::SeqCst) {
                        seq.set(role);
                    }
                    Ok(())
                })
            }
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            // The database is away: the next attempt may get through before the lease runs out.
            tracing::warn!(error = %e, "keeping the sequencer lease");
            db = None;
        }
    }
    // Dropping our handle without `close` leaves the lease to the writer's
    // store, which hands it over when it closes.
    if let Some(mut pg) = db {
        if !matches!(seq.role(), Role::Sequencer(_)) {
            // A lease won as we stopped: handed back at once.
            let _ = pg.release();
        }
        pg.set_lease(None);
        let _ = pg.close();
    }
}

/// An authority's URL as another authority names it (`--advertise-url`,
/// `--peer-url`): http:// or https://, no query, fragment or space; why not.
pub fn check_peer_url(u: &str) -> Result<(), &'static str> {
    if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(['?', '#', ' ']) {
        return Err("must be an http:// or https:// URL without a query");
    }
    Ok(())
}

/// The sequencer's name in a shared database's lease: host and process.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", host.trim(), std::process::id())
}

/// A URL with its password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_arguments() {
        let d = PathBuf::from("/data/governance.db");
        assert_eq!(StoreAt::parse(None, d.clone()), StoreAt::Sqlite(d.clone()));
        assert_eq!(StoreAt::parse(Some(" "), d.clone()), StoreAt::Sqlite(d.clone()));
        assert_eq!(
            StoreAt::parse(Some("postgres://u:secret@db/mg"), d.clone()),
            StoreAt::Postgres("postgres://u:secret@db/mg".into())
        );
        assert_eq!(StoreAt::parse(Some("/x.db"), d), StoreAt::Sqlite("/x.db".into()));
        assert_eq!(redact("postgres://u:secret@db:5432/mg"), "postgres://u:***@db:5432/mg");
        assert_eq!(redact("postgres://u@db/mg"), "postgres://u@db/mg");
    }
}
