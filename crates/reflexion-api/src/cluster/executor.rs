//! What the engine writes: each typed action as a minimal patch at the owner (a server-side dry run first), and the
//! Event that tells `kubectl describe` what was done. What a change replaced and its undoing are in `revert`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PostParams};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::{Action, EnvSource};

use super::recreate::{ContainerEdit, PodEdit};
use super::revert::Snapshot;
use super::{Cluster, ClusterError, FIELD_MANAGER, patch_params};
use serde_json::{Value, json};

/// What a dry run says when the API server accepted it.
fn accepted(target: &WorkloadRef) -> Value {
    json!({"dry_run": "patch accepted", "target": target.to_string()})
}

impl Cluster {
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
            Action::SetNodeSelector {
                target,
                remove,
                set,
            } if target.kind == WorkloadKind::Deployment => {
                self.set_node_selector(target, remove, set, true).await?;
                Ok(accepted(target))
            }
            Action::DropCommand { target, container }
                if target.kind == WorkloadKind::Deployment =>
            {
                self.drop_command(target, container, true).await?;
                Ok(accepted(target))
            }
            Action::SetNodeSelector { target, .. } | Action::DropCommand { target, .. }
                if target.kind == WorkloadKind::Pod =>
            {
                self.dry_run_delete(target).await?;
                Ok(
                    json!({"dry_run": "delete accepted; the recreated pod is validated on create", "target": target.to_string()}),
                )
            }
            Action::SetNodeSelector { target, .. } | Action::DropCommand { target, .. } => Err(
                ClusterError::Unsupported(format!("{} on a {}", action.name(), target.kind)),
            ),
            Action::RecreateClaim {
                target,
                claim,
                storage_class,
            } => {
                self.recreate_claim(target, claim, storage_class, true)
                    .await?;
                Ok(
                    json!({"dry_run": "delete of the unbound claim accepted; the new claim is validated on create", "target": target.to_string()}),
                )
            }
            Action::Escalate { .. } => Ok(json!({"dry_run": "nothing to change"})),
        }
    }
    pub(super) async fn patch_image(
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
                self.recreate(target, PodEdit::Container(container, edit), incident_id)
                    .await
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
                self.recreate(target, PodEdit::Container(container, edit), incident_id)
                    .await
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
                self.recreate(target, PodEdit::Container(container, edit), incident_id)
                    .await
            }
            Action::SetProbe { target, .. } | Action::SetRequests { target, .. }
                if target.kind == WorkloadKind::Deployment =>
            {
                let (index, container, field, old, new) = self.field_edit(action).await?;
                // The API server defaults what the action left out (an httpGet's scheme): the stored value is the
                // one a revert must find unchanged.
                let new = self
                    .patch_field(target, index, &container, field, &new, false)
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
            Action::SetNodeSelector {
                target,
                remove,
                set,
            } if target.kind == WorkloadKind::Deployment => {
                self.set_node_selector(target, remove, set, false).await
            }
            Action::SetNodeSelector {
                target,
                remove,
                set,
            } if target.kind == WorkloadKind::Pod => {
                let pod = self
                    .pod(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
                let mut selector = serde_json::to_value(pod)?["spec"]["nodeSelector"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                for k in remove {
                    selector.remove(k);
                }
                for (k, v) in set {
                    selector.insert(k.clone(), json!(v));
                }
                let value = Value::Object(selector);
                let edit = PodEdit::Spec {
                    field: "nodeSelector",
                    value: &value,
                };
                self.recreate(target, edit, incident_id).await
            }
            Action::DropCommand { target, container }
                if target.kind == WorkloadKind::Deployment =>
            {
                self.drop_command(target, container, false).await
            }
            Action::DropCommand { target, container } if target.kind == WorkloadKind::Pod => {
                let edit = PodEdit::Container(container, ContainerEdit::DropCommand);
                self.recreate(target, edit, incident_id).await
            }
            Action::SetNodeSelector { target, .. } | Action::DropCommand { target, .. } => Err(
                ClusterError::Unsupported(format!("{} on a {}", action.name(), target.kind)),
            ),
            Action::RecreateClaim {
                target,
                claim,
                storage_class,
            } => {
                self.recreate_claim(target, claim, storage_class, false)
                    .await
            }
            Action::Escalate { .. } => {
                Err(ClusterError::Unsupported("executing an escalation".into()))
            }
        }
    }
    pub(super) async fn patch_env(
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
    /// (revision, template) to roll back to: the given revision, or the one before the newest.
    pub(super) async fn revision_template(
        &self,
        target: &WorkloadRef,
        to_revision: Option<i64>,
    ) -> Result<(i64, Value), ClusterError> {
        let revs = self.revisions(target).await?;
        let pick = match to_revision {
            Some(r) => revs.into_iter().find(|x| x.number == r),
            None => revs.into_iter().nth(1),
        };
        pick.map(|r| (r.number, r.template))
            .ok_or_else(|| ClusterError::NotFound(format!("revision {to_revision:?} of {target}")))
    }
    /// Replace a Deployment's pod template, as `kubectl rollout undo` does (a JSON patch of /spec/template).
    pub(super) async fn replace_template(
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
    /// Patch a Deployment as kube-reflexion's field manager (a server-side dry run when `dry_run`).
    pub(super) async fn patch_deployment(
        &self,
        target: &WorkloadRef,
        patch: Patch<Value>,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let d = Api::<Deployment>::namespaced(self.client.clone(), &target.namespace)
            .patch(&target.name, &patch_params(dry_run), &patch)
            .await?;
        // The pod spec as stored, defaults included: what a revert later compares against.
        Ok(serde_json::to_value(d)?["spec"]["template"]["spec"].take())
    }
    /// For a field-level action on a Deployment: the container's index and name, the field, and its value
    /// before and after.
    pub(super) async fn field_edit(
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
    pub(super) async fn patch_field(
        &self,
        target: &WorkloadRef,
        index: usize,
        container: &str,
        field: &str,
        value: &Value,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let base = format!("/spec/template/spec/containers/{index}");
        let set = if value.is_null() {
            json!({"op": "remove", "path": format!("{base}/{field}")})
        } else {
            json!({"op": "add", "path": format!("{base}/{field}"), "value": value})
        };
        let ops = json!([{"op": "test", "path": format!("{base}/name"), "value": container}, set]);
        let patch: json_patch::Patch = serde_json::from_value(ops)?;
        let mut spec = self
            .patch_deployment(target, Patch::Json(patch), dry_run)
            .await?;
        Ok(spec["containers"][index][field].take())
    }
    pub(super) async fn patch_memory(
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
