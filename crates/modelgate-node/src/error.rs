//! The crate's one error type, and the error of a read from the authority.

use std::path::{Path, PathBuf};

/// Why a node operation failed (other than a sync, which fails with a
/// containment reason: [`crate::SyncError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration (file or environment) is not valid.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A lock was poisoned (a thread panicked holding it): nothing it
    /// guarded can be trusted any more.
    #[error("the {0} lock is poisoned")]
    Poisoned(&'static str),
    /// A signed entry could not be built.
    #[error(transparent)]
    Entry(#[from] modelgate_governance::EntryError),
}

impl NodeError {
    /// An I/O failure on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        NodeError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Why a request to the authority gave no usable answer.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// No answer: connection refused, timed out, cut short, a body over the limit.
    #[error("{url}: {detail}")]
    Transport {
        /// What was asked.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// An answer with a status other than the one expected.
    #[error("{url}: HTTP {status}")]
    Status {
        /// What was asked.
        url: String,
        /// The status.
        status: u16,
    },
}
