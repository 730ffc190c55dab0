//! A workload whose pods the API server refuses (a ResourceQuota, Pod Security admission, a missing ServiceAccount):
//! there is no pod to diagnose, only the `ReplicaFailure` condition its ReplicaSet and Deployment carry (or, for a
//! Job, its newest `FailedCreate` Event while it has not finished). None of these
//! is changed automatically — a quota or a namespace's security level is someone's decision, an identity is never
//! created — so the incident is handed over naming the quota's numbers, the failed checks or the missing account
//! (`reflexion_core::refusal`).

use super::{Engine, EngineError};
use crate::db::Incident;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use reflexion_core::IncidentState;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::refusal::Refusal;
use serde_json::json;
use std::time::Duration;

/// Looks at the conditions before calling the failure gone: the controller writes them a moment after its Event.
const LOOKS: u32 = 5;

/// The `ReplicaFailure` condition that is true in a status's conditions: (reason, message).
fn replica_failure(conditions: Option<serde_json::Value>) -> Option<(String, String)> {
    let c = conditions?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")?
        .clone();
    Some((
        c["reason"].as_str().unwrap_or("FailedCreate").to_string(),
        c["message"].as_str().unwrap_or_default().to_string(),
    ))
}

impl Engine {
    /// A Job (of a CronJob, or bare) that cannot create its pods has no condition saying so: its newest
    /// `FailedCreate` Event does, while the Job has not finished.
    async fn unfinished_job_refused(
        &self,
        ns: &str,
        job: &str,
    ) -> Result<Option<(String, String)>, EngineError> {
        let client = self.scope.cluster.client().clone();
        let running = Api::<Job>::namespaced(client.clone(), ns)
            .get_opt(job)
            .await
            .map_err(crate::cluster::ClusterError::from)?
            .is_some_and(|j| !reflexion_k8s::job_finished(&j));
        if !running {
            return Ok(None);
        }
        let events = Api::<Event>::namespaced(client, ns)
            .list(&ListParams::default().fields(&format!(
                "involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"
            )))
            .await
            .map_err(crate::cluster::ClusterError::from)?;
        Ok(events
            .items
            .into_iter()
            .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
            .and_then(|e| e.message)
            .map(|m| ("FailedCreate".to_string(), m)))
    }

    /// Hand the incident over with what the API server refuses, or dismiss it when the workload creates its pods
    /// again.
    pub(in crate::engine) async fn refused_pods(
        &self,
        inc: &Incident,
        workload: &WorkloadRef,
    ) -> Result<(), EngineError> {
        let client = self.scope.cluster.client().clone();
        let ns = &workload.namespace;
        let mut failure = None;
        for look in 0..LOOKS {
            if look > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let of_deployment = match workload.kind {
                WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), ns)
                    .get_opt(&workload.name)
                    .await
                    .map_err(crate::cluster::ClusterError::from)?
                    .and_then(|d| serde_json::to_value(d.status?.conditions?).ok()),
                _ => None,
            };
            // The report names the ReplicaSet that cannot create its pods.
            let of_replicaset = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(&inc.pod_name)
                .await
                .map_err(crate::cluster::ClusterError::from)?
                .and_then(|rs| serde_json::to_value(rs.status?.conditions?).ok());
            failure = replica_failure(of_deployment).or_else(|| replica_failure(of_replicaset));
            if failure.is_none() {
                failure = self.unfinished_job_refused(ns, &inc.pod_name).await?;
            }
            if failure.is_some() {
                break;
            }
        }
        let db = &self.inner.db;
        let Some((reason, message)) = failure else {
            db.finish(
                &inc.id,
                IncidentState::Dismissed,
                &format!(
                    "{workload} creates its pods again (no ReplicaFailure condition any more)"
                ),
            )
            .await?;
            return Ok(());
        };
        let refusal = Refusal::of(&message);
        let signature = format!("failed_create/{}", refusal.cause());
        let evidence = json!({
            "replica_failure": {"reason": reason, "message": message},
            "refusal": refusal,
            "replicaset": inc.pod_name,
        });
        db.set_evidence(&inc.id, &signature, &evidence).await?;
        self.escalate(
            inc,
            workload,
            &refusal.diagnosis(&workload.to_string()),
            &refusal.suggestion(),
        )
        .await
    }
}
