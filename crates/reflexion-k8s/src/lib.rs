//! The Kubernetes reads the watcher and reflexion-api share, so that both resolve the same owner chain and judge
//! the same pods: a report's workload and the engine's target cannot disagree.
//!
//! The rules themselves (which owner kinds to follow, which pods can prove a fix) are pure functions in
//! `reflexion-core`; this crate only fetches what they read.

pub mod client;
pub mod events;
pub mod kubeconfig;
pub mod owners;
pub mod pods;

pub use events::pod_events;
pub use owners::{OwnerChains, known_chain, next_owner_kind};
pub use pods::{current_replicaset, job_finished, scaled_away, workload_pods};

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("{0} not found")]
    NotFound(String),
}
