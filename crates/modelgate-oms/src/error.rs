//! The crate's one error type.
//!
//! Every variant names what was wrong and where (a file, a field, a certificate),
//! because the caller of a verifier is usually a person deciding whether to trust
//! a model, and "verification failed" alone gives them nothing to act on.

use std::fmt;

/// Why hashing, signing or verifying a model did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory of the model could not be read.
    #[error("couldn't read {path}: {source}")]
    Io {
        /// The path, relative to the model root where possible.
        path: String,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The model tree contains something we refuse to hash.
    #[error("{path}: {reason}")]
    Tree {
        /// The offending path, relative to the model root.
        path: String,
        /// What is wrong with it.
        reason: TreeProblem,
    },
    /// After exclusions, nothing of the model is left to sign.
    #[error("the model has no file left to hash after exclusions")]
    EmptyModel,
    /// A command-line or API argument is unusable.
    #[error("{0}")]
    Usage(String),
    /// A key or certificate file could not be used.
    #[error("{what}: {reason}")]
    Key {
        /// Which input (a path or a role such as "signing certificate").
        what: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The signature file is not a bundle we can verify.
    #[error("malformed signature bundle: {0}")]
    Bundle(String),
    /// The bundle parsed but its signature or certificate chain does not verify.
    #[error("signature verification failed: {0}")]
    Signature(String),
    /// The signed statement is not a valid OMS statement.
    #[error("invalid signed statement: {0}")]
    Statement(String),
    /// The model on disk differs from what was signed.
    #[error("model does not match its signature: {0}")]
    Mismatch(Mismatch),
    /// The run was cancelled through its [`crate::HashProgress`] before it finished.
    #[error("hashing was cancelled before it finished")]
    Cancelled,
}

impl Error {
    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tree(path: impl Into<String>, reason: TreeProblem) -> Self {
        Error::Tree {
            path: path.into(),
            reason,
        }
    }

    /// True when the error means "this model is not what was signed", as opposed
    /// to "the input could not be read or used". The CLI maps the first to exit 1
    /// and the second to exit 2.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::Signature(_) | Error::Statement(_) | Error::Mismatch(_) | Error::Bundle(_)
        )
    }
}

/// Something in the model tree that is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeProblem {
    /// A symbolic link, and symlinks were not allowed.
    SymlinkNotAllowed,
    /// A symbolic link whose target leaves the model root (or is absolute).
    SymlinkEscapes,
    /// Following symbolic links leads back into a directory already being walked.
    SymlinkCycle,
    /// A socket, FIFO, device or other non-regular file.
    SpecialFile,
    /// A file name that is not valid UTF-8 cannot be named in the manifest.
    NonUtf8Name,
    /// The file changed size while it was being hashed.
    ChangedWhileHashing,
}

impl fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TreeProblem::SymlinkNotAllowed => {
                "is a symbolic link; symlinks are refused unless --allow-symlinks is given"
            }
            TreeProblem::SymlinkEscapes => "is a symbolic link that leaves the model root",
            TreeProblem::SymlinkCycle => "is a symbolic link that forms a cycle",
            TreeProblem::SpecialFile => "is neither a regular file nor a directory",
            TreeProblem::NonUtf8Name => "has a name that is not valid UTF-8",
            TreeProblem::ChangedWhileHashing => "changed size while it was being hashed",
        })
    }
}

/// How the model on disk differs from the signed manifest, by resource name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mismatch {
    /// Signed resources that are not on disk.
    pub missing: Vec<String>,
    /// Resources on disk that were not signed.
    pub extra: Vec<String>,
    /// Resources whose digest differs from the signed one.
    pub changed: Vec<String>,
}

impl Mismatch {
    /// True when the two manifests agree.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (label, names) in [
            ("changed", &self.changed),
            ("missing", &self.missing),
            ("not signed", &self.extra),
        ] {
            if !names.is_empty() {
                parts.push(format!("{label}: {}", names.join(", ")));
            }
        }
        f.write_str(&parts.join("; "))
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
