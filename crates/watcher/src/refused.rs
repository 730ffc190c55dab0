//! Which workload a `FailedCreate` belongs to: a ReplicaSet's (its Deployment's) or a Job's (its CronJob's), read
//! live and only while it still cannot make the pods it wants — a ReplicaSet short of its replicas, a Job not
//! finished.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, Client, Resource, ResourceExt};
use reflexion_core::owner::OwnerLink;

pub(crate) fn link<K: Resource<DynamicType = ()>>(o: &K) -> OwnerLink {
    OwnerLink {
        kind: K::kind(&()).to_string(),
        name: o.name_any(),
        uid: o.uid().unwrap_or_default(),
    }
}

/// The chain from the refused object up to the workload to fix, and the revision the failure belongs to; `None`
/// when the object is gone, replaced, being deleted, or no longer short of pods.
pub async fn owners(
    client: &Client,
    involved: &ObjectReference,
) -> Result<Option<(Vec<OwnerLink>, String)>, kube::Error> {
    let (Some(ns), Some(name)) = (&involved.namespace, &involved.name) else {
        return Ok(None);
    };
    let (first, owners, revision) = match involved.kind.as_deref() {
        Some("ReplicaSet") => {
            let Some(rs) = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await?
            else {
                return Ok(None);
            };
            let short = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
                > rs.status.as_ref().map_or(0, |s| s.replicas);
            if rs.uid() != involved.uid || rs.metadata.deletion_timestamp.is_some() || !short {
                return Ok(None);
            }
            let hash = rs
                .labels()
                .get("pod-template-hash")
                .cloned()
                .unwrap_or_default();
            (link(&rs), rs.owner_references().to_vec(), hash)
        }
        Some("Job") => {
            let Some(job) = Api::<Job>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await?
            else {
                return Ok(None);
            };
            if job.uid() != involved.uid
                || job.metadata.deletion_timestamp.is_some()
                || reflexion_k8s::job_finished(&job)
            {
                return Ok(None);
            }
            // Each Job of a CronJob is a run of its own.
            let uid = job.uid().unwrap_or_default();
            (link(&job), job.owner_references().to_vec(), uid)
        }
        _ => return Ok(None),
    };
    Ok(Some(chain(first, &owners, &revision)))
}

/// The chain from an object up to its controller, and the revision a failure of it belongs to (with the top
/// owner's uid: a workload deleted and created again is another).
pub(crate) fn chain(
    first: OwnerLink,
    owners: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
    revision: &str,
) -> (Vec<OwnerLink>, String) {
    let mut chain = vec![first];
    if let Some(owner) = owners.iter().find(|r| r.controller == Some(true)) {
        chain.push(OwnerLink {
            kind: owner.kind.clone(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        });
    }
    let revision = format!(
        "{revision}/{}",
        chain.last().map(|l| l.uid.as_str()).unwrap_or_default()
    );
    (chain, revision)
}
