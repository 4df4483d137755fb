//! The offline audit of an authority's store (`modelgate log audit STORE`):
//! every tile, node hash, entry and checkpoint against the signed
//! checkpoints, on a read-only connection (a running authority is not
//! disturbed) in one read transaction (what it reads is one state of the
//! log, whatever the authority appends meanwhile).

use modelgate_store::{AuditError, AuditReport, StoreError};
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

/// Audit the store (a SQLite file or a PostgreSQL database) against
/// checkpoints signed under `policy`.
pub fn audit_store(at: &crate::store::StoreAt, policy: &CheckpointPolicy) -> Result<AuditReport, StoreAuditError> {
    let name = at.describe();
    let failed = |detail: String| StoreAuditError::Failed {
        path: name.clone(),
        detail,
    };
    let store = at.open_snapshot().map_err(|e| match e {
        StoreError::Corrupt(_) => failed(e.to_string()),
        other => StoreAuditError::Unreadable(format!("opening {name}: {other}")),
    })?;
    modelgate_store::audit(&*store, policy).map_err(|e| match e {
        AuditError::Store(StoreError::Io(m)) => StoreAuditError::Unreadable(format!("reading {name}: {m}")),
        other => failed(other.to_string()),
    })
}
