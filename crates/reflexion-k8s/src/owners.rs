//! Owner chains: Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob, Pod -> StatefulSet / DaemonSet. The
//! watcher names the workload in its report and the engine acts on it; both read the chain here, so they agree.

use crate::K8sError;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client, ResourceExt};
use reflexion_core::owner::OwnerLink;
use reflexion_core::revision::controller;
use std::collections::HashMap;
use std::sync::Mutex;

/// Cached chains above a ReplicaSet or Job are dropped all at once past this many, to bound memory.
const CACHE_LIMIT: usize = 10_000;

/// Whether an owner of this kind may itself be controlled by the workload to fix (a ReplicaSet by its Deployment, a
/// Job by its CronJob). Every other controller is the top of its chain.
pub fn next_owner_kind(kind: &str) -> bool {
    matches!(kind, "ReplicaSet" | "Job")
}

fn link(r: &OwnerReference) -> OwnerLink {
    OwnerLink {
        kind: r.kind.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
    }
}

/// The part of the chain the pod itself states: the pod and its controller.
pub fn known_chain(pod: &Pod) -> Vec<OwnerLink> {
    let mut chain = vec![OwnerLink {
        kind: "Pod".into(),
        name: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
    }];
    chain.extend(controller(pod.metadata.owner_references.as_ref()).map(link));
    chain
}

/// Resolves owner chains. `cached` remembers what sits above each ReplicaSet and Job (by uid: a storm of failing
/// pods of one ReplicaSet costs one read); `live` reads every time.
pub struct OwnerChains {
    client: Client,
    cache: Option<Mutex<HashMap<String, Option<OwnerLink>>>>,
}

impl OwnerChains {
    pub fn cached(client: Client) -> Self {
        Self {
            client,
            cache: Some(Mutex::new(HashMap::new())),
        }
    }

    pub fn live(client: Client) -> Self {
        Self {
            client,
            cache: None,
        }
    }

    /// The chain from the pod upwards, pod first, workload last. A failed read is an error, never a shorter
    /// chain: a chain cut short would name the ReplicaSet where the Deployment must be fixed.
    pub async fn chain(&self, pod: &Pod) -> Result<Vec<OwnerLink>, K8sError> {
        let mut chain = known_chain(pod);
        let Some(owner) = controller(pod.metadata.owner_references.as_ref()) else {
            return Ok(chain);
        };
        if !next_owner_kind(&owner.kind) {
            return Ok(chain);
        }
        if let Some(cache) = &self.cache
            && let Some(above) = cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&owner.uid)
        {
            chain.extend(above.clone());
            return Ok(chain);
        }
        let ns = pod.namespace().unwrap_or_default();
        let refs = match owner.kind.as_str() {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                .get_opt(&owner.name)
                .await?
                .filter(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                .and_then(|rs| rs.metadata.owner_references),
            _ => Api::<Job>::namespaced(self.client.clone(), &ns)
                .get_opt(&owner.name)
                .await?
                .filter(|job| job.metadata.uid.as_deref() == Some(owner.uid.as_str()))
                .and_then(|job| job.metadata.owner_references),
        };
        let above = controller(refs.as_ref()).map(link);
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(owner.uid.clone(), above.clone());
        }
        chain.extend(above);
        Ok(chain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_replicasets_and_jobs_are_followed_upwards() {
        for (kind, followed) in [
            ("ReplicaSet", true),
            ("Job", true),
            ("Deployment", false),
            ("CronJob", false),
            ("StatefulSet", false),
            ("DaemonSet", false),
            ("Node", false),
        ] {
            assert_eq!(next_owner_kind(kind), followed, "{kind}");
        }
    }

    #[test]
    fn the_pod_states_itself_and_its_controller_only() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {
            "name": "web-1", "uid": "p1", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-a-controller", "uid": "c1"},
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "s1", "controller": true}]}}))
        .unwrap_or_default();
        let chain = known_chain(&pod);
        let kinds: Vec<&str> = chain.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["Pod", "StatefulSet"]);
        assert_eq!(chain[1].uid, "s1");
        let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "solo", "uid": "p2"}}))
            .unwrap_or_default();
        assert_eq!(known_chain(&bare).len(), 1);
    }
}
