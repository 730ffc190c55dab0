//! reflexion-api: the REST server and the Reflexion loop, wired together. The layers are their own crates — the
//! store (`reflexion_store`), the engine and its cluster and Git writes (`reflexion_engine`), the REST server and
//! console (`reflexion_http`) — and this one holds the service's configuration and binary; they are re-exported here
//! by the names the binary and the tests use.

pub mod config;
mod notify;

pub use reflexion_engine::{cluster, engine, llm, registry, verify};
pub use reflexion_http as http;
pub use reflexion_store as db;
pub use reflexion_store::metrics;
