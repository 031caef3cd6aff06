//! segmentctl: Amazon Pinpoint segments as code, the Segment API self-hosted, and who a
//! segment reaches.
//!
//! Three products share one model. The folders are the layers; each arrow runs one way
//! (the table in `architecture`'s test holds it):
//!
//! ```text
//! model ─▶ manifests ─▶ plan ─▶ report                       (pure, but for manifests' folder I/O)
//!   │                     ▲
//!   ├────▶ targets ─▶ reconcile ─▶ daemon                    (the reconciler: observe, apply, run)
//!   ├────▶ audience ◀─ server                                 (evaluation; the server's import reader)
//!   └──────────────────────────────────▶ cli                  (on top of everything)
//! ```
//!
//! - `model`: the one wire shape of a segment, its rules (`validate`), strict decoding.
//! - `manifests`: the folder, its settings and manifests, read into the desired state.
//! - `plan`: the live state, desired × live → diff → plan, with guards and reasons (pure).
//! - `report`: a plan and an apply as text, markdown, JSON and events (pure).
//! - `targets`: the API seam: which target, connected how; `targets::pinpoint` is the typed
//!   Pinpoint interface (SDK client, in-memory, pacing, conversions).
//! - `reconcile`: observe, apply, leases, and the pipeline for commands and the daemon.
//! - `daemon`: `run`: watch, rounds, requeue policy, metrics and the admin listener.
//! - `audience`: the evaluator, endpoint records, imported sources and a plan's impact.
//! - `server`: `serve`, the Segment API over SQLite or PostgreSQL, with its jobs.
//! - `cli`: arguments, and one function per command.

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
