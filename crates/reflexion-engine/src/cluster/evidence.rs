//! What the engine reads: pods, their events and owner chain, a workload's current pods and containers, revisions,
//! ConfigMap and Secret keys, node capacity, crash logs. Evidence, never instructions.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use reflexion_core::EnvSource;
use reflexion_core::classify::PodEvent;
use reflexion_core::owner::{OwnerLink, WorkloadKind, WorkloadRef};
use reflexion_k8s::OwnerChains;

use super::{Cluster, ClusterError, pod_request, quantity};
use reflexion_core::revision::controller;
use serde_json::Value;

/// An Event kube-reflexion wrote on a workload, as `kubectl describe` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct WrittenEvent {
    pub at: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

/// One revision of a Deployment: a ReplicaSet it controls.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// `deployment.kubernetes.io/revision` (0 when the annotation is missing).
    pub number: i64,
    pub replicaset: String,
    pub available: i32,
    /// The ReplicaSet's pod template without the controller's `pod-template-hash` label.
    pub template: Value,
}

impl Cluster {
    pub async fn pod(&self, ns: &str, name: &str) -> Result<Option<Pod>, ClusterError> {
        Ok(Api::<Pod>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?)
    }
    /// Recent events of a pod, oldest first, at most 20.
    pub async fn pod_events(&self, pod: &Pod) -> Result<Vec<PodEvent>, ClusterError> {
        Ok(reflexion_k8s::pod_events(&self.client, pod, 20).await?)
    }
    /// The Events kube-reflexion wrote on a workload since `since`, oldest first.
    pub async fn written_events(
        &self,
        target: &WorkloadRef,
        since: k8s_openapi::jiff::Timestamp,
    ) -> Result<Vec<WrittenEvent>, ClusterError> {
        let api: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &target.namespace);
        let lp = ListParams::default().fields(&format!(
            "involvedObject.kind={},involvedObject.name={}",
            target.kind, target.name
        ));
        let mut out: Vec<WrittenEvent> = api
            .list(&lp)
            .await?
            .items
            .into_iter()
            .filter(|e| {
                e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(super::FIELD_MANAGER)
                    || e.reporting_component.as_deref() == Some(super::FIELD_MANAGER)
            })
            .filter_map(|e| {
                let at = e.last_timestamp.as_ref().map(|t| t.0)?;
                (at >= since).then(|| WrittenEvent {
                    at: at.to_string(),
                    type_: e.type_.unwrap_or_default(),
                    reason: e.reason.unwrap_or_default(),
                    message: e.message.unwrap_or_default(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(out)
    }
    /// The controller chain of a pod, read live (the report's copy is evidence, not truth), as the watcher reads it.
    pub async fn owner_chain(&self, pod: &Pod) -> Result<Vec<OwnerLink>, ClusterError> {
        Ok(OwnerChains::live(self.client.clone()).chain(pod).await?)
    }
    pub async fn deployment(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Deployment>, ClusterError> {
        Ok(Api::<Deployment>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?)
    }
    /// A Deployment's current ReplicaSet (the one running its template), if the controller has created it.
    pub async fn current_replicaset(
        &self,
        target: &WorkloadRef,
    ) -> Result<Option<ReplicaSet>, ClusterError> {
        Ok(reflexion_k8s::current_replicaset(&self.client, target).await?)
    }
    /// The pods that can prove a fix of the workload (by owner uid, never by name).
    pub async fn current_pods(&self, target: &WorkloadRef) -> Result<Vec<Pod>, ClusterError> {
        Ok(reflexion_k8s::workload_pods(&self.client, target).await?)
    }
    /// The image a workload's container runs now.
    pub async fn current_image(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<String, ClusterError> {
        let spec = match target.kind {
            WorkloadKind::Deployment | WorkloadKind::CronJob => {
                serde_json::from_value(self.template_spec(target).await?).ok()
            }
            WorkloadKind::Pod => self
                .pod(&target.namespace, &target.name)
                .await?
                .and_then(|p| p.spec),
            other => {
                return Err(ClusterError::Unsupported(format!(
                    "reading images of a {other}"
                )));
            }
        };
        let spec = spec.ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == container)
            .and_then(|c| c.image.clone())
            .ok_or_else(|| ClusterError::NoContainer {
                workload: target.to_string(),
                container: container.into(),
            })
    }
    /// The container of a workload (Deployment template or bare pod), as JSON.
    pub async fn container(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<Value, ClusterError> {
        match target.kind {
            WorkloadKind::Deployment | WorkloadKind::CronJob => {
                Ok(self.container_spec(target, container).await?.1)
            }
            _ => {
                let pod = self
                    .pod(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
                let pod = serde_json::to_value(pod)?;
                pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|c| c["name"] == container)
                    .cloned()
                    .ok_or_else(|| ClusterError::NoContainer {
                        workload: target.to_string(),
                        container: container.into(),
                    })
            }
        }
    }
    /// Every ConfigMap and Secret key in the namespace with exactly this name.
    /// The names of the keys of every ConfigMap and Secret in the namespace (never their values), at most 50
    /// objects: what a planner may reference.
    pub async fn config_keys(&self, ns: &str) -> Result<Vec<String>, ClusterError> {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let lp = ListParams::default().limit(50);
        let mut out = Vec::new();
        for cm in Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await?
            .items
        {
            let keys: Vec<String> = cm.data.unwrap_or_default().into_keys().collect();
            out.push(format!(
                "ConfigMap {}: {}",
                cm.metadata.name.unwrap_or_default(),
                keys.join(", ")
            ));
        }
        for s in Api::<Secret>::namespaced(self.client.clone(), ns)
            .list(&lp)
            .await?
            .items
        {
            let keys: Vec<String> = s.data.unwrap_or_default().into_keys().collect();
            out.push(format!(
                "Secret {}: {}",
                s.metadata.name.unwrap_or_default(),
                keys.join(", ")
            ));
        }
        Ok(out)
    }
    pub async fn env_sources(&self, ns: &str, key: &str) -> Result<Vec<EnvSource>, ClusterError> {
        use k8s_openapi::api::core::v1::{ConfigMap, Secret};
        let mut out = Vec::new();
        for cm in Api::<ConfigMap>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            if cm.data.as_ref().is_some_and(|d| d.contains_key(key)) {
                out.push(EnvSource::ConfigMapKey {
                    name: cm.name_any(),
                    key: key.into(),
                });
            }
        }
        for secret in Api::<Secret>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await?
            .items
        {
            if secret.data.as_ref().is_some_and(|d| d.contains_key(key))
                || secret
                    .string_data
                    .as_ref()
                    .is_some_and(|d| d.contains_key(key))
            {
                out.push(EnvSource::SecretKey {
                    name: secret.name_any(),
                    key: key.into(),
                });
            }
        }
        Ok(out)
    }
    /// The revisions of a Deployment (its ReplicaSets), newest first.
    pub async fn revisions(&self, target: &WorkloadRef) -> Result<Vec<Revision>, ClusterError> {
        let d = self
            .deployment(&target.namespace, &target.name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &target.namespace);
        let mut out = Vec::new();
        for rs in api.list(&ListParams::default()).await?.items {
            if controller(rs.metadata.owner_references.as_ref()).is_none_or(|o| o.uid != uid) {
                continue;
            }
            let revision = rs
                .annotations()
                .get("deployment.kubernetes.io/revision")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let available = rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            let mut template = serde_json::to_value(&rs)?["spec"]["template"].clone();
            if let Some(labels) = template
                .get_mut("metadata")
                .and_then(|m| m.get_mut("labels"))
                .and_then(Value::as_object_mut)
            {
                labels.remove("pod-template-hash");
            }
            out.push(Revision {
                number: revision,
                replicaset: rs.name_any(),
                available,
                template,
            });
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.number));
        Ok(out)
    }
    /// (index, container spec as JSON) of a container in a Deployment's template.
    pub(super) async fn container_spec(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<(usize, Value), ClusterError> {
        self.template_spec(target).await?["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .find(|(_, c)| c["name"] == container)
            .map(|(i, c)| (i, c.clone()))
            .ok_or_else(|| ClusterError::NoContainer {
                workload: target.to_string(),
                container: container.into(),
            })
    }
    /// Per schedulable node: (name, allocatable, requested by the pods bound to it) of `memory` (bytes) or `cpu`
    /// (millicores).
    pub async fn node_capacity(
        &self,
        resource: &str,
    ) -> Result<Vec<(String, u64, u64)>, ClusterError> {
        use k8s_openapi::api::core::v1::Node;
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let pods = Api::<Pod>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let mut out = Vec::new();
        for n in nodes.items {
            if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
                continue;
            }
            let name = n.name_any();
            let allocatable = n
                .status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref())
                .and_then(|a| a.get(resource))
                .and_then(|q| quantity(resource, &q.0))
                .unwrap_or(0);
            let requested = pods
                .items
                .iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
                .filter(|p| {
                    !matches!(
                        p.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Succeeded" | "Failed")
                    )
                })
                .map(|p| pod_request(p, resource))
                .sum();
            out.push((name, allocatable, requested));
        }
        Ok(out)
    }
    /// The container's memory limit and request on the workload, as written (`None` when unset).
    pub async fn memory(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<(Option<String>, Option<String>), ClusterError> {
        let spec = self.container(target, container).await?;
        let r = &spec["resources"];
        Ok((
            r["limits"]["memory"].as_str().map(String::from),
            r["requests"]["memory"].as_str().map(String::from),
        ))
    }
    /// The last log lines of the instance that crashed, bounded and stripped of control characters: evidence for a
    /// human, never an instruction. While a container waits in CrashLoopBackOff its dead instance is still the
    /// current one; once restarted, it is the previous one.
    pub async fn crash_logs(&self, ns: &str, pod: &str, container: &str) -> Option<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        for previous in [true, false] {
            let lp = kube::api::LogParams {
                container: Some(container.into()),
                previous,
                tail_lines: Some(20),
                limit_bytes: Some(4096),
                ..Default::default()
            };
            if let Ok(text) = api.logs(pod, &lp).await {
                let clean: String = text
                    .chars()
                    .filter(|c| !c.is_control() || *c == '\n')
                    .take(2000)
                    .collect();
                if !clean.trim().is_empty() {
                    return Some(clean.trim_end().to_string());
                }
            }
        }
        None
    }
}
