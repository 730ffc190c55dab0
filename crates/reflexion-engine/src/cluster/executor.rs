//! What the engine writes: each typed action as a minimal patch at the owner (a server-side dry run first), and the
//! Event that tells `kubectl describe` what was done. What a change replaced and its undoing are in `revert`.

use k8s_openapi::api::core::v1::{Event, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PostParams};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};

use super::workload::{in_template, spec_path};
use super::{Cluster, ClusterError, FIELD_MANAGER, patch_params};
use serde_json::{Value, json};

impl Cluster {
    pub(super) async fn patch_image(
        &self,
        target: &WorkloadRef,
        container: &str,
        image: &str,
        dry_run: bool,
    ) -> Result<(), ClusterError> {
        let containers = json!([{"name": container, "image": image}]);
        match target.kind {
            WorkloadKind::Deployment | WorkloadKind::CronJob => {
                let patch = in_template(target.kind, json!({"containers": containers}));
                self.patch_workload(target, Patch::Strategic(patch), dry_run)
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
        self.patch_workload(target, Patch::Json(patch), dry_run)
            .await?;
        Ok(())
    }
    /// Set one field of one container of a workload's template, guarded by a test that the index still holds
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
        let base = format!("{}/containers/{index}", spec_path(target)?);
        let set = if value.is_null() {
            json!({"op": "remove", "path": format!("{base}/{field}")})
        } else {
            json!({"op": "add", "path": format!("{base}/{field}"), "value": value})
        };
        let ops = json!([{"op": "test", "path": format!("{base}/name"), "value": container}, set]);
        let patch: json_patch::Patch = serde_json::from_value(ops)?;
        let mut spec = self
            .patch_workload(target, Patch::Json(patch), dry_run)
            .await?;
        Ok(spec["containers"][index][field].take())
    }
    /// Best effort: an Event on the workload, so `kubectl describe` shows what kube-reflexion did.
    pub async fn record_event(
        &self,
        target: &WorkloadRef,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let (ar, _) = super::owner::workload_resource(target.kind);
        let api_version = ar.api_version.clone();
        let uid = self
            .workload(target)
            .await
            .ok()
            .and_then(|o| o["metadata"]["uid"].as_str().map(String::from));
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", target.name)),
                namespace: Some(target.namespace.clone()),
                annotations: (!self.name().is_empty()).then(|| {
                    std::collections::BTreeMap::from([(
                        super::CLUSTER_ANNOTATION.to_string(),
                        self.name().to_string(),
                    )])
                }),
                ..Default::default()
            },
            involved_object: ObjectReference {
                api_version: Some(api_version),
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
