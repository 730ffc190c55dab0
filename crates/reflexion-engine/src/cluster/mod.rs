//! Everything the engine reads from or writes to the cluster, through the Kubernetes API only: the evidence
//! (`evidence`; nodes, StorageClasses and claims in `placement`), and the minimal patches that execute typed actions, their dry runs and reverts (`executor`, with the
//! recreation of a bare pod where the API refuses an in-place change in `recreate`).

mod change;
mod claims;
mod evidence;
mod executor;
mod fleet;
mod owner;
mod placement;
mod rbac;
mod readback;
mod recreate;
mod revert;
mod service;
mod template;
pub mod throttle;
mod workload;

pub use change::{Change, field_value, value_from};
pub use claims::{fresh_claim, refusal as claim_refusal};
pub use evidence::{Revision, WrittenEvent};
pub use fleet::{Fleet, FleetError, Member};
pub use owner::{Applied, Controller, OwnerRecord};
pub use placement::NodeFacts;
pub use recreate::{ContainerEdit, Journal, PodEdit, Recreated, fresh_pod};
pub use revert::{Reverted, Snapshot};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::PatchParams;

pub const FIELD_MANAGER: &str = "kube-reflexion";
pub const INCIDENT_ANNOTATION: &str = "kube-reflexion.io/incident";
/// On kube-reflexion's Events: the name the API serves the cluster under.
pub const CLUSTER_ANNOTATION: &str = "kube-reflexion.io/cluster";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("container {container} not found in {workload}")]
    NoContainer { workload: String, container: String },
    #[error("{0} is not supported by the executor yet")]
    Unsupported(String),
    #[error("timed out waiting for {0}")]
    Timeout(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}; read back: the change is not in place, nothing was changed")]
    NotApplied(String),
    #[error(
        "{0}; the change may or may not be in place: check the workload before changing it again"
    )]
    Uncertain(String),
    #[error("object encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl From<reflexion_k8s::K8sError> for ClusterError {
    fn from(e: reflexion_k8s::K8sError) -> Self {
        match e {
            reflexion_k8s::K8sError::Kube(e) => Self::Kube(e),
            reflexion_k8s::K8sError::NotFound(what) => Self::NotFound(what),
        }
    }
}

#[derive(Clone)]
pub struct Cluster {
    client: Client,
    /// The name this API serves the cluster under (written on its Events).
    name: std::sync::Arc<str>,
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            name: "".into(),
        }
    }
    pub fn named(self, name: &str) -> Self {
        Self {
            name: name.into(),
            ..self
        }
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn client(&self) -> &Client {
        &self.client
    }
    pub async fn reachable(&self) -> Result<String, ClusterError> {
        Ok(self.client.apiserver_version().await?.git_version)
    }
}

/// A quantity of `memory` in bytes or of `cpu` in millicores.
pub fn quantity(resource: &str, q: &str) -> Option<u64> {
    match resource {
        "cpu" => reflexion_core::quantity::parse_millicores(q),
        _ => reflexion_core::quantity::parse_bytes(q),
    }
}

/// What a pod requests of a resource: the sum over its containers (init containers run one at a time, so the
/// largest of them counts if it is larger).
pub fn pod_request(pod: &Pod, resource: &str) -> u64 {
    let Some(spec) = &pod.spec else {
        return 0;
    };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource))
            .and_then(|q| quantity(resource, &q.0))
            .unwrap_or(0)
    };
    let app: u64 = spec.containers.iter().map(of).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(of)
        .max()
        .unwrap_or(0);
    app.max(init)
}

/// Patches are made as kube-reflexion's field manager; `dry_run` makes it a server-side dry run.
fn patch_params(dry_run: bool) -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run,
        ..PatchParams::default()
    }
}
