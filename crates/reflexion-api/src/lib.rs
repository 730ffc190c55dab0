//! reflexion-api: the REST server and the Reflexion loop. It owns the SQLite memory and is the only component
//! that writes to the cluster.

pub mod cluster;
pub mod config;
pub mod db;
pub mod engine;
pub mod http;
pub mod llm;
pub mod metrics;
pub mod registry;
pub mod verify;
