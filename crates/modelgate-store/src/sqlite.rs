//! The SQLite implementation: bundled SQLite, WAL, `synchronous=FULL` (a
//! commit is fsynced before it returns), a versioned schema, and an
//! exclusive writer lock (`flock` on a side file, released by the kernel if
//! the process dies, so a crash never leaves a stale lock).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use modelgate_tlog::Hash;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use rustix::fs::{flock, FlockOperation};

use crate::error::StoreError;
use crate::store::{Batch, LogStore};

/// Schema migrations, in order; `PRAGMA user_version` counts the applied ones.
const MIGRATIONS: &[&str] = &[
    // 1: entries, the complete-subtree hashes, and the signed checkpoints.
    "CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL);
     CREATE TABLE nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
                         PRIMARY KEY (level, idx)) WITHOUT ROWID;
     CREATE TABLE checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL);",
    // 2: nodes keyed by their position in append order (see `position`). Keyed by
    // (level, index), one batch's nodes landed on one B-tree page per level, and every
    // one of those pages went to the WAL on every commit; in append order they share
    // the rightmost page. Measured with 16 submitters: 29% less sequencer CPU per
    // entry, 47% more durable appends per second (BENCHMARKS.md, issue 4).
    "CREATE TABLE nodes_by_position (pos INTEGER PRIMARY KEY, hash BLOB NOT NULL);
     INSERT INTO nodes_by_position (pos, hash)
         SELECT ((((idx + 1) << level) - 1) << 6) | level, hash FROM nodes;
     DROP TABLE nodes;
     ALTER TABLE nodes_by_position RENAME TO nodes;",
];

/// Bits of a node's position that hold its level: levels run below 64.
const LEVEL_BITS: u32 = 6;

/// The key of node `(level, index)`: the index of the leaf whose append completed it,
/// times 64, plus its level. Node `(level, index)` covers leaves
/// `[index·2^level, (index+1)·2^level)` and is completed by the append of the last of
/// them; the nodes completed by one append all have different levels, so the key is
/// unique, and it grows with the append order, so a batch's nodes are written together
/// at the end of the table. Positions fit an SQLite integer for logs below 2^57 leaves.
fn position(level: u8, index: u64) -> Result<i64, StoreError> {
    let beyond = || StoreError::NotFound(format!("node (level {level}, index {index}) is beyond any SQLite log"));
    if u32::from(level) >= 1 << LEVEL_BITS {
        return Err(beyond());
    }
    let last_leaf = ((u128::from(index) + 1) << level) - 1;
    let pos = (last_leaf << LEVEL_BITS) | u128::from(level);
    i64::try_from(pos).map_err(|_| beyond())
}

/// A log stored in one SQLite database file.
pub struct SqliteStore {
    conn: Option<Connection>,
    // Held for the life of a writer; dropping the file releases the flock.
    _lock: Option<File>,
    path: PathBuf,
    size: u64,
}

fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".writer-lock");
    PathBuf::from(p)
}

fn take_writer_lock(path: &Path) -> Result<File, StoreError> {
    let lp = lock_path(path);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lp)
        .map_err(|e| StoreError::Io(format!("opening lock file {}: {e}", lp.display())))?;
    if flock(&f, FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut holder = String::new();
        let _ = f.read_to_string(&mut holder);
        let who = holder.trim();
        let who = if who.is_empty() {
            String::new()
        } else {
            format!(" (pid {who})")
        };
        return Err(StoreError::Locked {
            path: format!("{}{who}", path.display()),
        });
    }
    // Record the holder for the error message of the next would-be writer.
    let _ = f
        .set_len(0)
        .and_then(|()| f.rewind())
        .and_then(|()| write!(f, "{}", std::process::id()));
    Ok(f)
}

fn hash_from(blob: Vec<u8>, what: &str) -> Result<Hash, StoreError> {
    blob.try_into()
        .map_err(|b: Vec<u8>| StoreError::Corrupt(format!("{what} is {} bytes, not 32", b.len())))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::NotFound(format!("index {v} is beyond any SQLite log")))
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path` as its only writer.
    /// Fails with [`StoreError::Locked`] if another writer has it open.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = take_writer_lock(path)?;
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Io(format!(
                "could not switch {} to WAL (got {mode})",
                path.display()
            )));
        }
        conn.execute_batch("PRAGMA synchronous=FULL;")?;
        migrate(&conn)?;
        let mut store = Self {
            conn: Some(conn),
            _lock: Some(lock),
            path: path.to_owned(),
            size: 0,
        };
        store.size = store.check_shape()?;
        Ok(store)
    }

    /// Open an existing store for reading only (an auditor beside a running
    /// writer). Takes no lock and never writes.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound(format!("no log store at {}", path.display())));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Readers are many and short-lived; the OS page cache serves them.
        // 512 KiB each instead of SQLite's default 2 MiB bounds their memory.
        conn.execute_batch("PRAGMA cache_size = -512;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version != MIGRATIONS.len() as i64 {
            return Err(StoreError::Schema(format!(
                "store schema version {version}, this modelgate reads version {}",
                MIGRATIONS.len()
            )));
        }
        let mut store = Self {
            conn: Some(conn),
            _lock: None,
            path: path.to_owned(),
            size: 0,
        };
        store.size = store.check_shape()?;
        Ok(store)
    }

    /// [`SqliteStore::open_read_only`], every later read in one read
    /// transaction: an audit beside a running writer sees one state of the
    /// log, never entries of one size and node hashes of another.
    pub fn open_snapshot(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::open_read_only(path)?;
        store.conn()?.execute_batch("BEGIN DEFERRED")?;
        // The first read fixes the snapshot; the shape was checked at open.
        store.refresh_size()?;
        Ok(store)
    }

    /// Re-read the size from the latest checkpoint (for a read-only handle
    /// beside a writer, whose view otherwise stays at the size it opened at).
    pub fn refresh_size(&mut self) -> Result<u64, StoreError> {
        let latest: Option<i64> = self
            .conn()?
            .query_row("SELECT MAX(size) FROM checkpoints", [], |r| r.get(0))?;
        self.size = latest.map_or(0, |s| s.max(0) as u64);
        Ok(self.size)
    }

    /// The database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<&Connection, StoreError> {
        self.conn.as_ref().ok_or(StoreError::Closed)
    }

    /// The entries and the latest checkpoint must agree on the size: they are
    /// only ever written together.
    fn check_shape(&self) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        // One read transaction: a reader opened beside a writer must compare the
        // three figures at one snapshot, or a batch committed between two queries
        // looks like a corrupt store.
        let tx = conn.unchecked_transaction()?;
        let entries: Option<i64> = tx.query_row("SELECT MAX(idx) FROM entries", [], |r| r.get(0))?;
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?;
        let checkpoint: Option<i64> = tx.query_row("SELECT MAX(size) FROM checkpoints", [], |r| r.get(0))?;
        tx.finish()?;
        let by_index = entries.map_or(0, |m| m + 1);
        let by_checkpoint = checkpoint.unwrap_or(0);
        if by_index != count || by_index != by_checkpoint || count < 0 {
            return Err(StoreError::Corrupt(format!(
                "{count} entries stored (highest index {}), latest checkpoint is for size {by_checkpoint}",
                by_index - 1
            )));
        }
        Ok(count as u64)
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::Schema(format!(
            "store schema version {version} is newer than this modelgate's ({known}); upgrade modelgate"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i + 1;
        // Each migration and its version bump commit together.
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {sql} PRAGMA user_version = {next}; COMMIT;"))
            .map_err(|e| StoreError::Schema(format!("migration to version {next} failed: {e}")))?;
    }
    Ok(())
}

impl LogStore for SqliteStore {
    fn size(&self) -> Result<u64, StoreError> {
        self.conn()?;
        Ok(self.size)
    }

    fn append(&mut self, batch: &Batch<'_>) -> Result<(), StoreError> {
        self.conn()?;
        if self._lock.is_none() {
            return Err(StoreError::Io("store is open read-only".into()));
        }
        if batch.entries.is_empty() {
            return Err(StoreError::EmptyBatch);
        }
        if batch.start != self.size {
            return Err(StoreError::Conflict {
                start: batch.start,
                size: self.size,
            });
        }
        let new_size = self.size + batch.entries.len() as u64;
        let conn = self.conn.as_mut().ok_or(StoreError::Closed)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut put_entry = tx.prepare_cached("INSERT INTO entries (idx, data) VALUES (?1, ?2)")?;
            for (i, e) in batch.entries.iter().enumerate() {
                put_entry.execute(params![to_i64(batch.start + i as u64)?, e])?;
            }
            let mut put_node = tx.prepare_cached("INSERT INTO nodes (pos, hash) VALUES (?1, ?2)")?;
            for (level, index, hash) in batch.nodes {
                put_node.execute(params![position(*level, *index)?, &hash[..]])?;
            }
            tx.prepare_cached("INSERT INTO checkpoints (size, note) VALUES (?1, ?2)")?
                .execute(params![to_i64(new_size)?, batch.checkpoint])?;
        }
        // With WAL and synchronous=FULL the commit fsyncs the log before it returns.
        tx.commit()?;
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
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare_cached("SELECT idx, data FROM entries WHERE idx >= ?1 AND idx < ?2 ORDER BY idx")?;
        let mut rows = stmt.query(params![to_i64(start)?, to_i64(end)?])?;
        let mut out = Vec::with_capacity((end - start) as usize);
        while let Some(row) = rows.next()? {
            let idx: i64 = row.get(0)?;
            if idx != (start + out.len() as u64) as i64 {
                return Err(StoreError::Corrupt(format!(
                    "entry {} is missing",
                    start + out.len() as u64
                )));
            }
            out.push(row.get(1)?);
        }
        if out.len() as u64 != end - start {
            return Err(StoreError::Corrupt(format!(
                "entry {} is missing",
                start + out.len() as u64
            )));
        }
        Ok(out)
    }

    fn node_hash(&self, level: u8, index: u64) -> Result<Hash, StoreError> {
        let conn = self.conn()?;
        let blob: Option<Vec<u8>> = conn
            .prepare_cached("SELECT hash FROM nodes WHERE pos = ?1")?
            .query_row(params![position(level, index)?], |r| r.get(0))
            .optional()?;
        let blob = blob.ok_or_else(|| StoreError::NotFound(format!("node (level {level}, index {index})")))?;
        hash_from(blob, &format!("node (level {level}, index {index})"))
    }

    fn node_hashes(&self, level: u8, start: u64, count: u64) -> Result<Vec<Hash>, StoreError> {
        let end = start
            .checked_add(count)
            .ok_or_else(|| StoreError::NotFound("node range overflows".into()))?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let (first, last) = (position(level, start)?, position(level, end - 1)?);
        let conn = self.conn()?;
        // Between two nodes of one level lie the nodes of every other level completed
        // in between: about 2^(level+1) rows per wanted one. Low levels (leaf tiles,
        // the audit's runs) read the range in one scan and skip the rest; higher ones
        // look each node up by its key.
        let mut out = Vec::with_capacity(count as usize);
        if level <= 1 {
            let mut stmt = conn.prepare_cached(
                "SELECT pos, hash FROM nodes WHERE pos >= ?1 AND pos <= ?2 AND (pos & ?3) = ?4 ORDER BY pos",
            )?;
            let mut rows = stmt.query(params![first, last, (1i64 << LEVEL_BITS) - 1, level])?;
            while let Some(row) = rows.next()? {
                let pos: i64 = row.get(0)?;
                let want = start + out.len() as u64;
                if want >= end || pos != position(level, want)? {
                    return Err(StoreError::NotFound(format!("node (level {level}, index {want})")));
                }
                out.push(hash_from(row.get(1)?, &format!("node (level {level}, index {want})"))?);
            }
        } else {
            for index in start..end {
                out.push(self.node_hash(level, index)?);
            }
        }
        if out.len() as u64 != count {
            return Err(StoreError::NotFound(format!(
                "node (level {level}, index {})",
                start + out.len() as u64
            )));
        }
        Ok(out)
    }

    fn node_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn()?.query_row("SELECT COUNT(*) FROM nodes", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    fn checkpoint(&self, size: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn()?
            .prepare_cached("SELECT note FROM checkpoints WHERE size = ?1")?
            .query_row(params![to_i64(size)?], |r| r.get(0))
            .optional()?)
    }

    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn()?
            .prepare_cached("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.map(|(s, n)| (s as u64, n)))
    }

    fn checkpoint_sizes(&self) -> Result<Vec<u64>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT size FROM checkpoints ORDER BY size")?;
        let sizes = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        sizes
            .into_iter()
            .map(|s| u64::try_from(s).map_err(|_| StoreError::Corrupt(format!("negative checkpoint size {s}"))))
            .collect()
    }

    fn integrity_check(&self) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("PRAGMA quick_check")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("SQLite quick_check: {}", rows.join("; "))))
        }
    }

    fn refresh(&mut self) -> Result<u64, StoreError> {
        self.refresh_size()
    }

    fn close(&mut self) -> Result<(), StoreError> {
        if let Some(conn) = self.conn.take() {
            conn.close().map_err(|(_, e)| StoreError::from(e))?;
        }
        self._lock = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_positions_are_unique_and_follow_the_append_order() {
        let mut tree = modelgate_tlog::CompactTree::new();
        let mut last = -1i64;
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..5000u64 {
            let mut batch = Vec::new();
            tree.append(modelgate_tlog::leaf_hash(&i.to_be_bytes()), |level, index, _| {
                batch.push(position(level, index).unwrap())
            });
            // Every append completes its own leaf, and the nodes it completes are written
            // after every earlier append's.
            assert!(!batch.is_empty());
            for p in batch {
                assert!(seen.insert(p), "position {p} used twice");
                assert!(
                    p > last || (p >> LEVEL_BITS) == (last >> LEVEL_BITS),
                    "{p} after {last}"
                );
                last = last.max(p);
            }
        }
        assert_eq!(position(0, 0).unwrap(), 0);
        assert_eq!(position(2, 7).unwrap(), 31 * 64 + 2);
        // The largest log an SQLite integer can key, and one leaf beyond it.
        assert!(position(0, (1 << 57) - 1).is_ok());
        assert!(matches!(position(0, 1 << 57), Err(StoreError::NotFound(_))));
        assert!(matches!(position(64, 0), Err(StoreError::NotFound(_))));
        assert!(matches!(position(63, u64::MAX), Err(StoreError::NotFound(_))));
    }
}
