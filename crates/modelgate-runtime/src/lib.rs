//! The running node: the loop that keeps every model's lifecycle current
//! ([`runtime`]), the governed OpenAI-compatible gateway in front of an
//! inference server ([`gateway`]), and the supervision behind `exec`
//! ([`exec`]).
//!
//! What it guarantees, on top of `modelgate-node`'s verified sync and typed
//! lifecycle:
//!
//! - **Fail closed.** A call is forwarded only while its model is Serving
//!   (all ten lifecycle steps), its files unchanged since verification, the
//!   loop's snapshot fresher than the staleness bound, the governance
//!   decision allows it, and its request record is durable in the lineage
//!   log. Every refusal is a [`Refusal`] naming its code and the
//!   EG-MODEL-001 §3 [`Check`](modelgate_governance::Check) that failed.
//! - **No waiting on others.** The gateway reads the loop's published
//!   snapshot and never waits for the loop; the loop posts reports,
//!   heartbeats and anchors through a courier thread and never waits for the
//!   authority.
//! - **Three seams**, each a trait with a written contract: the node's
//!   client of the authority ([`AuthorityClient`]), its lineage log
//!   ([`LineageLog`]) and its clock ([`Clock`]). [`Parts::from_config`]
//!   builds the real ones; tests pass fakes that lie, stall, fork, refuse
//!   writes and jump in time.

pub mod authority;
pub mod clock;
mod error;
pub mod exec;
pub mod gateway;
pub mod init;
pub mod lineage;
pub mod peers;
pub mod replicate;
pub mod runtime;
pub mod status;
mod telemetry;
pub mod tls;

pub use authority::{AuthorityClient, HttpAuthority};
pub use clock::{Clock, SystemClock};
pub use error::{Error, Refusal, RefusalParts};
pub use lineage::{LineageError, LineageLog, StoreLineage};
pub use runtime::{Event, ModelStatus, Node, Parts, Runtime, Shared, Snapshot, Why};
