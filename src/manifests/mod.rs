//! The folder of manifests and its settings, read into the desired state.
//!
//! `manifest` parses and checks one file (every error located: file, line, column, field);
//! `desired` resolves a folder's manifests into the desired state per application (pure);
//! `config` is `segmentctl.yaml`; `folder` lists and opens files without leaving the folder;
//! `workspace` strings them together for a command (the I/O side of this layer).

pub mod config;
pub mod convert;
pub mod definitions;
pub mod desired;
pub mod folder;
pub mod manifest;
pub mod workspace;
