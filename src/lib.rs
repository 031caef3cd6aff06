//! segmentctl: Amazon Pinpoint segments as code, the Segment API self-hosted, and who a
//! segment reaches.
//!
//! Three products share one model. The folders are the layers, listed here in dependency
//! order: each may use only layers above it, as the table in `architecture.rs` holds.
//!
//! ```text
//! model        the one wire shape of a segment (and of a Customer Profiles segment
//!              definition), its rules (validate), strict decoding                      (pure)
//! manifests    the folder, its settings and manifests, read into the desired state
//! plan         the live state; desired × live → diff → plan, guards and reasons         (pure)
//! report       a plan as text, markdown and JSON                                        (pure)
//! audience     the evaluator (Pinpoint segments over endpoints, Customer Profiles
//!              definitions over profiles), import rows, sources, a plan's impact
//! server       `serve`: the Segment API and Customer Profiles' segment API over SQLite
//!              or PostgreSQL, its jobs                                            → audience
//! targets      the API seam: which target, connected how; `pinpoint` is the typed
//!              interface (SDK client, in-memory, pacing, conversions)  → the embedded server
//! reconcile    observe, apply and its outcome, leases; the pipeline load → observe → plan
//! daemon       `run`: watch, rounds, requeue policy, metrics, the admin listener
//! cli          arguments, and one function per command
//! ```
//!
//! `text`, `par` and `retry` are helpers every layer may use.

// The one wire shape of a segment, and the rules it must satisfy.
pub mod model;

// Manifests → desired state.
pub mod manifests;

// The observed state, desired × observed → diff → plan → reports (pure).
pub mod plan;

pub mod report;

// Audiences: segments evaluated over endpoint records, and a plan's audience impact.
pub mod audience;

// The reconciler's I/O: the target seam, observing and applying, the controller.
pub mod targets;

pub mod reconcile;

pub mod daemon;

// The server, and the command line that wires everything.
pub mod server;

pub mod cli;

// Small helpers every layer may use.
pub mod par;

pub mod retry;

pub mod text;

/// Tag keys with this prefix belong to segmentctl.
pub const TAG_PREFIX: &str = "segmentctl:";
/// Ownership: which installation manages a segment or application.
pub const TAG_MANAGED_BY: &str = "segmentctl:managed-by";
/// Ownership: the manifest's `metadata.name`.
pub const TAG_NAME: &str = "segmentctl:name";
/// Protection that outlives the manifest: deletion is refused while this tag says "true".
pub const TAG_PROTECT: &str = "segmentctl:protect";
/// A lease on an application while an applier changes it (see `lease`); never part of what
/// the manifests declare.
pub const TAG_LEASE: &str = "segmentctl:lease";

/// The layers, held: which layer may use which, and which files do no I/O. A new arrow
/// (a cycle, a pure module reading files) fails here, in the table a reviewer reads.
#[cfg(test)]
mod architecture;
