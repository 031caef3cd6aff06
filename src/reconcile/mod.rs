//! The reconciler's I/O over a target: observing the live state, applying a plan step by
//! step, leases that keep two appliers apart, and the pipeline that strings load, observe and
//! plan together for the commands and the daemon alike.

pub mod apply;
pub mod definitions;
pub mod lease;
pub mod observe;
pub mod outcome;
pub mod pipeline;
