//! Authority errors (start-up and administration; HTTP errors are
//! [`crate::api_error::ApiError`]): a kind and a message, the kind's exit
//! code from one exhaustive match.

use modelgate_store::StoreError;

/// What went wrong starting or administering an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad configuration or data directory.
    Config,
    /// The store failed (including: another authority holds it).
    Store,
    /// The log in the store does not fold.
    Fold,
    /// File or network I/O.
    Io,
    /// A state snapshot that cannot be written, or read back and trusted.
    Snapshot,
}

impl ErrorKind {
    /// The process exit code for it: 1 when what was checked is not valid
    /// (a log that does not fold), 2 when it could not be done.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Fold => 1,
            ErrorKind::Config | ErrorKind::Store | ErrorKind::Io | ErrorKind::Snapshot => 2,
        }
    }
}

/// Why the authority could not start or an administrative command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// What exactly.
    pub message: String,
}

impl AuthorityError {
    fn new(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        Self {
            kind,
            message: message.to_string(),
        }
    }

    /// Bad configuration or data directory.
    pub fn config(m: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Config, m)
    }

    /// The store failed.
    pub fn store(e: StoreError) -> Self {
        Self::new(ErrorKind::Store, e)
    }

    /// The log does not fold.
    pub fn fold(m: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Fold, m)
    }

    /// File or network I/O.
    pub fn io(m: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Io, m)
    }

    /// A state snapshot.
    pub fn snapshot(m: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Snapshot, m)
    }
}

impl std::fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ErrorKind::Fold => write!(f, "the governance log does not fold: {}", self.message),
            ErrorKind::Snapshot => write!(f, "state snapshot: {}", self.message),
            ErrorKind::Config | ErrorKind::Store | ErrorKind::Io => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for AuthorityError {}
