//! A PersistentVolumeClaim that can never bind — its StorageClass does not exist — is replaced by the same claim of a
//! class that does. Only an unbound claim, which holds no data, and only one the workload mounts; the delete carries
//! the claim's resourceVersion, so a claim that bound meanwhile is not deleted. The storageClassName of a claim
//! cannot change in place, hence delete and create.

use super::recreate::{Journal, Recreated};
use super::revert::Reverted;
use super::{Cluster, ClusterError};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use reflexion_core::owner::WorkloadRef;
use serde_json::{Value, json};

/// Why a claim must not be replaced, if it must not.
pub fn refusal(claim: &Value) -> Option<String> {
    let name = claim["metadata"]["name"].as_str().unwrap_or_default();
    let phase = claim["status"]["phase"].as_str().unwrap_or("Pending");
    if phase == "Bound"
        || claim["spec"]["volumeName"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    {
        return Some(format!(
            "claim {name} is {phase} to a volume: it may hold data, and kube-reflexion never deletes a bound claim"
        ));
    }
    if !claim["metadata"]["deletionTimestamp"].is_null() {
        return Some(format!("claim {name} is already being deleted"));
    }
    None
}

/// The claim to create in place of `original`: everything it asked for, the new class, nothing the server set.
pub fn fresh_claim(original: &Value, storage_class: &str) -> Value {
    let mut claim = original.clone();
    if let Some(meta) = claim["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "finalizers",
            "selfLink",
            "generation",
        ] {
            meta.remove(field);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            // The binder's and provisioner's bookkeeping belongs to the old claim.
            a.retain(|k, _| !k.starts_with("pv.kubernetes.io/") && !k.starts_with("volume."));
        }
    }
    if let Some(o) = claim.as_object_mut() {
        o.remove("status");
    }
    if let Some(spec) = claim["spec"].as_object_mut() {
        spec.remove("volumeName");
        spec.insert("storageClassName".into(), json!(storage_class));
    }
    claim
}

impl Cluster {
    fn claims(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The claims a workload's pods mount.
    pub async fn mounted_claims(&self, target: &WorkloadRef) -> Result<Vec<String>, ClusterError> {
        let spec = self.pod_spec(target).await?;
        Ok(spec["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| {
                v["persistentVolumeClaim"]["claimName"]
                    .as_str()
                    .map(String::from)
            })
            .collect())
    }

    /// The recreation of an unbound claim the workload mounts as the same claim of `storage_class`, journaled.
    pub(super) async fn claim_journal(
        &self,
        target: &WorkloadRef,
        claim: &str,
        storage_class: &str,
    ) -> Result<Journal, ClusterError> {
        if !self
            .mounted_claims(target)
            .await?
            .iter()
            .any(|c| c == claim)
        {
            return Err(ClusterError::Refused(format!(
                "{target} does not mount claim {claim}: kube-reflexion only touches the incident's workload and the claim it waits on"
            )));
        }
        Api::<StorageClass>::all(self.client.clone())
            .get_opt(storage_class)
            .await?
            .ok_or_else(|| ClusterError::NotFound(format!("storageclass {storage_class}")))?;
        let original = serde_json::to_value(
            self.claims(&target.namespace)
                .get_opt(claim)
                .await?
                .ok_or_else(|| ClusterError::NotFound(format!("claim {claim}")))?,
        )?;
        if let Some(why) = refusal(&original) {
            return Err(ClusterError::Refused(why));
        }
        Ok(Journal {
            kind: Recreated::Claim,
            namespace: target.namespace.clone(),
            fresh: fresh_claim(&original, storage_class),
            original,
        })
    }

    /// Put the original claim back, if the one created is still there and still unbound.
    pub(super) async fn revert_claim(
        &self,
        ns: &str,
        original: &Value,
        new_uid: &str,
    ) -> Result<Reverted, ClusterError> {
        let name = original["metadata"]["name"].as_str().unwrap_or_default();
        let Some(now) = self.claims(ns).get_opt(name).await? else {
            return Ok(Reverted::Skipped(format!("claim {name} no longer exists")));
        };
        let now = serde_json::to_value(now)?;
        if now["metadata"]["uid"] != new_uid {
            return Ok(Reverted::Skipped(format!(
                "claim {name} was replaced by someone else"
            )));
        }
        if let Some(why) = refusal(&now) {
            return Ok(Reverted::Skipped(why));
        }
        let class = original["spec"]["storageClassName"]
            .as_str()
            .unwrap_or_default();
        self.recreate(&Journal {
            kind: Recreated::Claim,
            namespace: ns.to_string(),
            fresh: fresh_claim(original, class),
            original: now,
        })
        .await?;
        Ok(Reverted::Done(format!(
            "recreated claim {name} with its original class {class}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unbound_claim_is_replaced_and_only_its_class_changes() {
        let pending = json!({"metadata": {"name": "data", "uid": "u1", "resourceVersion": "7", "labels": {"app": "db"},
                                          "finalizers": ["kubernetes.io/pvc-protection"],
                                          "annotations": {"team": "db", "volume.kubernetes.io/storage-provisioner": "x"}},
                             "spec": {"storageClassName": "fast", "accessModes": ["ReadWriteOnce"],
                                      "resources": {"requests": {"storage": "1Gi"}}},
                             "status": {"phase": "Pending"}});
        assert_eq!(refusal(&pending), None);
        let fresh = fresh_claim(&pending, "standard");
        assert_eq!(
            fresh,
            json!({"metadata": {"name": "data", "labels": {"app": "db"}, "annotations": {"team": "db"}},
                   "spec": {"storageClassName": "standard", "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}}}})
        );
        let mut bound = pending.clone();
        bound["status"]["phase"] = json!("Bound");
        bound["spec"]["volumeName"] = json!("pvc-1");
        assert!(refusal(&bound).is_some_and(|w| w.contains("never deletes a bound claim")));
    }
}
