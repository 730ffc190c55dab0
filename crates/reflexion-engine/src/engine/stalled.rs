//! A workload stopped at a deadline (`reflexion_core::stalled`): when its pods show a failure, that is diagnosed
//! and fixed as any other; when none does (a Job's pods are deleted at its deadline; a rollout may stall with
//! every pod looking fine), the incident is handed over with the controller's own words.

use super::diagnose::Examined;
use super::{Diagnosis, Engine, EngineError};
use crate::db::Incident;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::report::FailureReport;
use reflexion_core::stalled::{READINESS_GATES, Unready, holding, suggestion};
use serde_json::json;

impl Engine {
    pub(in crate::engine) async fn stalled(
        &self,
        inc: &Incident,
        workload: &WorkloadRef,
        report: &FailureReport,
    ) -> Result<Option<Diagnosis>, EngineError> {
        let seen = self.examine(workload, &inc.pod_name, None).await?;
        if let Examined::Failing(d) = seen {
            return Ok(Some(*d));
        }
        let said = report
            .real_k8s_data
            .events
            .first()
            .map(|e| format!("{}: {}", e.reason, e.message))
            .unwrap_or_else(|| report.error_type.clone());
        // Pods that run but are not Ready (a readiness gate nobody sets) fail nothing the families know: their Ready
        // condition says what holds the rollout.
        let unready = self.unready_pods(workload).await;
        let held = holding(&unready);
        let evidence = json!({"stalled": {"object": inc.pod_name, "condition": said, "held_by": held},
                              "owner_chain": report.real_k8s_data.owner_chain});
        self.inner
            .db
            .set_evidence(&inc.id, &inc.signature, &evidence)
            .await?;
        let object = if inc.pod_name == workload.name {
            workload.to_string()
        } else {
            format!("{workload} (its Job {})", inc.pod_name)
        };
        let diagnosis = match &held {
            Some(held) => format!("{object} stopped with no pod failing ({said}); {held}"),
            None => format!("{object} stopped with no pod failing to show why ({said})"),
        };
        let gated = unready.iter().any(|u| u.reason == READINESS_GATES);
        let why = if gated {
            READINESS_GATES
        } else {
            &report.error_type
        };
        self.escalate(inc, workload, &diagnosis, suggestion(why))
            .await?;
        Ok(None)
    }

    /// The workload's current pods that are not Ready, with their Ready condition's words. Unreadable: none.
    async fn unready_pods(&self, workload: &WorkloadRef) -> Vec<Unready> {
        let client = self.scope.cluster.client();
        let pods = match reflexion_k8s::pods::workload_pods(client, workload).await {
            Ok(pods) => pods,
            Err(e) => {
                tracing::warn!(%workload, error = %e, "could not read the stalled workload's pods");
                return Vec::new();
            }
        };
        pods.iter()
            .filter_map(|p| {
                let ready = p
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.status != "True").then(|| Unready {
                    pod: p.metadata.name.clone().unwrap_or_default(),
                    reason: ready.reason.clone().unwrap_or_default(),
                    message: ready.message.clone().unwrap_or_default(),
                })
            })
            .collect()
    }
}
