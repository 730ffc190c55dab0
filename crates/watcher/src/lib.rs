//! The watcher: notices failing pods through the Kubernetes watch API, classifies them with `reflexion-core`,
//! resolves the workload that owns them, reports each failure once, and delivers reports without ever blocking
//! the watch.

pub mod admin;
pub mod dedup;
pub mod delivery;
pub mod detect;
pub mod lease;
pub mod metrics;
pub mod projection;
pub mod refused;
pub mod services;
pub mod spool;
pub mod stalled;
