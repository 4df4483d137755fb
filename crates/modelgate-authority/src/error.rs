//! Authority errors (start-up and administration; HTTP errors are JSON).

use modelgate_store::StoreError;

/// Why the authority could not start or an administrative command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// Bad configuration or data directory.
    #[error("{0}")]
    Config(String),
    /// The store failed (including: another authority holds it).
    #[error("{0}")]
    Store(StoreError),
    /// The log in the store does not fold.
    #[error("the governance log does not fold: {0}")]
    Fold(String),
    /// File or network I/O.
    #[error("{0}")]
    Io(String),
    /// A state snapshot that cannot be written, or read back and trusted.
    #[error("state snapshot: {0}")]
    Snapshot(String),
}
