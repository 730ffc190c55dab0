//! What an executed action replaced (the snapshot) and how it is undone: only if the object is still as the action
//! left it — a change someone else made since is left alone, and the revert says so.

use super::recreate::{Journal, Recreated, fresh_job, fresh_pod};
use super::{Cluster, ClusterError};
use reflexion_core::owner::WorkloadRef;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// One field of a Deployment's pod spec (the nodeSelector) before and after the change (null: absent).
    PodSpec {
        target: WorkloadRef,
        field: String,
        old: Value,
        new: Value,
    },
    /// A whole container of a Deployment's template before and after the change.
    Container {
        target: WorkloadRef,
        container: String,
        old: Value,
        new: Value,
    },
    /// A Service's selector before and after the change.
    ServiceSelector {
        target: WorkloadRef,
        old: Value,
        new: Value,
    },
    /// A Service's ports before and after one port's target changed.
    ServicePorts {
        target: WorkloadRef,
        old: Value,
        new: Value,
    },
    /// A Role's rules before and after a rule was added (null: absent).
    RoleRules {
        namespace: String,
        role: String,
        old: Value,
        new: Value,
    },
    /// A bare Job recreated with a changed pod template.
    RecreatedJob {
        namespace: String,
        original: Value,
        new_uid: String,
    },
    /// An unbound claim replaced by the same claim of another class.
    RecreatedClaim {
        namespace: String,
        original: Value,
        new_uid: String,
    },
}

impl Snapshot {
    /// The snapshot with the value the change left as stored by the API server (defaults included), for the
    /// kinds whose revert compares against it.
    pub(super) fn left(mut self, stored: Value) -> Self {
        match &mut self {
            Snapshot::Field { new, .. }
            | Snapshot::PodSpec { new, .. }
            | Snapshot::Container { new, .. } => *new = stored,
            _ => {}
        }
        self
    }
}

/// What a revert did. Only `Done` means the change is gone; the others say why it is still in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Reverted {
    /// The object is back as it was before the change.
    Done(String),
    /// Left alone on purpose: someone else changed or replaced the object since.
    Skipped(String),
    /// The API refused or failed the revert.
    Failed(String),
}

impl Reverted {
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }

    /// One line for the audit log and the reflection.
    pub fn describe(&self) -> String {
        match self {
            Self::Done(d) => d.clone(),
            Self::Skipped(why) => format!("not reverted: {why}"),
            Self::Failed(why) => format!("revert failed: {why}"),
        }
    }
}

impl Cluster {
    /// Undo an executed action, unless someone else changed the object since (then leave it alone and say so).
    pub async fn revert(&self, snapshot: &Snapshot) -> Reverted {
        self.try_revert(snapshot)
            .await
            .unwrap_or_else(|e| Reverted::Failed(e.to_string()))
    }

    async fn try_revert(&self, snapshot: &Snapshot) -> Result<Reverted, ClusterError> {
        match snapshot {
            Snapshot::Image {
                target,
                container,
                old_image,
                new_image,
            } => {
                let now = self.current_image(target, container).await?;
                if now != *new_image {
                    return Ok(Reverted::Skipped(format!(
                        "{target} now runs {now}, changed by someone else"
                    )));
                }
                self.patch_image(target, container, old_image, false)
                    .await?;
                Ok(Reverted::Done(format!(
                    "reverted {target} container {container} to {old_image}"
                )))
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
                    return Ok(Reverted::Skipped(format!(
                        "{target} container {container} now has memory limit {now:?}, changed by someone else"
                    )));
                }
                // Restore the container's resources exactly, guarded by a test that it is still the same container.
                let restore = if old.is_null() {
                    json!({})
                } else {
                    old.clone()
                };
                self.patch_field(target, index, container, "resources", &restore, false)
                    .await?;
                Ok(Reverted::Done(format!(
                    "reverted {target} container {container} resources to {old}"
                )))
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
                    return Ok(Reverted::Skipped(format!(
                        "{target} container {container} no longer has {name}, changed by someone else"
                    )));
                }
                // A null `old` removes the env list the change created.
                self.patch_field(target, index, container, "env", old, false)
                    .await?;
                Ok(Reverted::Done(format!(
                    "reverted {target} container {container} env (removed {name})"
                )))
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
                    return Ok(Reverted::Skipped(format!(
                        "{target} container {container} {field} was changed by someone else"
                    )));
                }
                self.patch_field(target, index, container, field, old, false)
                    .await?;
                Ok(Reverted::Done(format!(
                    "reverted {target} container {container} {field} to {old}"
                )))
            }
            Snapshot::Template { target, old, new } => {
                let d = self
                    .deployment(&target.namespace, &target.name)
                    .await?
                    .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
                let now = serde_json::to_value(d)?["spec"]["template"].clone();
                if now != *new {
                    return Ok(Reverted::Skipped(format!(
                        "{target}'s pod template was changed by someone else"
                    )));
                }
                self.replace_template(target, old, false).await?;
                Ok(Reverted::Done(format!(
                    "restored {target}'s pod template from before the rollback"
                )))
            }
            Snapshot::RecreatedPod {
                namespace,
                original,
                new_uid,
            } => {
                self.recreate_original(Recreated::Pod, namespace, original, new_uid)
                    .await
            }
            Snapshot::RecreatedJob {
                namespace,
                original,
                new_uid,
            } => {
                self.recreate_original(Recreated::Job, namespace, original, new_uid)
                    .await
            }
            Snapshot::PodSpec {
                target,
                field,
                old,
                new,
            } => self.revert_pod_spec(target, field, old, new).await,
            Snapshot::Container {
                target,
                container,
                old,
                new,
            } => self.revert_container(target, container, old, new).await,
            Snapshot::RecreatedClaim {
                namespace,
                original,
                new_uid,
            } => self.revert_claim(namespace, original, new_uid).await,
            Snapshot::ServiceSelector { target, old, new } => {
                self.revert_service(target, false, old, new).await
            }
            Snapshot::ServicePorts { target, old, new } => {
                self.revert_service(target, true, old, new).await
            }
            Snapshot::RoleRules {
                namespace,
                role,
                old,
                new,
            } => self.revert_role_rules(namespace, role, old, new).await,
        }
    }
}

impl Cluster {
    /// Undo a recreation: the object made by it (that very uid) recreated as the original was. Run again, for a Job.
    async fn recreate_original(
        &self,
        kind: Recreated,
        namespace: &str,
        original: &Value,
        new_uid: &str,
    ) -> Result<Reverted, ClusterError> {
        let name = original["metadata"]["name"].as_str().unwrap_or_default();
        let noun = match kind {
            Recreated::Job => "job",
            _ => "pod",
        };
        let Some(current) = self.dynamic(kind, namespace).get_opt(name).await? else {
            return Ok(Reverted::Skipped(format!("{noun} {name} no longer exists")));
        };
        if current.metadata.uid.as_deref() != Some(new_uid) {
            return Ok(Reverted::Skipped(format!(
                "{noun} {name} was replaced by someone else"
            )));
        }
        let restored = match kind {
            Recreated::Job => fresh_job(original, None, None)?,
            _ => fresh_pod(original, None, None)?,
        };
        self.recreate(&Journal {
            kind,
            namespace: namespace.to_string(),
            original: serde_json::to_value(&current)?,
            fresh: restored,
        })
        .await?;
        Ok(Reverted::Done(format!(
            "recreated {noun} {name} with its original spec"
        )))
    }
}
