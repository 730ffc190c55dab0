//! The Reflexion loop of kube-reflexion, without its server: incidents worked from diagnosis to a verified fix or a
//! precise hand-over (`engine`), everything read from and written to the clusters (`cluster`), the Git write path's
//! use (`engine::write`, on `reflexion_gitops`), verification by watching (`verify`), the image registry
//! (`registry`) and the LLM client (`llm`). The store is `reflexion_store`; the REST server is `reflexion_http`.

pub mod cluster;
pub mod engine;
pub mod llm;
pub mod registry;
pub mod verify;

/// The store, by the name the engine uses.
pub use reflexion_store as db;
