//! A workload's pods: those that can prove a fix of it. Found by owner uid (and, for a Deployment, its current
//! ReplicaSet's pod-template-hash), never by name: pods of `web-api` are not pods of `web`.

use crate::K8sError;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::revision::{self, POD_TEMPLATE_HASH, controller};
use std::fmt::Debug;

/// Whether a Job has ended (`Complete` or `Failed`): it makes no more pods.
pub fn job_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

/// Whether the object's controller is the object with this uid.
fn controlled_by<K: Resource>(obj: &K, uid: &str) -> bool {
    controller(obj.meta().owner_references.as_ref()).is_some_and(|o| o.uid == uid)
}

/// The uid of the named object of kind `K`, `None` when it does not exist.
async fn uid_of<K>(client: &Client, ns: &str, name: &str) -> Result<Option<String>, K8sError>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + serde::de::DeserializeOwned,
    K::DynamicType: Default,
{
    Ok(Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .and_then(|o| o.meta().uid.clone()))
}

/// A Deployment's current ReplicaSet (one it controls that runs its template), if the controller has created it.
pub async fn current_replicaset(
    client: &Client,
    target: &WorkloadRef,
) -> Result<Option<ReplicaSet>, K8sError> {
    let Some(d) = Api::<Deployment>::namespaced(client.clone(), &target.namespace)
        .get_opt(&target.name)
        .await?
    else {
        return Ok(None);
    };
    let sets = Api::<ReplicaSet>::namespaced(client.clone(), &target.namespace)
        .list(&ListParams::default())
        .await?
        .items;
    Ok(revision::current_replicaset(&d, &sets).cloned())
}

/// The pods that can prove a fix of the workload: not terminating; for a Deployment only those of its current
/// ReplicaSet; for a CronJob its Jobs' pods; for every other controller the pods it controls.
pub async fn workload_pods(client: &Client, target: &WorkloadRef) -> Result<Vec<Pod>, K8sError> {
    let ns = target.namespace.as_str();
    let api = Api::<Pod>::namespaced(client.clone(), ns);
    let owners: Vec<String> = match target.kind {
        WorkloadKind::Pod => {
            return Ok(api
                .get_opt(&target.name)
                .await?
                .into_iter()
                .filter(|p| revision::proves(p, None))
                .collect());
        }
        WorkloadKind::Deployment => {
            let Some(rs) = current_replicaset(client, target).await? else {
                return Ok(Vec::new());
            };
            let hash = rs
                .labels()
                .get(POD_TEMPLATE_HASH)
                .cloned()
                .unwrap_or_default();
            let lp = ListParams::default().labels(&format!("{POD_TEMPLATE_HASH}={hash}"));
            return Ok(api
                .list(&lp)
                .await?
                .items
                .into_iter()
                .filter(|p| revision::proves(p, Some(&rs)))
                .collect());
        }
        WorkloadKind::CronJob => match uid_of::<CronJob>(client, ns, &target.name).await? {
            Some(uid) => Api::<Job>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter(|j| controlled_by(j, &uid))
                .filter_map(|j| j.metadata.uid)
                .collect(),
            None => Vec::new(),
        },
        WorkloadKind::StatefulSet => uid_of::<StatefulSet>(client, ns, &target.name)
            .await?
            .into_iter()
            .collect(),
        WorkloadKind::DaemonSet => uid_of::<DaemonSet>(client, ns, &target.name)
            .await?
            .into_iter()
            .collect(),
        WorkloadKind::ReplicaSet => uid_of::<ReplicaSet>(client, ns, &target.name)
            .await?
            .into_iter()
            .collect(),
        WorkloadKind::Job => uid_of::<Job>(client, ns, &target.name)
            .await?
            .into_iter()
            .collect(),
        // A Service's pods are the ones its selector matches, whoever owns them.
        WorkloadKind::Service => {
            let selector = service_selector(client, ns, &target.name).await?;
            if selector.is_empty() {
                return Ok(Vec::new());
            }
            let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Ok(api
                .list(&ListParams::default().labels(&labels.join(",")))
                .await?
                .items
                .into_iter()
                .filter(|p| revision::proves(p, None))
                .collect());
        }
    };
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|p| owners.iter().any(|uid| controlled_by(p, uid)) && revision::proves(p, None))
        .collect())
}

/// A Service's selector (empty when it has none, or the Service is gone).
pub async fn service_selector(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<std::collections::BTreeMap<String, String>, K8sError> {
    Ok(Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
        .and_then(|s| s.spec?.selector)
        .unwrap_or_default())
}

/// Whether the pod's ReplicaSet has been scaled to zero (an old revision on its way out). Read live: a
/// ReplicaSet's scale changes during every rollout.
pub async fn scaled_away(client: &Client, pod: &Pod) -> Result<bool, K8sError> {
    let Some(owner) =
        controller(pod.metadata.owner_references.as_ref()).filter(|o| o.kind == "ReplicaSet")
    else {
        return Ok(false);
    };
    Ok(
        Api::<ReplicaSet>::namespaced(client.clone(), &pod.namespace().unwrap_or_default())
            .get_opt(&owner.name)
            .await?
            .filter(|rs| rs.metadata.uid.as_deref() == Some(owner.uid.as_str()))
            .is_some_and(|rs| rs.spec.and_then(|s| s.replicas) == Some(0)),
    )
}
