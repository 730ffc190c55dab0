//! Workloads stopped at a deadline with no failing pod to show it (`reflexion_core::stalled`): a Deployment whose
//! `Progressing` condition is False with `ProgressDeadlineExceeded` (watched as Deployments change), and a Job the
//! job controller stopped at its `activeDeadlineSeconds` (its `DeadlineExceeded` Warning Event; the Job's pods are
//! deleted then). Each is reported once per revision (a Deployment's) or run (a Job of a CronJob).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Api, Client, ResourceExt};
use reflexion_core::owner::OwnerLink;

/// The controller's message when a Deployment's rollout passed its progress deadline (a paused or deleted one never
/// counts).
pub fn timed_out(d: &Deployment) -> Option<String> {
    if d.metadata.deletion_timestamp.is_some()
        || d.spec.as_ref().and_then(|s| s.paused) == Some(true)
    {
        return None;
    }
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some(reflexion_core::stalled::PROGRESS_DEADLINE)
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

/// The chain and revision of a Deployment past its deadline: the revision it is rolling out.
pub fn deployment_chain(d: &Deployment) -> (Vec<OwnerLink>, String) {
    let revision = d
        .annotations()
        .get("deployment.kubernetes.io/revision")
        .cloned()
        .unwrap_or_default();
    crate::refused::chain(crate::refused::link(d), &[], &revision)
}

/// The chain from a Job stopped at its deadline up to its CronJob, and the run it belongs to; `None` when the Job
/// is gone, replaced, being deleted, or did not fail at its deadline.
pub async fn job_owners(
    client: &Client,
    involved: &ObjectReference,
) -> Result<Option<(Vec<OwnerLink>, String)>, kube::Error> {
    let (Some(ns), Some(name)) = (&involved.namespace, &involved.name) else {
        return Ok(None);
    };
    let Some(job) = Api::<Job>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?
    else {
        return Ok(None);
    };
    let failed_at_deadline = job
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "Failed"
                    && c.status == "True"
                    && c.reason.as_deref() == Some(reflexion_core::stalled::ACTIVE_DEADLINE)
            })
        });
    if job.uid() != involved.uid || job.metadata.deletion_timestamp.is_some() || !failed_at_deadline
    {
        return Ok(None);
    }
    let uid = job.uid().unwrap_or_default();
    Ok(Some(crate::refused::chain(
        crate::refused::link(&job),
        job.owner_references(),
        &uid,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_rollout_past_its_deadline_has_timed_out() {
        let d = |spec: serde_json::Value, conditions: serde_json::Value| -> Deployment {
            serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec,
                "status": {"conditions": conditions}}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let spec = json!({"selector": {}, "template": {}});
        let paused = json!({"selector": {}, "template": {}, "paused": true});
        let timed = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"web-1\" has timed out progressing."}]);
        let cases = [
            (
                d(spec.clone(), timed.clone()),
                Some("ReplicaSet \"web-1\" has timed out progressing."),
            ),
            (d(paused, timed), None),
            (
                d(
                    spec.clone(),
                    json!([{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]),
                ),
                None,
            ),
            (
                d(
                    spec,
                    json!([{"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"}]),
                ),
                None,
            ),
        ];
        for (dep, want) in cases {
            assert_eq!(timed_out(&dep).as_deref(), want);
        }
    }
}
