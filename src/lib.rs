//! segmentctl: Amazon Pinpoint segments as code.
//!
//! ```text
//! manifests/*.yaml ─▶ manifest ─▶ desired ─┐   (workspace: the folder and its settings)
//!                                           ▼
//! Pinpoint API ─▶ pinpoint ─▶ observe ─▶ live ─▶ diff ─▶ plan ─▶ apply ─▶ pinpoint ─▶ API
//!                                                          └─▶ report (text / markdown / json)
//! pipeline = workspace → settings → observe → plan, for the commands and the daemon alike
//! endpoint records ─▶ endpoints ─▶ evaluate ─▶ estimate, audience (plan --endpoints)
//! daemon = watch(dir) + resync timer ─▶ reconcile (one round) ─▶ policy (requeue, backoff)
//! server = axum router ─▶ handlers ─▶ store (SQLite)
//! ```
//!
//! `model` is the one wire shape of a segment, shared by every stage; `validate` holds the
//! rules the server and the manifest loader both enforce. `manifest`, `desired`, `live`,
//! `diff`, `plan` and `report` are pure: data in, data out.

// The one wire shape of a segment, and the rules it must satisfy.
pub mod model;

pub mod validate;

pub mod strict;

// Manifests → desired state (pure, except `folder`, which reads files, and `workspace`).
pub mod folder;

pub mod config;

pub mod manifest;

pub mod desired;

pub mod workspace;

// The observed state, desired × observed → diff → plan → reports (pure).
pub mod live;

pub mod diff;

pub mod plan;

pub mod report;

pub mod text;

// Audiences: segments evaluated over endpoint records, and a plan's audience impact.
pub mod evaluate;

pub mod endpoints;

pub mod audience;

// The I/O: the typed Pinpoint interface (SDK and in-memory), pacing, SDK conversions,
// the target, observing, applying, and the pipeline that strings them together.
pub mod api;

pub mod sdk;

pub mod pinpoint;

pub mod target;

pub mod observe;

pub mod apply;

pub mod pipeline;

pub mod lease;

// The controller, the server, and the command line that wires them.
pub mod daemon;

pub mod status;

pub mod server;
pub mod sources;

pub mod cli;

pub mod commands;

// Small helpers.
pub mod par;

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
