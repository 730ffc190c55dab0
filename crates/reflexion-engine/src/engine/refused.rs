//! A workload whose pods the API server refuses (a ResourceQuota, Pod Security admission, a missing ServiceAccount):
//! there is no pod to diagnose, only the `ReplicaFailure` condition its ReplicaSet and Deployment carry. None of these
//! is changed automatically — a quota or a namespace's security level is someone's decision, an identity is never
//! created — so the incident is handed over naming the quota's numbers, the failed checks or the missing account
//! (`reflexion_core::refusal`).

use super::{Engine, EngineError};
use crate::db::Incident;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::Api;
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
