//! Resolving the owner chain of a pod (Pod -> ReplicaSet -> Deployment, Job -> CronJob), with a cache so a
//! storm of failing pods of one ReplicaSet costs one API call.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Api, Client};
use reflexion_core::owner::OwnerLink;
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Owners {
    client: Client,
    /// (namespace, ReplicaSet or Job uid) -> chain above it
    cache: Mutex<HashMap<(String, String), Vec<OwnerLink>>>,
}

fn controller_of(refs: Option<&Vec<OwnerReference>>) -> Option<&OwnerReference> {
    refs?.iter().find(|r| r.controller == Some(true))
}

fn link(r: &OwnerReference) -> OwnerLink {
    OwnerLink {
        kind: r.kind.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
    }
}

impl Owners {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the pod's ReplicaSet has been scaled to zero (an old revision on its way out). Read live, never
    /// cached: a ReplicaSet's scale changes during every rollout.
    pub async fn scaled_away(&self, pod: &Pod) -> bool {
        let Some(owner) = controller_of(pod.metadata.owner_references.as_ref())
            .filter(|o| o.kind == "ReplicaSet")
        else {
            return false;
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
            .get_opt(&owner.name)
            .await
            .ok()
            .flatten()
            .filter(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()))
            .is_some_and(|rs| rs.spec.and_then(|s| s.replicas) == Some(0))
    }

    /// The chain from the pod upwards, pod first. A lookup that fails stops the chain where it is known.
    pub async fn chain(&self, pod: &Pod) -> Vec<OwnerLink> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut chain = vec![OwnerLink {
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        }];
        let Some(owner) = controller_of(pod.metadata.owner_references.as_ref()) else {
            return chain;
        };
        chain.push(link(owner));
        if owner.kind != "ReplicaSet" && owner.kind != "Job" {
            return chain;
        }
        let cache_key = (ns.clone(), owner.uid.clone());
        if let Some(above) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            chain.extend(above.iter().cloned());
            return chain;
        }
        let above = match owner.kind.as_str() {
            "ReplicaSet" => Api::<ReplicaSet>::namespaced(self.client.clone(), &ns)
                .get_opt(&owner.name)
                .await
                .ok()
                .flatten()
                .and_then(|rs| controller_of(rs.metadata.owner_references.as_ref()).map(link)),
            _ => Api::<Job>::namespaced(self.client.clone(), &ns)
                .get_opt(&owner.name)
                .await
                .ok()
                .flatten()
                .and_then(|job| controller_of(job.metadata.owner_references.as_ref()).map(link)),
        };
        let above: Vec<OwnerLink> = above.into_iter().collect();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(cache_key, above.clone());
        chain.extend(above);
        chain
    }
}
