//! Everything the engine reads from or writes to the cluster, through the Kubernetes API only: evidence, the
//! owner chain, server-side dry runs, the minimal patches that execute typed actions, reverts, and Events.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use reflexion_core::classify::{PodEvent, recent_events};
use reflexion_core::owner::{OwnerLink, WorkloadKind, WorkloadRef};
use reflexion_core::revision;
use reflexion_core::{Action, EnvSource};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

pub const FIELD_MANAGER: &str = "kube-reflexion";
pub const INCIDENT_ANNOTATION: &str = "kube-reflexion.io/incident";
/// How long past a pod's grace period a recreation waits for the old pod to go.
const DELETE_MARGIN: Duration = Duration::from_secs(30);

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
    #[error("object encoding: {0}")]
    Encoding(#[from] serde_json::Error),
}

/// What an executed action changed, so it can be undone.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Snapshot {
    Image {
        target: WorkloadRef,
        container: String,
        old_image: String,
        new_image: String,
    },
    Resources {
        target: WorkloadRef,
        container: String,
        /// The container's whole `resources` before the change (null if it had none).
        old: Value,
        new_limit: String,
    },
    Env {
        target: WorkloadRef,
        container: String,
        /// The container's `env` before the change (null if it had none), and the variable added.
        old: Value,
        name: String,
    },
    /// One field of a Deployment's container (a probe, the resources) before and after the change.
    Field {
        target: WorkloadRef,
        container: String,
        field: String,
        old: Value,
        new: Value,
    },
    Template {
        target: WorkloadRef,
        /// The pod template before the rollback, and the one the rollback set.
        old: Value,
        new: Value,
    },
    RecreatedPod {
        namespace: String,
        original: Value,
        new_uid: String,
    },
}

#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

impl Cluster {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub async fn reachable(&self) -> Result<String, ClusterError> {
        Ok(self.client.apiserver_version().await?.git_version)
    }

    pub async fn pod(&self, ns: &str, name: &str) -> Result<Option<Pod>, ClusterError> {
        Ok(Api::<Pod>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?)
    }

    /// Recent events of a pod, oldest first, at most 20.
    pub async fn pod_events(&self, pod: &Pod) -> Result<Vec<PodEvent>, ClusterError> {
        let api: Api<Event> =
            Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let lp = ListParams::default().fields(&format!(
            "involvedObject.uid={}",
            pod.uid().unwrap_or_default()
        ));
        Ok(recent_events(api.list(&lp).await?.items, 20))
    }

    /// The controller chain of a pod, read live (the report's copy is evidence, not truth).
    pub async fn owner_chain(&self, pod: &Pod) -> Result<Vec<OwnerLink>, ClusterError> {
        let ns = pod.namespace().unwrap_or_default();
        let mut chain = vec![OwnerLink {
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
        }];
        let mut next = controller(pod.owner_references());
        while let Some(owner) = next.take() {
            chain.push(OwnerLink {
                kind: owner.kind.clone(),
                name: owner.name.clone(),
                uid: owner.uid.clone(),
            });
            if owner.kind == "ReplicaSet"
                && chain.len() < 4
                && let Some(rs) = Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                    .get_opt(&owner.name)
                    .await?
            {
                next = controller(rs.owner_references());
            }
        }
        Ok(chain)
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
        let Some(d) = self.deployment(&target.namespace, &target.name).await? else {
            return Ok(None);
        };
        let sets = Api::<ReplicaSet>::namespaced(self.client.clone(), &target.namespace)
            .list(&ListParams::default())
            .await?
            .items;
        Ok(revision::current_replicaset(&d, &sets).cloned())
    }

    /// The pods that can prove a fix of the workload: not terminating, and for a Deployment only those of its
    /// current ReplicaSet (never matched by name).
    pub async fn current_pods(&self, target: &WorkloadRef) -> Result<Vec<Pod>, ClusterError> {
        let api = Api::<Pod>::namespaced(self.client.clone(), &target.namespace);
        match target.kind {
            WorkloadKind::Deployment => {
                let Some(rs) = self.current_replicaset(target).await? else {
                    return Ok(Vec::new());
                };
                let hash = rs
                    .labels()
                    .get(revision::POD_TEMPLATE_HASH)
                    .cloned()
                    .unwrap_or_default();
                let lp = ListParams::default()
                    .labels(&format!("{}={hash}", revision::POD_TEMPLATE_HASH));
                Ok(api
                    .list(&lp)
                    .await?
                    .items
                    .into_iter()
                    .filter(|p| revision::proves(p, Some(&rs)))
                    .collect())
            }
            _ => Ok(api
                .get_opt(&target.name)
                .await?
                .into_iter()
                .filter(|p| revision::proves(p, None))
                .collect()),
        }
    }

    /// The image a workload's container runs now.
    pub async fn current_image(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<String, ClusterError> {
        let spec = match target.kind {
            WorkloadKind::Deployment => self
                .deployment(&target.namespace, &target.name)
                .await?
                .and_then(|d| d.spec)
                .and_then(|s| s.template.spec),
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

    /// A server-side dry run of the action: the API server validates and admits it without persisting.
    pub async fn dry_run(&self, action: &Action) -> Result<Value, ClusterError> {
        match action {
            Action::SetImage {
                target,
                container,
                image,
            } => {
                self.patch_image(target, container, image, true).await?;
                Ok(json!({"dry_run": "patch accepted", "target": target.to_string()}))
            }
            Action::SetResources {
                target,
                container,
                memory_limit,
                memory_request,
            } if target.kind == WorkloadKind::Deployment => {
                self.patch_memory(
                    target,
                    container,
                    memory_limit,
                    memory_request.as_deref(),
                    true,
                )
                .await?;
                Ok(json!({"dry_run": "patch accepted", "target": target.to_string()}))
            }
            Action::SetResources { target, .. } if target.kind == WorkloadKind::Pod => {
                self.dry_run_delete(target).await?;
                Ok(
                    json!({"dry_run": "delete accepted; the recreated pod is validated on create", "target": target.to_string()}),
                )
            }
            Action::SetResources { target, .. } => Err(ClusterError::Unsupported(format!(
                "set_resources on a {}",
                target.kind
            ))),
            Action::SetEnv {
                target,
                container,
                name,
                from,
            } if target.kind == WorkloadKind::Deployment => {
                self.patch_env(target, container, name, from, true).await?;
                Ok(json!({"dry_run": "patch accepted", "target": target.to_string()}))
            }
            Action::SetEnv { target, .. } if target.kind == WorkloadKind::Pod => {
                self.dry_run_delete(target).await?;
                Ok(
                    json!({"dry_run": "delete accepted; the recreated pod is validated on create", "target": target.to_string()}),
                )
            }
            Action::SetEnv { target, .. } => Err(ClusterError::Unsupported(format!(
                "set_env on a {}",
                target.kind
            ))),
            Action::SetProbe { target, .. } | Action::SetRequests { target, .. }
                if target.kind == WorkloadKind::Pod =>
            {
                self.dry_run_delete(target).await?;
                Ok(
                    json!({"dry_run": "delete accepted; the recreated pod is validated on create", "target": target.to_string()}),
                )
            }
            Action::SetProbe { target, .. } | Action::SetRequests { target, .. }
                if target.kind == WorkloadKind::Deployment =>
            {
                let (index, container, field, _, new) = self.field_edit(action).await?;
                self.patch_field(target, index, &container, field, &new, true)
                    .await?;
                Ok(json!({"dry_run": "patch accepted", "target": target.to_string()}))
            }
            Action::SetProbe { target, .. } | Action::SetRequests { target, .. } => Err(
                ClusterError::Unsupported(format!("{} on a {}", action.name(), target.kind)),
            ),
            Action::RolloutUndo {
                target,
                to_revision,
            } => {
                let (_, template) = self.revision_template(target, *to_revision).await?;
                self.replace_template(target, &template, true).await?;
                Ok(
                    json!({"dry_run": "template replacement accepted", "target": target.to_string()}),
                )
            }
            Action::Escalate { .. } => Ok(json!({"dry_run": "nothing to change"})),
        }
    }

    async fn patch_image(
        &self,
        target: &WorkloadRef,
        container: &str,
        image: &str,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let containers = json!([{"name": container, "image": image}]);
        match target.kind {
            WorkloadKind::Deployment => {
                let patch = json!({"spec": {"template": {"spec": {"containers": containers}}}});
                self.patch_deployment(target, Patch::Strategic(patch), dry_run)
                    .await?;
            }
            WorkloadKind::Pod => {
                let patch = json!({"spec": {"containers": containers}});
                Api::<Pod>::namespaced(self.client.clone(), &target.namespace)
                    .patch(
                        &target.name,
                        &patch_params(dry_run),
                        &Patch::Strategic(patch),
                    )
                    .await?;
            }
            other => return Err(ClusterError::Unsupported(format!("set_image on a {other}"))),
        }
        Ok(())
    }

    /// Execute an action for real. The returned snapshot is what `revert` needs.
    pub async fn execute(
        &self,
        action: &Action,
        incident_id: &str,
    ) -> Result<Snapshot, ClusterError> {
        match action {
            Action::SetImage {
                target,
                container,
                image,
            } => {
                let old_image = self.current_image(target, container).await?;
                self.patch_image(target, container, image, false).await?;
                Ok(Snapshot::Image {
                    target: target.clone(),
                    container: container.clone(),
                    old_image,
                    new_image: image.clone(),
                })
            }
            Action::SetResources {
                target,
                container,
                memory_limit,
                memory_request,
            } if target.kind == WorkloadKind::Deployment => {
                let old = self.container_spec(target, container).await?.1["resources"].clone();
                self.patch_memory(
                    target,
                    container,
                    memory_limit,
                    memory_request.as_deref(),
                    false,
                )
                .await?;
                Ok(Snapshot::Resources {
                    target: target.clone(),
                    container: container.clone(),
                    old,
                    new_limit: memory_limit.clone(),
                })
            }
            Action::SetResources {
                target,
                container,
                memory_limit,
                memory_request,
            } if target.kind == WorkloadKind::Pod => {
                let edit = ContainerEdit::Memory {
                    limit: memory_limit,
                    request: memory_request.as_deref(),
                };
                self.recreate(target, container, edit, incident_id).await
            }
            Action::SetResources { target, .. } => Err(ClusterError::Unsupported(format!(
                "set_resources on a {}",
                target.kind
            ))),
            Action::SetEnv {
                target,
                container,
                name,
                from,
            } if target.kind == WorkloadKind::Deployment => {
                let old = self.container_spec(target, container).await?.1["env"].clone();
                self.patch_env(target, container, name, from, false).await?;
                Ok(Snapshot::Env {
                    target: target.clone(),
                    container: container.clone(),
                    old,
                    name: name.clone(),
                })
            }
            Action::SetEnv {
                target,
                container,
                name,
                from,
            } if target.kind == WorkloadKind::Pod => {
                let value_from = value_from(from);
                let edit = ContainerEdit::Env {
                    name,
                    value_from: &value_from,
                };
                self.recreate(target, container, edit, incident_id).await
            }
            Action::SetEnv { target, .. } => Err(ClusterError::Unsupported(format!(
                "set_env on a {}",
                target.kind
            ))),
            Action::SetProbe {
                target, container, ..
            }
            | Action::SetRequests {
                target, container, ..
            } if target.kind == WorkloadKind::Pod => {
                let spec = self.container(target, container).await?;
                let (field, value) = field_value(action, &spec);
                let edit = ContainerEdit::Field {
                    field,
                    value: &value,
                };
                self.recreate(target, container, edit, incident_id).await
            }
            Action::SetProbe { target, .. } | Action::SetRequests { target, .. }
                if target.kind == WorkloadKind::Deployment =>
            {
                let (index, container, field, old, new) = self.field_edit(action).await?;
                self.patch_field(target, index, &container, field, &new, false)
                    .await?;
                Ok(Snapshot::Field {
                    target: target.clone(),
                    container,
                    field: field.to_string(),
                    old,
                    new,
                })
            }
            Action::SetProbe { target, .. } | Action::SetRequests { target, .. } => Err(
                ClusterError::Unsupported(format!("{} on a {}", action.name(), target.kind)),
            ),
            Action::RolloutUndo {
                target,
                to_revision,
            } => {
                let d = self
                    .deployment(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
                let old = serde_json::to_value(d)?["spec"]["template"].clone();
                let (_, template) = self.revision_template(target, *to_revision).await?;
                self.replace_template(target, &template, false).await?;
                Ok(Snapshot::Template {
                    target: target.clone(),
                    old,
                    new: template,
                })
            }
            Action::Escalate { .. } => {
                Err(ClusterError::Unsupported("executing an escalation".into()))
            }
        }
    }

    /// Undo an executed action, unless someone else changed the object since (then leave it alone and say so).
    pub async fn revert(&self, snapshot: &Snapshot) -> Result<String, ClusterError> {
        match snapshot {
            Snapshot::Image {
                target,
                container,
                old_image,
                new_image,
            } => {
                let now = self.current_image(target, container).await?;
                if now != *new_image {
                    return Ok(format!(
                        "not reverted: {target} now runs {now}, changed by someone else"
                    ));
                }
                self.patch_image(target, container, old_image, false)
                    .await?;
                Ok(format!(
                    "reverted {target} container {container} to {old_image}"
                ))
            }
            Snapshot::Resources {
                target,
                container,
                old,
                new_limit,
            } => {
                let (index, spec) = self.container_spec(target, container).await?;
                let now = spec["resources"]["limits"]["memory"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if now != *new_limit {
                    return Ok(format!(
                        "not reverted: {target} container {container} now has memory limit {now:?}, changed by someone else"
                    ));
                }
                // Restore the container's resources exactly, guarded by a test that it is still the same container.
                let restore = if old.is_null() {
                    json!({})
                } else {
                    old.clone()
                };
                self.patch_field(target, index, container, "resources", &restore, false)
                    .await?;
                Ok(format!(
                    "reverted {target} container {container} resources to {old}"
                ))
            }
            Snapshot::Env {
                target,
                container,
                old,
                name,
            } => {
                let (index, spec) = self.container_spec(target, container).await?;
                if !spec["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|e| e["name"] == name.as_str())
                {
                    return Ok(format!(
                        "not reverted: {target} container {container} no longer has {name}, changed by someone else"
                    ));
                }
                // A null `old` removes the env list the change created.
                self.patch_field(target, index, container, "env", old, false)
                    .await?;
                Ok(format!(
                    "reverted {target} container {container} env (removed {name})"
                ))
            }
            Snapshot::Field {
                target,
                container,
                field,
                old,
                new,
            } => {
                let (index, spec) = self.container_spec(target, container).await?;
                if spec[field.as_str()] != *new {
                    return Ok(format!(
                        "not reverted: {target} container {container} {field} was changed by someone else"
                    ));
                }
                self.patch_field(target, index, container, field, old, false)
                    .await?;
                Ok(format!(
                    "reverted {target} container {container} {field} to {old}"
                ))
            }
            Snapshot::Template { target, old, new } => {
                let d = self
                    .deployment(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
                let now = serde_json::to_value(d)?["spec"]["template"].clone();
                if now != *new {
                    return Ok(format!(
                        "not reverted: {target}'s pod template was changed by someone else"
                    ));
                }
                self.replace_template(target, old, false).await?;
                Ok(format!(
                    "restored {target}'s pod template from before the rollback"
                ))
            }
            Snapshot::RecreatedPod {
                namespace,
                original,
                new_uid,
            } => {
                let name = original["metadata"]["name"].as_str().unwrap_or_default();
                let api = self.dynamic_pods(namespace);
                let Some(current) = api.get_opt(name).await? else {
                    return Ok(format!("not reverted: pod {name} no longer exists"));
                };
                if current.metadata.uid.as_deref() != Some(new_uid) {
                    return Ok(format!(
                        "not reverted: pod {name} was replaced by someone else"
                    ));
                }
                let restored = fresh_pod(original, None, None)?;
                self.replace_pod(namespace, &serde_json::to_value(&current)?, restored)
                    .await?;
                Ok(format!("recreated pod {name} with its original spec"))
            }
        }
    }

    async fn patch_env(
        &self,
        target: &WorkloadRef,
        container: &str,
        name: &str,
        from: &EnvSource,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "env": [{"name": name, "valueFrom": value_from(from)}]}]}}}});
        self.patch_deployment(target, Patch::Strategic(patch), dry_run)
            .await?;
        Ok(())
    }

    /// The container of a workload (Deployment template or bare pod), as JSON.
    pub async fn container(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<Value, ClusterError> {
        match target.kind {
            WorkloadKind::Deployment => Ok(self.container_spec(target, container).await?.1),
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

    /// The ReplicaSets of a Deployment as (revision, name, available replicas, pod template without the
    /// controller's `pod-template-hash` label), newest first.
    pub async fn revisions(
        &self,
        target: &WorkloadRef,
    ) -> Result<Vec<(i64, String, i32, Value)>, ClusterError> {
        let d = self
            .deployment(&target.namespace, &target.name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &target.namespace);
        let mut out = Vec::new();
        for rs in api.list(&ListParams::default()).await?.items {
            if controller(rs.owner_references()).is_none_or(|o| o.uid != uid) {
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
            out.push((revision, rs.name_any(), available, template));
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.0));
        Ok(out)
    }

    /// (revision, template) to roll back to: the given revision, or the one before the newest.
    async fn revision_template(
        &self,
        target: &WorkloadRef,
        to_revision: Option<i64>,
    ) -> Result<(i64, Value), ClusterError> {
        let revs = self.revisions(target).await?;
        let pick = match to_revision {
            Some(r) => revs.into_iter().find(|x| x.0 == r),
            None => revs.into_iter().nth(1),
        };
        pick.map(|(r, _, _, t)| (r, t))
            .ok_or_else(|| ClusterError::NotFound(format!("revision {to_revision:?} of {target}")))
    }

    /// Replace a Deployment's pod template, as `kubectl rollout undo` does (a JSON patch of /spec/template).
    async fn replace_template(
        &self,
        target: &WorkloadRef,
        template: &Value,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let patch: json_patch::Patch = serde_json::from_value(
            json!([{"op": "replace", "path": "/spec/template", "value": template}]),
        )?;
        self.patch_deployment(target, Patch::Json(patch), dry_run)
            .await?;
        Ok(())
    }

    /// (index, container spec as JSON) of a container in a Deployment's template.
    async fn container_spec(
        &self,
        target: &WorkloadRef,
        container: &str,
    ) -> Result<(usize, Value), ClusterError> {
        let d = self
            .deployment(&target.namespace, &target.name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
        let d = serde_json::to_value(d)?;
        d["spec"]["template"]["spec"]["containers"]
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

    /// Patch a Deployment as kube-reflexion's field manager (a server-side dry run when `dry_run`).
    async fn patch_deployment(
        &self,
        target: &WorkloadRef,
        patch: Patch<Value>,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        Api::<Deployment>::namespaced(self.client.clone(), &target.namespace)
            .patch(&target.name, &patch_params(dry_run), &patch)
            .await?;
        Ok(())
    }

    /// For a field-level action on a Deployment: the container's index and name, the field, and its value
    /// before and after.
    async fn field_edit(
        &self,
        action: &Action,
    ) -> Result<(usize, String, &'static str, Value, Value), ClusterError> {
        let (Action::SetProbe {
            target, container, ..
        }
        | Action::SetRequests {
            target, container, ..
        }) = action
        else {
            return Err(ClusterError::Unsupported(action.name().into()));
        };
        let (index, spec) = self.container_spec(target, container).await?;
        let (field, new) = field_value(action, &spec);
        Ok((index, container.clone(), field, spec[field].clone(), new))
    }

    /// Set one field of one container of a Deployment's template, guarded by a test that the index still holds
    /// that container. A null value removes the field.
    async fn patch_field(
        &self,
        target: &WorkloadRef,
        index: usize,
        container: &str,
        field: &str,
        value: &Value,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let base = format!("/spec/template/spec/containers/{index}");
        let set = if value.is_null() {
            json!({"op": "remove", "path": format!("{base}/{field}")})
        } else {
            json!({"op": "add", "path": format!("{base}/{field}"), "value": value})
        };
        let ops = json!([{"op": "test", "path": format!("{base}/name"), "value": container}, set]);
        let patch: json_patch::Patch = serde_json::from_value(ops)?;
        self.patch_deployment(target, Patch::Json(patch), dry_run)
            .await?;
        Ok(())
    }

    async fn patch_memory(
        &self,
        target: &WorkloadRef,
        container: &str,
        limit: &str,
        request: Option<&str>,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let mut resources = json!({"limits": {"memory": limit}});
        if let Some(r) = request {
            resources["requests"] = json!({"memory": r});
        }
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "resources": resources}]}}}});
        self.patch_deployment(target, Patch::Strategic(patch), dry_run)
            .await?;
        Ok(())
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

    /// Recreate a bare pod with one container edited; the snapshot holds the original to restore.
    async fn recreate(
        &self,
        target: &WorkloadRef,
        container: &str,
        edit: ContainerEdit<'_>,
        incident_id: &str,
    ) -> Result<Snapshot, ClusterError> {
        let original = serde_json::to_value(
            self.dynamic_pods(&target.namespace)
                .get(&target.name)
                .await?,
        )?;
        let fresh = fresh_pod(&original, Some((container, edit)), Some(incident_id))?;
        let new_uid = self
            .replace_pod(&target.namespace, &original, fresh)
            .await?;
        Ok(Snapshot::RecreatedPod {
            namespace: target.namespace.clone(),
            original,
            new_uid,
        })
    }

    /// A pod's spec cannot change in place, so for a recreation the API server validates the removal now and the
    /// new pod when it is created.
    async fn dry_run_delete(&self, target: &WorkloadRef) -> Result<(), ClusterError> {
        let dp = DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        };
        Api::<Pod>::namespaced(self.client.clone(), &target.namespace)
            .delete(&target.name, &dp)
            .await?;
        Ok(())
    }

    fn dynamic_pods(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &ApiResource::erase::<Pod>(&()))
    }

    /// Delete `old` (only that exact pod, by uid) and create `fresh` in its place. If the create fails, the old
    /// pod is put back so nothing is lost.
    async fn replace_pod(
        &self,
        ns: &str,
        old: &Value,
        fresh: Value,
    ) -> Result<String, ClusterError> {
        let api = self.dynamic_pods(ns);
        let name = old["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let uid = old["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // A real API server only marks the pod; its kubelet stops the containers within the grace period and then
        // removes it. Wait as long as that may take, plus a margin.
        let grace = api
            .delete(&name, &dp)
            .await?
            .left()
            .map_or(Some(0), |marked| {
                marked.metadata.deletion_grace_period_seconds
            })
            .or(old["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30)
            .max(0) as u64;
        let wait = Duration::from_secs(grace) + DELETE_MARGIN;
        tokio::time::timeout(
            wait,
            await_condition(api.clone(), &name, conditions::is_deleted(&uid)),
        )
        .await
        .map_err(|_| {
            ClusterError::Timeout(format!(
                "pod {name} to go: still there {}s after the delete (its grace period is {grace}s); its node may be gone",
                wait.as_secs()
            ))
        })?
        .map_err(|e| ClusterError::Timeout(format!("pod {name} to be deleted: {e}")))?;
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let obj: DynamicObject = serde_json::from_value(fresh)?;
        match api.create(&pp, &obj).await {
            Ok(created) => Ok(created.metadata.uid.unwrap_or_default()),
            Err(e) => {
                let back: DynamicObject = serde_json::from_value(fresh_pod(old, None, None)?)?;
                if let Err(restore) = api.create(&pp, &back).await {
                    tracing::error!(pod = %name, error = %restore, "could not restore the original pod after a failed recreate");
                }
                Err(e.into())
            }
        }
    }

    /// Best effort: an Event on the workload, so `kubectl describe` shows what kube-reflexion did.
    pub async fn record_event(
        &self,
        target: &WorkloadRef,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let (api_version, uid) = match target.kind {
            WorkloadKind::Deployment => (
                "apps/v1",
                self.deployment(&target.namespace, &target.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|d| d.metadata.uid),
            ),
            _ => (
                "v1",
                self.pod(&target.namespace, &target.name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|p| p.metadata.uid),
            ),
        };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", target.name)),
                namespace: Some(target.namespace.clone()),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(api_version.into()),
                kind: Some(target.kind.to_string()),
                name: Some(target.name.clone()),
                namespace: Some(target.namespace.clone()),
                uid,
                ..Default::default()
            },
            reason: Some(reason.into()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(type_.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            reporting_component: Some(FIELD_MANAGER.into()),
            reporting_instance: Some(FIELD_MANAGER.into()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(FIELD_MANAGER.into()),
                host: None,
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &target.namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(error = %e, workload = %target, "could not record an Event");
        }
    }
}

fn value_from(from: &EnvSource) -> Value {
    match from {
        EnvSource::ConfigMapKey { name, key } => {
            json!({"configMapKeyRef": {"name": name, "key": key}})
        }
        EnvSource::SecretKey { name, key } => json!({"secretKeyRef": {"name": name, "key": key}}),
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

fn controller(refs: &[OwnerReference]) -> Option<OwnerReference> {
    refs.iter().find(|r| r.controller == Some(true)).cloned()
}

/// The one change a recreated pod may carry.
#[derive(Debug, Clone, Copy)]
pub enum ContainerEdit<'a> {
    Image(&'a str),
    Env {
        name: &'a str,
        value_from: &'a Value,
    },
    Memory {
        limit: &'a str,
        request: Option<&'a str>,
    },
    /// Replace one whole field of the container (a probe, the resources).
    Field {
        field: &'a str,
        value: &'a Value,
    },
}

impl ContainerEdit<'_> {
    fn apply(&self, c: &mut Value) {
        match self {
            Self::Image(image) => c["image"] = json!(image),
            Self::Env { name, value_from } => {
                if !c["env"].is_array() {
                    c["env"] = json!([]);
                }
                if let Some(env) = c["env"].as_array_mut() {
                    env.retain(|e| e["name"] != *name);
                    env.push(json!({"name": name, "valueFrom": value_from}));
                }
            }
            Self::Memory { limit, request } => {
                if !c["resources"].is_object() {
                    c["resources"] = json!({});
                }
                c["resources"]["limits"]["memory"] = json!(limit);
                if let Some(r) = request {
                    c["resources"]["requests"]["memory"] = json!(r);
                }
            }
            Self::Field { field, value } => c[*field] = (*value).clone(),
        }
    }
}

/// The field a probe or requests action sets on a container, and its new value computed from the container's
/// current spec: the probe keeps its timings and gets the new handler; the resources keep their limits.
pub fn field_value(action: &Action, container: &Value) -> (&'static str, Value) {
    match action {
        Action::SetProbe { probe, handler, .. } => {
            let field = probe.field();
            let mut p = container[field].clone();
            if !p.is_object() {
                p = json!({});
            }
            if let (Some(obj), Value::Object(h)) = (p.as_object_mut(), handler.to_api()) {
                for (k, v) in h {
                    if v.is_null() {
                        obj.remove(&k);
                    } else {
                        obj.insert(k, v);
                    }
                }
            }
            (field, p)
        }
        Action::SetRequests { memory, cpu, .. } => {
            let mut r = container["resources"].clone();
            if !r.is_object() {
                r = json!({});
            }
            if !r["requests"].is_object() {
                r["requests"] = json!({});
            }
            if let Some(m) = memory {
                r["requests"]["memory"] = json!(m);
            }
            if let Some(c) = cpu {
                r["requests"]["cpu"] = json!(c);
            }
            ("resources", r)
        }
        _ => ("", Value::Null),
    }
}

/// A pod object to create in place of `original`: the whole spec and user metadata preserved, server-populated
/// fields and status removed, and optionally one container edited.
pub fn fresh_pod(
    original: &Value,
    edit: Option<(&str, ContainerEdit<'_>)>,
    incident: Option<&str>,
) -> Result<Value, ClusterError> {
    let mut pod = original.clone();
    let meta = pod["metadata"]
        .as_object_mut()
        .ok_or_else(|| ClusterError::NotFound("pod metadata".into()))?;
    for server_field in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "generation",
        "selfLink",
    ] {
        meta.remove(server_field);
    }
    if let Some(id) = incident {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        annotations[INCIDENT_ANNOTATION] = json!(id);
    }
    if let Some(obj) = pod.as_object_mut() {
        obj.remove("status");
    }
    if let Some((container, edit)) = edit {
        let mut found = false;
        for list in ["containers", "initContainers"] {
            // get_mut, not indexing: IndexMut would insert a null `initContainers` into the new pod.
            let containers = pod
                .get_mut("spec")
                .and_then(|s| s.get_mut(list))
                .and_then(Value::as_array_mut);
            for c in containers.into_iter().flatten() {
                if c["name"] == container {
                    edit.apply(c);
                    found = true;
                }
            }
        }
        if !found {
            let name = original["metadata"]["name"].as_str().unwrap_or_default();
            return Err(ClusterError::NoContainer {
                workload: format!("pod/{name}"),
                container: container.into(),
            });
        }
    }
    Ok(pod)
}

/// Patches are made as kube-reflexion's field manager; `dry_run` makes it a server-side dry run.
fn patch_params(dry_run: bool) -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        dry_run,
        ..PatchParams::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_pod_preserves_everything_but_the_fix() {
        let original = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "test-nginx", "namespace": "default", "uid": "u1", "resourceVersion": "42",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"run": "test-nginx"},
                         "annotations": {"team": "web"}, "managedFields": [{}]},
            "spec": {"containers": [{"name": "test-nginx", "image": "nginx:bu-tag-yok", "env": [{"name": "A", "value": "1"}],
                                     "resources": {"limits": {"memory": "64Mi"}}}],
                     "nodeSelector": {"disk": "ssd"}, "restartPolicy": "Always", "someFutureField": {"x": 1}},
            "status": {"phase": "Pending"}
        });
        let fresh = fresh_pod(
            &original,
            Some(("test-nginx", ContainerEdit::Image("nginx:1.27.3"))),
            Some("inc-1"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut expected_spec = original["spec"].clone();
        expected_spec["containers"][0]["image"] = json!("nginx:1.27.3");
        assert_eq!(fresh["spec"], expected_spec);
        assert_eq!(fresh["metadata"]["labels"], original["metadata"]["labels"]);
        assert_eq!(
            fresh["metadata"]["annotations"],
            json!({"team": "web", INCIDENT_ANNOTATION: "inc-1"})
        );
        for gone in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            assert!(fresh["metadata"].get(gone).is_none(), "{gone}");
        }
        assert!(fresh.get("status").is_none());
        assert!(matches!(
            fresh_pod(&original, Some(("nope", ContainerEdit::Image("x"))), None),
            Err(ClusterError::NoContainer { .. })
        ));
    }
}
