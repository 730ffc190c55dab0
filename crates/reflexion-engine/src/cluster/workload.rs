//! The workloads whose pod template kube-reflexion patches: a Deployment's `spec.template`, and a CronJob's
//! `spec.jobTemplate.spec.template` (its Jobs' template is immutable; the next run proves the fix). Both are read
//! and patched here, through one dynamic API, so that every templated write goes through one place.

use super::{Cluster, ClusterError, patch_params};
use kube::api::{Api, DynamicObject, Patch};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use serde_json::{Value, json};

/// Where the pod spec is in a templated workload, as a JSON pointer; `None` for kinds that are not patched at
/// their template.
pub(super) fn template_path(kind: WorkloadKind) -> Option<&'static str> {
    match kind {
        WorkloadKind::Deployment => Some("/spec/template/spec"),
        WorkloadKind::CronJob => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The pod spec fields nested where this kind keeps its template, for a strategic merge patch.
pub(super) fn in_template(kind: WorkloadKind, pod_spec: Value) -> Value {
    match kind {
        WorkloadKind::CronJob => {
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}})
        }
        _ => json!({"spec": {"template": {"spec": pod_spec}}}),
    }
}

/// The template's pointer, or `Unsupported` for a kind that has none here.
pub(super) fn spec_path(target: &WorkloadRef) -> Result<&'static str, ClusterError> {
    template_path(target.kind).ok_or_else(|| {
        ClusterError::Unsupported(format!("patching the pod template of a {}", target.kind))
    })
}

impl Cluster {
    pub(super) fn workload_api(&self, target: &WorkloadRef) -> Api<DynamicObject> {
        let (ar, _) = super::owner::workload_resource(target.kind);
        Api::namespaced_with(self.client.clone(), &target.namespace, &ar)
    }

    /// The workload as stored, as JSON.
    pub(super) async fn workload(&self, target: &WorkloadRef) -> Result<Value, ClusterError> {
        let o = self
            .workload_api(target)
            .get_opt(&target.name)
            .await?
            .ok_or_else(|| ClusterError::NotFound(target.to_string()))?;
        Ok(serde_json::to_value(o)?)
    }

    /// Patch a templated workload as kube-reflexion's field manager (a server-side dry run when `dry_run`). Returns
    /// the pod spec as stored, defaults included: what a revert later compares against.
    pub(super) async fn patch_workload(
        &self,
        target: &WorkloadRef,
        patch: Patch<Value>,
        dry_run: bool,
    ) -> Result<Value, ClusterError> {
        let path = spec_path(target)?;
        let o = self
            .workload_api(target)
            .patch(&target.name, &patch_params(dry_run), &patch)
            .await?;
        Ok(serde_json::to_value(o)?
            .pointer_mut(path)
            .map(Value::take)
            .unwrap_or_default())
    }
}
