//! The runtime node: the part of modelgate that turns governance into
//! enforcement. It trusts nothing it has not verified itself.
//!
//! - [`sync`]: verified synchronization with the governance log. A new view
//!   is accepted only with the log key's signature, the trust root's witness
//!   quorum, a fresh authority cosignature, consistency with the last trusted
//!   checkpoint (rollback and fork refused, also across restarts through
//!   [`sync::Trusted`]), entries that rebuild the checkpoint's root, the
//!   node's own fold of every entry (approver signatures checked against the
//!   pinned trust root), and the same state digest as the authority's. Every
//!   failure names a containment reason.
//!
//! - [`lifecycle`]: the ten steps of EG-MODEL-001 §9 as types; each
//!   transition consumes the previous step and needs its check's evidence,
//!   so a model cannot reach `Serving` any other way; failures contain with
//!   a named reason; every transition is recorded.
//!
//! - [`integrity`]: a model's files against its signed manifest, trusting
//!   only what the node's authenticated [`digest_cache`] or the kernel's
//!   [`fs_verity`] seal vouches for; the same check reads every byte for
//!   the background re-verification.
//!
//! - [`config`]: the node's TOML configuration, every field overridable by
//!   `MODELGATE_NODE_*`, unknown fields refused.
//!
//! - [`report`]: containment and recovery reports signed with the node's
//!   key (the authority accepts them without a token: the signature is the
//!   authentication).
//!
//! - [`proof`]: the offline check of a call's lineage proof chain.
//!
//! The running node (its loop, the gateway, `exec`) is `modelgate-runtime`,
//! built on these.

pub mod audit;
pub mod config;
pub mod digest_cache;
mod error;
pub mod files;
pub mod fs_verity;
pub mod integrity;
pub mod lifecycle;
pub mod proof;
pub mod report;
pub mod split_view;
pub mod sync;

pub use error::{FetchError, NodeError};
pub use modelgate_governance::ContainmentReason;
pub use modelgate_governance::{Check, LifecycleStep};
pub use sync::{Fetch, SyncError, Syncer, Trusted, View};
