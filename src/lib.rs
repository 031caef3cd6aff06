//! segmentctl: Amazon Pinpoint segments as code.
//!
//! ```text
//! manifests/*.yaml ─▶ manifest ─▶ desired ─┐
//!                                           ▼
//! Pinpoint API ────▶ observe ──────────▶ diff ─▶ plan ─▶ apply ─▶ Pinpoint API
//!                                                  └─▶ report (text / markdown / json)
//! daemon = watch(dir) + resync timer ─▶ the same pipeline
//! server = axum router ─▶ handlers ─▶ store (SQLite)
//! ```
//!
//! `model` is the one wire shape of a segment, shared by every stage; `validate` holds the
//! rules the server and the manifest loader both enforce.

pub mod model;
pub mod validate;

pub mod server;

pub mod sdk;

pub mod cli;
