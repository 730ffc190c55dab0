//! Where a pod can go and what it can mount, read for the scheduling and storage rules: the schedulable nodes'
//! labels and taints, the StorageClasses, a claim. Evidence, never instructions.

use super::{Cluster, ClusterError};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Taint};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use serde_json::Value;
use std::collections::BTreeMap;

/// The annotation that marks the default StorageClass.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// A schedulable node, as the scheduling rules need it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `NoSchedule` and `NoExecute` taints: the ones that keep a pod off the node.
    pub taints: Vec<Taint>,
}

impl Cluster {
    /// The pod spec a workload's pods get: a Deployment's or CronJob's template, or the bare pod's own.
    pub async fn pod_spec(&self, target: &WorkloadRef) -> Result<Value, ClusterError> {
        Ok(match target.kind {
            WorkloadKind::Deployment | WorkloadKind::CronJob => self.template_spec(target).await?,
            _ => serde_json::to_value(
                self.pod(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?,
            )?["spec"]
                .clone(),
        })
    }

    /// Nodes the scheduler may use (not cordoned).
    pub async fn schedulable_nodes(&self) -> Result<Vec<NodeFacts>, ClusterError> {
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        Ok(nodes
            .items
            .into_iter()
            .filter(|n| n.spec.as_ref().and_then(|s| s.unschedulable) != Some(true))
            .map(|n| NodeFacts {
                name: n.name_any(),
                labels: n.labels().clone(),
                taints: n
                    .spec
                    .and_then(|s| s.taints)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                    .collect(),
            })
            .collect())
    }

    /// Every StorageClass: (name, whether it is the default).
    pub async fn storage_classes(&self) -> Result<Vec<(String, bool)>, ClusterError> {
        let classes = Api::<StorageClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        Ok(classes
            .items
            .into_iter()
            .map(|c| {
                let default = c
                    .annotations()
                    .get(DEFAULT_CLASS)
                    .is_some_and(|v| v == "true");
                (c.name_any(), default)
            })
            .collect())
    }

    /// A PersistentVolumeClaim, as JSON.
    pub async fn claim(&self, ns: &str, name: &str) -> Result<Option<Value>, ClusterError> {
        match Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?
        {
            Some(c) => Ok(Some(serde_json::to_value(c)?)),
            None => Ok(None),
        }
    }
}
