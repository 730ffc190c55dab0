//! The workloads whose pod template kube-reflexion patches: a Deployment's `spec.template`, and a CronJob's
//! `spec.jobTemplate.spec.template` (its Jobs' template is immutable; the next run proves the fix). Both are read
//! and patched here, through one dynamic API, so that every templated write goes through one place. A CronJob's run
//! started by kube-reflexion (to prove a fix, when the policy allows it) is created here too.

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

impl Cluster {
    /// Start a run of a CronJob now, as `kubectl create job NAME --from=cronjob/CRON` does: a Job from its
    /// jobTemplate, owned by the CronJob and marked `cronjob.kubernetes.io/instantiate: manual`. Returns its name.
    pub async fn trigger_run(
        &self,
        target: &WorkloadRef,
        incident: &str,
    ) -> Result<String, ClusterError> {
        use k8s_openapi::api::batch::v1::{CronJob, Job};
        let cron = Api::<CronJob>::namespaced(self.client.clone(), &target.namespace)
            .get(&target.name)
            .await?;
        let template = cron
            .spec
            .as_ref()
            .map(|s| s.job_template.clone())
            .ok_or_else(|| ClusterError::NotFound(format!("{target}'s jobTemplate")))?;
        // A Job's name is a label value too: 63 characters at most.
        let suffix: String = incident
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(8)
            .collect();
        let mut base: String = target.name.chars().take(63 - 10 - suffix.len()).collect();
        base = base.trim_end_matches('-').to_string();
        let name = format!("{base}-reflexion-{suffix}").to_ascii_lowercase();
        let mut meta = template.metadata.unwrap_or_default();
        meta.name = Some(name.clone());
        meta.namespace = Some(target.namespace.clone());
        meta.annotations
            .get_or_insert_with(Default::default)
            .insert("cronjob.kubernetes.io/instantiate".into(), "manual".into());
        meta.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: target.name.clone(),
                uid: cron.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
        ]);
        let job = Job {
            metadata: meta,
            spec: template.spec,
            ..Default::default()
        };
        Api::<Job>::namespaced(self.client.clone(), &target.namespace)
            .create(&kube::api::PostParams::default(), &job)
            .await?;
        Ok(name)
    }
}
