//! Each typed action compiled once, against the objects as they are now, into the one write it makes and what that
//! write replaces. The server-side dry run and the execution apply the same compiled change, so they cannot drift.

use super::readback::{Patched, uncertain};
use super::recreate::{ContainerEdit, Journal, PodEdit, Recreated, fresh_job, fresh_pod};
use super::revert::Snapshot;
use super::template::{json_patch, set_ops};
use super::workload::{in_template, spec_path};
use super::{Cluster, ClusterError, patch_params};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::Patch;
use reflexion_core::action::edited_selector;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::{Action, EnvSource};
use serde_json::{Value, json};

/// An action compiled against the cluster: the write, and what it replaces.
// One per trial, moved once from compile to apply: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// An escalation writes nothing.
    Nothing,
    Write {
        target: WorkloadRef,
        write: Write,
    },
}

pub enum Write {
    /// A patch of a workload's pod template (a Deployment's, a CronJob's). `stored` says which part of the stored
    /// pod spec the snapshot keeps as "new": the API server defaults what a patch leaves out, and a revert must find
    /// the stored value unchanged.
    Template {
        patch: Patch<Value>,
        snapshot: Snapshot,
        stored: Stored,
    },
    /// A bare pod's image, the one container field the API changes in place.
    PodImage {
        patch: Patch<Value>,
        snapshot: Snapshot,
    },
    /// A Service's selector.
    Service {
        patch: Patch<Value>,
        snapshot: Snapshot,
    },
    /// A Role's rules, in the target's namespace.
    Role {
        name: String,
        patch: Patch<Value>,
        snapshot: Snapshot,
    },
    /// A bare pod whose spec cannot change in place (deleted, and created again with its whole spec but the fix),
    /// or an unbound claim created again with another StorageClass: journaled before the delete.
    Recreate(Journal),
}

impl Change {
    /// What a recreation stores before its delete, to be finished by any process.
    pub fn journal(&self) -> Option<&Journal> {
        match self {
            Change::Write {
                write: Write::Recreate(j),
                ..
            } => Some(j),
            _ => None,
        }
    }
}

/// The part of the stored pod spec a snapshot records as what the change left.
pub enum Stored {
    /// The snapshot is complete already.
    Nothing,
    /// `containers[index][field]`.
    ContainerField(usize, &'static str),
    /// `containers[index]`.
    Container(usize),
    /// A pod-spec field.
    SpecField(&'static str),
}

fn strategic_containers(kind: WorkloadKind, container: &str, fields: Value) -> Patch<Value> {
    let mut c = json!({"name": container});
    if let (Some(c), Value::Object(f)) = (c.as_object_mut(), fields) {
        c.extend(f);
    }
    Patch::Strategic(in_template(kind, json!({"containers": [c]})))
}

/// A container's `env` entry that takes a variable from a ConfigMap or Secret key.
pub fn value_from(from: &EnvSource) -> Value {
    from.to_api()
}

impl Cluster {
    /// Compile an action against the objects as they are now.
    pub async fn compile(
        &self,
        action: &Action,
        incident_id: &str,
    ) -> Result<Change, ClusterError> {
        let Some(target) = action.target().cloned() else {
            return Ok(Change::Nothing);
        };
        let unsupported =
            || ClusterError::Unsupported(format!("{} on a {}", action.name(), target.kind));
        let write = match (target.kind, action) {
            (_, Action::Escalate { .. }) => return Ok(Change::Nothing),
            // The claim, whatever mounts it.
            (
                _,
                Action::RecreateClaim {
                    claim,
                    storage_class,
                    ..
                },
            ) => Write::Recreate(self.claim_journal(&target, claim, storage_class).await?),
            // The Role, whichever workload's pods were refused.
            (
                _,
                Action::GrantRoleRule {
                    role,
                    verb,
                    api_group,
                    resource,
                    ..
                },
            ) => {
                let rule = reflexion_core::rbac::rule(verb, api_group, resource);
                self.compile_role_rule(&target.namespace, role, rule)
                    .await?
            }
            (WorkloadKind::Service, Action::SetServiceSelector { remove, set, .. }) => {
                self.compile_service_selector(&target, remove, set).await?
            }
            (
                WorkloadKind::Service,
                Action::SetServiceTargetPort {
                    port, target_port, ..
                },
            ) => {
                self.compile_service_target_port(&target, *port, target_port)
                    .await?
            }
            (WorkloadKind::CronJob, Action::RolloutUndo { .. }) => return Err(unsupported()),
            (WorkloadKind::Deployment | WorkloadKind::CronJob, _) => {
                self.compile_template(action, &target).await?
            }
            (
                WorkloadKind::Pod,
                Action::SetImage {
                    container, image, ..
                },
            ) => Write::PodImage {
                patch: Patch::Strategic(
                    json!({"spec": {"containers": [{"name": container, "image": image}]}}),
                ),
                snapshot: Snapshot::Image {
                    target: target.clone(),
                    container: container.clone(),
                    old_image: self.current_image(&target, container).await?,
                    new_image: image.clone(),
                },
            },
            (WorkloadKind::Pod, Action::RolloutUndo { .. }) => return Err(unsupported()),
            (WorkloadKind::Pod | WorkloadKind::Job, _) => {
                self.compile_recreation(action, &target, incident_id)
                    .await?
            }
            _ => return Err(unsupported()),
        };
        Ok(Change::Write { target, write })
    }

    async fn compile_template(
        &self,
        action: &Action,
        target: &WorkloadRef,
    ) -> Result<Write, ClusterError> {
        let t = target.clone();
        let (patch, snapshot, stored) = match action {
            Action::SetImage {
                container, image, ..
            } => (
                strategic_containers(target.kind, container, json!({"image": image})),
                Snapshot::Image {
                    target: t,
                    container: container.clone(),
                    old_image: self.current_image(target, container).await?,
                    new_image: image.clone(),
                },
                Stored::Nothing,
            ),
            Action::SetResources {
                container,
                memory_limit,
                memory_request,
                ..
            } => {
                let mut resources = json!({"limits": {"memory": memory_limit}});
                if let Some(r) = memory_request {
                    resources["requests"] = json!({"memory": r});
                }
                let old = self.container_spec(target, container).await?.1["resources"].clone();
                (
                    strategic_containers(target.kind, container, json!({"resources": resources})),
                    Snapshot::Resources {
                        target: t,
                        container: container.clone(),
                        old,
                        new_limit: memory_limit.clone(),
                    },
                    Stored::Nothing,
                )
            }
            Action::SetEnv {
                container,
                name,
                from,
                ..
            } => {
                let old = self.container_spec(target, container).await?.1["env"].clone();
                (
                    strategic_containers(
                        target.kind,
                        container,
                        json!({"env": [{"name": name, "valueFrom": value_from(from)}]}),
                    ),
                    Snapshot::Env {
                        target: t,
                        container: container.clone(),
                        old,
                        name: name.clone(),
                    },
                    Stored::Nothing,
                )
            }
            Action::SetProbe { container, .. } | Action::SetRequests { container, .. } => {
                let (index, spec) = self.container_spec(target, container).await?;
                let (field, new) = field_value(action, &spec);
                let base = format!("{}/containers/{index}", spec_path(target)?);
                let set = if new.is_null() {
                    json!({"op": "remove", "path": format!("{base}/{field}")})
                } else {
                    json!({"op": "add", "path": format!("{base}/{field}"), "value": new})
                };
                // Guarded by a test that the index still holds that container.
                let ops = json!([{"op": "test", "path": format!("{base}/name"), "value": container}, set]);
                (
                    json_patch(ops)?,
                    Snapshot::Field {
                        target: t,
                        container: container.clone(),
                        field: field.to_string(),
                        old: spec[field].clone(),
                        new,
                    },
                    Stored::ContainerField(index, field),
                )
            }
            Action::RolloutUndo { to_revision, .. } => {
                let d = self
                    .deployment(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
                let old = serde_json::to_value(d)?["spec"]["template"].clone();
                let (_, template) = self.revision_template(target, *to_revision).await?;
                // As `kubectl rollout undo` does: the whole template replaced.
                let ops = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
                (
                    json_patch(ops)?,
                    Snapshot::Template {
                        target: t,
                        old,
                        new: template,
                    },
                    Stored::Nothing,
                )
            }
            Action::SetNodeSelector { remove, set, .. } => {
                let old = self.template_spec(target).await?["nodeSelector"].clone();
                let selector = edited_selector(&old, remove, set);
                let new = if selector.is_empty() {
                    Value::Null
                } else {
                    Value::Object(selector)
                };
                let path = format!("{}/nodeSelector", spec_path(target)?);
                (
                    json_patch(set_ops(&path, &old, &new))?,
                    Snapshot::PodSpec {
                        target: t,
                        field: "nodeSelector".into(),
                        old,
                        new,
                    },
                    Stored::SpecField("nodeSelector"),
                )
            }
            Action::DropCommand { container, .. } => {
                // `command` and `args` together, so the image's ENTRYPOINT and CMD run.
                let (index, old) = self.container_spec(target, container).await?;
                let mut new = old.clone();
                if let Some(c) = new.as_object_mut() {
                    c.remove("command");
                    c.remove("args");
                }
                let path = format!("{}/containers/{index}", spec_path(target)?);
                (
                    json_patch(set_ops(&path, &old, &new))?,
                    Snapshot::Container {
                        target: t,
                        container: container.clone(),
                        old,
                        new,
                    },
                    Stored::Container(index),
                )
            }
            Action::RecreateClaim { .. }
            | Action::SetServiceSelector { .. }
            | Action::SetServiceTargetPort { .. }
            | Action::GrantRoleRule { .. }
            | Action::Escalate { .. } => {
                return Err(ClusterError::Unsupported(format!(
                    "{} as a Deployment patch",
                    action.name()
                )));
            }
        };
        Ok(Write::Template {
            patch,
            snapshot,
            stored,
        })
    }

    /// A bare pod's change the API refuses in place, or a bare Job's (its template is immutable): the whole object
    /// as it will be created again.
    async fn compile_recreation(
        &self,
        action: &Action,
        target: &WorkloadRef,
        incident_id: &str,
    ) -> Result<Write, ClusterError> {
        let kind = match target.kind {
            WorkloadKind::Job => Recreated::Job,
            _ => Recreated::Pod,
        };
        let original = serde_json::to_value(
            self.dynamic(kind, &target.namespace)
                .get(&target.name)
                .await?,
        )?;
        let spec = match kind {
            Recreated::Job => &original["spec"]["template"]["spec"],
            _ => &original["spec"],
        };
        let container_of = |name: &str| {
            spec["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["name"] == name)
                .cloned()
                .ok_or_else(|| ClusterError::NoContainer {
                    workload: target.to_string(),
                    container: name.into(),
                })
        };
        let fresh = |edit: PodEdit<'_>| match kind {
            Recreated::Job => fresh_job(&original, Some(edit), Some(incident_id)),
            _ => fresh_pod(&original, Some(edit), Some(incident_id)),
        };
        let fresh = match action {
            // A Job's image too: only a pod's image changes in place.
            Action::SetImage {
                container, image, ..
            } => fresh(PodEdit::Container(container, ContainerEdit::Image(image)))?,
            Action::SetResources {
                container,
                memory_limit,
                memory_request,
                ..
            } => {
                let edit = ContainerEdit::Memory {
                    limit: memory_limit,
                    request: memory_request.as_deref(),
                };
                fresh(PodEdit::Container(container, edit))?
            }
            Action::SetEnv {
                container,
                name,
                from,
                ..
            } => {
                let value_from = value_from(from);
                let edit = ContainerEdit::Env {
                    name,
                    value_from: &value_from,
                };
                fresh(PodEdit::Container(container, edit))?
            }
            Action::SetProbe { container, .. } | Action::SetRequests { container, .. } => {
                let (field, value) = field_value(action, &container_of(container)?);
                let edit = ContainerEdit::Field {
                    field,
                    value: &value,
                };
                fresh(PodEdit::Container(container, edit))?
            }
            Action::SetNodeSelector { remove, set, .. } => {
                let value = Value::Object(edited_selector(&spec["nodeSelector"], remove, set));
                fresh(PodEdit::Spec {
                    field: "nodeSelector",
                    value: &value,
                })?
            }
            Action::DropCommand { container, .. } => {
                fresh(PodEdit::Container(container, ContainerEdit::DropCommand))?
            }
            _ => {
                return Err(ClusterError::Unsupported(format!(
                    "{} on a {}",
                    action.name(),
                    target.kind
                )));
            }
        };
        Ok(Write::Recreate(Journal {
            kind,
            namespace: target.namespace.clone(),
            original,
            fresh,
        }))
    }

    /// A server-side dry run of the compiled change: the API server validates and admits it without persisting.
    pub async fn dry_run(&self, change: &Change) -> Result<Value, ClusterError> {
        let Change::Write { target, write } = change else {
            return Ok(json!({"dry_run": "nothing to change"}));
        };
        let said = match write {
            Write::Template { patch, .. } => {
                self.patch_workload(target, patch.clone(), true).await?;
                "patch accepted"
            }
            Write::PodImage { patch, .. } => {
                Api::<Pod>::namespaced(self.client.clone(), &target.namespace)
                    .patch(&target.name, &patch_params(true), patch)
                    .await?;
                "patch accepted"
            }
            Write::Service { patch, .. } => {
                self.patch_service(target, patch, true).await?;
                "patch accepted"
            }
            Write::Role { name, patch, .. } => {
                self.patch_role(&target.namespace, name, patch, true)
                    .await?;
                "patch of the Role accepted"
            }
            // The object cannot be created while it exists: the removal is validated now, the new one on create.
            Write::Recreate(j) => {
                self.dry_run_delete(j).await?;
                match j.kind {
                    Recreated::Pod => "delete accepted; the recreated pod is validated on create",
                    Recreated::Claim => {
                        "delete of the unbound claim accepted; the new claim is validated on create"
                    }
                    Recreated::Job => {
                        "delete of the Job and its pods accepted; the new Job is validated on create"
                    }
                }
            }
        };
        Ok(json!({"dry_run": said, "target": target.to_string()}))
    }

    /// Make the compiled change. The returned snapshot is what `revert` needs.
    pub async fn apply(&self, change: Change) -> Result<Snapshot, ClusterError> {
        let Change::Write { target, write } = change else {
            return Err(ClusterError::Unsupported("executing an escalation".into()));
        };
        let target = &target;
        match write {
            Write::Template {
                patch,
                snapshot,
                stored,
            } => {
                let mut spec = match self.patch_workload(target, patch.clone(), false).await {
                    Ok(spec) => spec,
                    Err(e) if uncertain(&e) => {
                        self.read_back(target, Patched::Template, &patch, e).await?
                    }
                    Err(e) => return Err(e),
                };
                // Read with pointers: indexing a JSON value that is not there would panic mid-write.
                let path = match stored {
                    Stored::Nothing => return Ok(snapshot),
                    Stored::ContainerField(i, field) => format!("/containers/{i}/{field}"),
                    Stored::Container(i) => format!("/containers/{i}"),
                    Stored::SpecField(field) => format!("/{field}"),
                };
                let stored = spec.pointer_mut(&path).map(Value::take).unwrap_or_default();
                Ok(snapshot.left(stored))
            }
            Write::PodImage { patch, snapshot } => {
                let patched = Api::<Pod>::namespaced(self.client.clone(), &target.namespace)
                    .patch(&target.name, &patch_params(false), &patch)
                    .await
                    .map_err(ClusterError::from);
                match patched {
                    Ok(_) => {}
                    Err(e) if uncertain(&e) => {
                        self.read_back(target, Patched::Pod, &patch, e).await?;
                    }
                    Err(e) => return Err(e),
                }
                Ok(snapshot)
            }
            Write::Service { patch, snapshot } => {
                match self.patch_service(target, &patch, false).await {
                    Ok(_) => {}
                    Err(e) if uncertain(&e) => {
                        self.read_back(target, Patched::Service, &patch, e).await?;
                    }
                    Err(e) => return Err(e),
                }
                Ok(snapshot)
            }
            Write::Role {
                name,
                patch,
                snapshot,
            } => {
                match self
                    .patch_role(&target.namespace, &name, &patch, false)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if uncertain(&e) => {
                        self.read_back(target, Patched::Role(name), &patch, e)
                            .await?;
                    }
                    Err(e) => return Err(e),
                }
                Ok(snapshot)
            }
            Write::Recreate(j) => {
                let new_uid = self.recreate(&j).await?;
                let (namespace, original) = (j.namespace, j.original);
                Ok(match j.kind {
                    Recreated::Pod => Snapshot::RecreatedPod {
                        namespace,
                        original,
                        new_uid,
                    },
                    Recreated::Claim => Snapshot::RecreatedClaim {
                        namespace,
                        original,
                        new_uid,
                    },
                    Recreated::Job => Snapshot::RecreatedJob {
                        namespace,
                        original,
                        new_uid,
                    },
                })
            }
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
