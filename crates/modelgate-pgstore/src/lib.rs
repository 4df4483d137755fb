//! The governance log on PostgreSQL, behind modelgate-store's [`LogStore`]
//! with the same guarantees as the SQLite store, for organisations that run
//! the authority on a database they already operate and back up.
//!
//! - **Nothing acknowledged is lost.** A batch (entries, the node hashes
//!   they complete, the signed checkpoint) is one transaction; PostgreSQL's
//!   commit (with `synchronous_commit = on`, checked at connect) has flushed
//!   the WAL before [`LogStore::append`] returns.
//! - **Readers never see a torn state.** Readers see committed batches
//!   only, and each read is one statement (one snapshot).
//! - **One sequencer, fenced.** A writer holds the row of
//!   `modelgate_lease`: a holder name, a token that grows by one with each
//!   new holder, and an expiry. Every append re-reads that row `FOR UPDATE`
//!   inside its own transaction and commits only when the token is still its
//!   own and unexpired, and when the log's size in the database is the
//!   batch's start: a deposed or paused sequencer can never commit, even if
//!   it wakes up mid-batch ([`StoreError::Fenced`]).
//! - **Versioned schema.** `modelgate_schema` holds the number of applied
//!   migrations; they run in one transaction under an advisory lock, so two
//!   processes starting at once migrate once.
//!
//! The client is `postgres` (rust-postgres, sfackler): the maintained
//! synchronous PostgreSQL client, which matches the synchronous store trait
//! and the authority's dedicated writer thread without an async runtime in
//! the store. Connections are plain TCP or a Unix socket: put TLS on the
//! network path (or use a socket) where the database is remote.

#![forbid(unsafe_code)]

use std::sync::Mutex;
use std::time::Duration;

use modelgate_store::{Batch, LogStore, StoreError};
use modelgate_tlog::Hash;
use postgres::{Client, NoTls};

/// Schema migrations, in order; `modelgate_schema.version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    // 1: entries, the complete-subtree hashes, the signed checkpoints, the sequencer lease.
    "CREATE TABLE entries (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL);
     CREATE TABLE nodes (level SMALLINT NOT NULL, idx BIGINT NOT NULL, hash BYTEA NOT NULL,
                         PRIMARY KEY (level, idx));
     CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note BYTEA NOT NULL);
     CREATE TABLE modelgate_lease (id INTEGER PRIMARY KEY CHECK (id = 1), holder TEXT NOT NULL,
                                   token BIGINT NOT NULL, expires TIMESTAMPTZ NOT NULL);",
    // 2: where the lease's holder takes writes, for the other authorities to pass them on.
    "ALTER TABLE modelgate_lease ADD COLUMN url TEXT NOT NULL DEFAULT '';",
];

/// An arbitrary constant: the advisory lock the migrations run under.
const MIGRATION_LOCK: i64 = 0x6d67_5f73_6368;

fn io(e: postgres::Error) -> StoreError {
    StoreError::Io(format!("postgres: {e}"))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::NotFound(format!("index {v} is beyond any log")))
}

fn hash_from(blob: Vec<u8>, what: &str) -> Result<Hash, StoreError> {
    blob.try_into()
        .map_err(|b: Vec<u8>| StoreError::Corrupt(format!("{what} is {} bytes, not 32", b.len())))
}

pub use modelgate_store::Lease;

/// The lease as another process sees it: who sequences, and where it
/// takes writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The lease.
    pub lease: Lease,
    /// The URL its holder advertised ("" when it gave none).
    pub url: String,
}

/// A log stored in a PostgreSQL database.
pub struct PgStore {
    /// Reads take `&self` (the trait's) and the client needs `&mut`; a
    /// handle is used by one thread at a time, so the lock is never contended.
    client: Mutex<Option<Client>>,
    size: u64,
    lease: Option<Lease>,
}

/// Run the migrations (idempotent; safe from several processes at once).
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(io)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(io)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS modelgate_schema (version INTEGER NOT NULL)")
        .map_err(io)?;
    let applied: Option<i32> = tx
        .query_opt("SELECT version FROM modelgate_schema", &[])
        .map_err(io)?
        .map(|r| r.get(0));
    let applied = applied.unwrap_or(0) as usize;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "the database is at schema version {applied}; this modelgate knows {} (upgrade modelgate)",
            MIGRATIONS.len()
        )));
    }
    for m in &MIGRATIONS[applied..] {
        tx.batch_execute(m).map_err(io)?;
    }
    if applied == 0 {
        tx.execute(
            "INSERT INTO modelgate_schema (version) VALUES ($1)",
            &[&(MIGRATIONS.len() as i32)],
        )
        .map_err(io)?;
    } else {
        tx.execute(
            "UPDATE modelgate_schema SET version = $1",
            &[&(MIGRATIONS.len() as i32)],
        )
        .map_err(io)?;
    }
    tx.commit().map_err(io)
}

fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Io(format!("PostgreSQL URL: {e}")))?;
    config.connect_timeout(Duration::from_secs(5));
    config.application_name("modelgate");
    let mut client = config.connect(NoTls).map_err(io)?;
    let sync: String = client.query_one("SHOW synchronous_commit", &[]).map_err(io)?.get(0);
    if sync == "off" {
        return Err(StoreError::Io(
            "synchronous_commit is off on this database: a commit could be lost after it is acknowledged; \
             set it to on for the modelgate role (ALTER ROLE ... SET synchronous_commit = on)"
                .into(),
        ));
    }
    Ok(client)
}

fn size_in(client: &mut impl postgres::GenericClient) -> Result<u64, StoreError> {
    let n: i64 = client
        .query_one("SELECT COALESCE(MAX(idx) + 1, 0) FROM entries", &[])
        .map_err(io)?
        .get(0);
    u64::try_from(n).map_err(|_| StoreError::Corrupt("a negative entry index".into()))
}

impl PgStore {
    /// Open the log at `url` for reading (migrating the schema if needed).
    pub fn open_reader(url: &str) -> Result<Self, StoreError> {
        let mut client = connect(url)?;
        migrate(&mut client)?;
        let size = size_in(&mut client)?;
        Ok(Self {
            client: Mutex::new(Some(client)),
            size,
            lease: None,
        })
    }

    /// [`PgStore::open_reader`], every later read in one repeatable-read,
    /// read-only transaction: an audit beside a running sequencer sees one
    /// state of the log, never entries of one size and node hashes of another.
    pub fn open_snapshot(url: &str) -> Result<Self, StoreError> {
        let mut s = Self::open_reader(url)?;
        let client = s.client()?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .map_err(io)?;
        s.size = size_in(client)?;
        Ok(s)
    }

    /// Open the log at `url` as its sequencer: take the lease for `holder`
    /// (for `ttl`), or fail with [`StoreError::Locked`] naming the holder
    /// while another one's lease runs.
    pub fn open_writer(url: &str, holder: &str, ttl: Duration) -> Result<Self, StoreError> {
        let mut s = Self::open_reader(url)?;
        match s.acquire(holder, "", ttl)? {
            Some(_) => Ok(s),
            None => {
                let who = s.holder()?.map(|h| h.lease.holder).unwrap_or_default();
                Err(StoreError::Locked {
                    path: format!("{url} (sequencer lease held by {who})"),
                })
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.client
            .get_mut()
            .map_err(|_| StoreError::Io("the connection's lock is poisoned".into()))?
            .as_mut()
            .ok_or(StoreError::Closed)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut g = self
            .client
            .lock()
            .map_err(|_| StoreError::Io("the connection's lock is poisoned".into()))?;
        f(g.as_mut().ok_or(StoreError::Closed)?)
    }

    /// Take the lease when it is free or expired (or renew it when `holder`
    /// has it), advertising `url` as where it takes writes: its fencing
    /// token, or `None` while another holder's runs.
    pub fn acquire(&mut self, holder: &str, url: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let secs = ttl.as_secs_f64();
        let row = self
            .client()?
            .query_opt(
                "INSERT INTO modelgate_lease (id, holder, token, expires, url)
                 VALUES (1, $1, 1, now() + make_interval(secs => $2), $3)
                 ON CONFLICT (id) DO UPDATE SET
                     holder = excluded.holder,
                     url = excluded.url,
                     token = CASE WHEN modelgate_lease.holder = excluded.holder AND modelgate_lease.expires > now()
                                  THEN modelgate_lease.token ELSE modelgate_lease.token + 1 END,
                     expires = excluded.expires
                 WHERE modelgate_lease.expires <= now() OR modelgate_lease.holder = excluded.holder
                 RETURNING token",
                &[&holder, &secs, &url],
            )
            .map_err(io)?;
        let lease = row.map(|r| Lease {
            holder: holder.to_owned(),
            token: r.get(0),
        });
        if let Some(l) = &lease {
            // Whatever we believed about the log may be stale: read it again.
            self.lease = Some(l.clone());
            self.size = size_in(self.client()?)?;
        }
        Ok(lease)
    }

    /// Extend our lease by `ttl` (advertising `url`); false when it is no
    /// longer ours (another holder took it after it expired): stop
    /// sequencing at once.
    pub fn renew(&mut self, url: &str, ttl: Duration) -> Result<bool, StoreError> {
        let Some(l) = self.lease.clone() else { return Ok(false) };
        let kept = renew_on(self.client()?, &l, url, ttl)?;
        if !kept {
            self.lease = None;
        }
        Ok(kept)
    }

    /// Who holds the lease now, if anyone's runs.
    pub fn holder(&mut self) -> Result<Option<Holder>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                "SELECT holder, token, url FROM modelgate_lease WHERE id = 1 AND expires > now()",
                &[],
            )
            .map_err(io)?;
        Ok(row.map(|r| Holder {
            lease: Lease {
                holder: r.get(0),
                token: r.get(1),
            },
            url: r.get(2),
        }))
    }

    /// Drop our lease at once (its expiry set to now), so another holder
    /// can take it without waiting: used when stepping down or closing.
    pub fn release(&mut self) -> Result<(), StoreError> {
        if let Some(l) = self.lease.take() {
            self.client()?
                .execute(
                    "UPDATE modelgate_lease SET expires = now() WHERE id = 1 AND holder = $1 AND token = $2",
                    &[&l.holder, &l.token],
                )
                .map_err(io)?;
        }
        Ok(())
    }

    /// Our lease, if we hold one.
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }
}

fn renew_on(client: &mut Client, lease: &Lease, url: &str, ttl: Duration) -> Result<bool, StoreError> {
    let n = client
        .execute(
            "UPDATE modelgate_lease SET expires = now() + make_interval(secs => $3), url = $4
             WHERE id = 1 AND holder = $1 AND token = $2 AND expires > now()",
            &[&lease.holder, &lease.token, &ttl.as_secs_f64(), &url],
        )
        .map_err(io)?;
    Ok(n == 1)
}

impl LogStore for PgStore {
    fn size(&self) -> Result<u64, StoreError> {
        self.with(|_| Ok(()))?;
        Ok(self.size)
    }

    fn append(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        let lease = self
            .lease
            .clone()
            .ok_or_else(|| StoreError::Io("store is open read-only (no sequencer lease)".into()))?;
        if batch.entries.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        let client = self.client()?;
        let mut tx = client.transaction().map_err(io)?;
        // The fence: the lease row, locked until the commit, must still be ours.
        let row = tx
            .query_opt(
                "SELECT holder, token, expires > now() FROM modelgate_lease WHERE id = 1 FOR UPDATE",
                &[],
            )
            .map_err(io)?;
        let current = row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1), r.get::<_, bool>(2)));
        match &current {
            Some((h, t, true)) if *h == lease.holder && *t == lease.token => {}
            other => {
                let now = other.as_ref().map_or_else(
                    || "nobody".to_owned(),
                    |(h, t, live)| format!("{h} (token {t}{})", if *live { "" } else { ", expired" }),
                );
                drop(tx);
                self.lease = None;
                return Err(StoreError::Fenced(format!(
                    "this sequencer's lease (token {}) is gone; the lease is now {now}",
                    lease.token
                )));
            }
        }
        let size = size_in(&mut tx)?;
        if batch.start != size {
            drop(tx);
            self.size = size;
            return Err(StoreError::Conflict {
                start: batch.start,
                size,
            });
        }
        let idx: Vec<i64> = (0..batch.entries.len() as u64)
            .map(|i| to_i64(batch.start + i))
            .collect::<Result<_, _>>()?;
        let data: Vec<&[u8]> = batch.entries.iter().map(Vec::as_slice).collect();
        tx.execute(
            "INSERT INTO entries (idx, data) SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])",
            &[&idx, &data],
        )
        .map_err(io)?;
        let levels: Vec<i16> = batch.nodes.iter().map(|n| i16::from(n.0)).collect();
        let nidx: Vec<i64> = batch.nodes.iter().map(|n| to_i64(n.1)).collect::<Result<_, _>>()?;
        let hashes: Vec<&[u8]> = batch.nodes.iter().map(|n| &n.2[..]).collect();
        tx.execute(
            "INSERT INTO nodes (level, idx, hash) SELECT * FROM unnest($1::SMALLINT[], $2::BIGINT[], $3::BYTEA[])",
            &[&levels, &nidx, &hashes],
        )
        .map_err(io)?;
        let new_size = batch.start + batch.entries.len() as u64;
        tx.execute(
            "INSERT INTO checkpoints (size, note) VALUES ($1, $2)",
            &[&to_i64(new_size)?, &batch.checkpoint],
        )
        .map_err(io)?;
        tx.commit().map_err(io)?;
        self.size = new_size;
        Ok(())
    }

    fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        if start > end || end > self.size {
            return Err(StoreError::NotFound(format!(
                "entries [{start}, {end}) of a log of {}",
                self.size
            )));
        }
        let rows = self.with(|c| {
            c.query(
                "SELECT idx, data FROM entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&to_i64(start)?, &to_i64(end)?],
            )
            .map_err(io)
        })?;
        if rows.len() as u64 != end - start {
            return Err(StoreError::Corrupt(format!(
                "entries [{start}, {end}): {} found",
                rows.len()
            )));
        }
        rows.into_iter()
            .enumerate()
            .map(|(k, r)| {
                let i: i64 = r.get(0);
                if i != (start + k as u64) as i64 {
                    return Err(StoreError::Corrupt(format!("entry {} is missing", start + k as u64)));
                }
                Ok(r.get(1))
            })
            .collect()
    }

    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let row = self
            .with(|c| {
                c.query_opt(
                    "SELECT hash FROM nodes WHERE level = $1 AND idx = $2",
                    &[&i16::from(level), &to_i64(index)?],
                )
                .map_err(io)
            })?
            .ok_or_else(|| StoreError::NotFound(format!("node (level {level}, index {index})")))?;
        hash_from(row.get(0), &format!("node (level {level}, index {index})"))
    }

    fn node_hashes(&self, level: u8, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT idx, hash FROM nodes WHERE level = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
                &[&i16::from(level), &to_i64(start)?, &to_i64(start + count)?],
            )
            .map_err(io)
        })?;
        if rows.len() as u64 != count {
            return Err(StoreError::NotFound(format!(
                "nodes (level {level}, {start}..{})",
                start + count
            )));
        }
        rows.into_iter()
            .map(|r| hash_from(r.get(1), &format!("a node at level {level}")))
            .collect()
    }

    fn node_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .with(|c| c.query_one("SELECT COUNT(*) FROM nodes", &[]).map_err(io))?
            .get(0);
        Ok(n as u64)
    }

    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.with(|c| {
            c.query_opt("SELECT note FROM checkpoints WHERE size = $1", &[&to_i64(size)?])
                .map_err(io)
        })?;
        Ok(row.map(|r| r.get(0)))
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let row = self.with(|c| {
            c.query_opt("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1", &[])
                .map_err(io)
        })?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
    }

    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        let rows = self.with(|c| c.query("SELECT size FROM checkpoints ORDER BY size", &[]).map_err(io))?;
        Ok(rows.into_iter().map(|r| r.get::<_, i64>(0) as u64).collect())
    }

    fn refresh(&mut self) -> Result<u64, StoreError> {
        self.size = size_in(self.client()?)?;
        Ok(self.size)
    }

    fn set_lease(&mut self, lease: Option<Lease>) {
        self.lease = lease;
    }

    fn close(&mut self) -> Result<(), StoreError> {
        let client = self.client.get_mut().ok().and_then(Option::take);
        if let (Some(mut c), Some(l)) = (client, self.lease.take()) {
            // Hand the lease over at once rather than after its expiry.
            let _ = c.execute(
                "UPDATE modelgate_lease SET expires = now() WHERE id = 1 AND holder = $1 AND token = $2",
                &[&l.holder, &l.token],
            );
        }
        Ok(())
    }
}
