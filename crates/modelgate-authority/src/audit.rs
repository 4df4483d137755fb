//! The offline audit of an authority's store (`modelgate log audit STORE`):
//! every tile, node hash, entry and checkpoint against the signed
//! checkpoints, on a read-only connection (a running authority is not
//! disturbed).

use std::path::Path;

use modelgate_store::{AuditError, AuditReport, SqliteStore, StoreError};
use modelgate_tlog::CheckpointPolicy;

/// Why an audit did not pass.
#[derive(Debug, thiserror::Error)]
pub enum StoreAuditError {
    /// The store could not be read at all (missing, permissions, I/O).
    #[error("{0}")]
    Unreadable(String),
    /// The store was read and is not intact.
    #[error("audit of {path} failed: {detail}")]
    Failed {
        /// The store.
        path: String,
        /// What does not check.
        detail: String,
    },
}

/// Audit the store at `path` against checkpoints signed under `policy`.
pub fn audit_store(path: &Path, policy: &CheckpointPolicy) -> Result<AuditReport, StoreAuditError> {
    let failed = |detail: String| StoreAuditError::Failed {
        path: path.display().to_string(),
        detail,
    };
    let store = SqliteStore::open_read_only(path).map_err(|e| match e {
        StoreError::Corrupt(_) => failed(e.to_string()),
        other => StoreAuditError::Unreadable(format!("opening {}: {other}", path.display())),
    })?;
    modelgate_store::audit(&store, policy).map_err(|e| match e {
        AuditError::Store(StoreError::Io(m)) => StoreAuditError::Unreadable(format!("reading {}: {m}", path.display())),
        other => failed(other.to_string()),
    })
}
