//! Where the governance log lives: the SQLite file in the data directory
//! (the embedded default) or a PostgreSQL database (`--store
//! postgres://…`). Everything else of an authority (keys, tokens, pending
//! approvals, snapshots, the replicated lineage) stays in its data directory.
//!
//! On PostgreSQL the authority sequences under the database's lease
//! (`modelgate-pgstore`): it takes the lease at start-up (another live
//! holder is refused, naming it), a thread renews it every
//! [`LEASE_RENEW`], and every commit checks its fencing token, so an
//! authority that lost the lease can never append.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use modelgate_store::{LogStore, SqliteStore, StoreError};

/// How long a sequencer lease runs without renewal: a dead sequencer's
/// successor starts within this.
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// How often the lease is renewed (four chances before it runs out).
pub const LEASE_RENEW: Duration = Duration::from_millis(700);

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

    /// Open the log for writing. On PostgreSQL: take the sequencer lease
    /// for `holder`, and keep it renewed until `stop` is set.
    pub fn open_writer(&self, holder: &str, stop: Arc<AtomicBool>) -> Result<Box<dyn LogStore>, StoreError> {
        match self {
            StoreAt::Sqlite(p) => Ok(Box::new(SqliteStore::open(p)?)),
            StoreAt::Postgres(url) => {
                let store = modelgate_pgstore::PgStore::open_writer(url, holder, LEASE_TTL)?;
                if let Some(lease) = store.lease().cloned() {
                    let url = url.clone();
                    std::thread::Builder::new()
                        .name("modelgate-lease".into())
                        .spawn(move || keep(&url, &lease, &stop))
                        .map_err(|e| StoreError::Io(format!("starting the lease thread: {e}")))?;
                }
                Ok(Box::new(store))
            }
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

/// Renew the lease until stopped or lost. A lost lease is logged once; the
/// writer's next commit is fenced and answered 503, never written.
fn keep(url: &str, lease: &modelgate_pgstore::Lease, stop: &AtomicBool) {
    let mut waited = Duration::ZERO;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        waited += Duration::from_millis(100);
        if waited < LEASE_RENEW {
            continue;
        }
        waited = Duration::ZERO;
        match modelgate_pgstore::renew_lease(url, lease, LEASE_TTL) {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    token = lease.token,
                    "the sequencer lease was lost: this authority can no longer append"
                );
                return;
            }
            // The database is away: the next renewal may get through before the lease runs out.
            Err(e) => tracing::warn!(error = %e, "renewing the sequencer lease"),
        }
    }
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
