//! A workload stopped at a deadline (`reflexion_core::stalled`): when its pods show a failure, that is diagnosed
//! and fixed as any other; when none does (a Job's pods are deleted at its deadline; a rollout may stall with
//! every pod looking fine), the incident is handed over with the controller's own words.

use super::diagnose::Examined;
use super::{Diagnosis, Engine, EngineError};
use crate::db::Incident;
use reflexion_core::owner::WorkloadRef;
use reflexion_core::report::FailureReport;
use reflexion_core::stalled::suggestion;
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
        let evidence = json!({"stalled": {"object": inc.pod_name, "condition": said},
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
        self.escalate(
            inc,
            workload,
            &format!("{object} stopped with no pod failing to show why ({said})"),
            suggestion(&report.error_type),
        )
        .await?;
        Ok(None)
    }
}
