//! A workload whose pods the API server refuses (a ResourceQuota, Pod Security admission, a missing ServiceAccount):
//! there is no pod to diagnose, only the `ReplicaFailure` condition its ReplicaSet and Deployment carry (or, for a
//! Job, its newest `FailedCreate` Event while it has not finished). A quota or a namespace's security level is
//! someone's decision and an identity is never created, so none of them is changed: a Deployment over its quota
//! gets its requests lowered to fit (`set_requests`, high risk: approval), where every replica fits and no request
//! is cut by more than half; everything else is handed over naming the quota's numbers, the failed checks or the
//! missing account (`reflexion_core::refusal`).

use super::{Diagnosis, Engine, EngineError, Plan, Planned};
use crate::db::Incident;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::quantity::{parse_bytes, parse_millicores};
use reflexion_core::refusal::{FAILED_CREATE, Fit, Refusal, Requests, fit};
use reflexion_core::strategy::PlanSource;
use reflexion_core::{Action, Failure, FailureKind, IncidentState, Signature};
use serde_json::{Value, json};
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

    /// A Deployment over its quota: the diagnosis the trial loop plans `set_requests` from. Anything else the API
    /// server refuses: the incident handed over (or dismissed when the workload creates its pods again), `None`.
    pub(in crate::engine) async fn refused_pods(
        &self,
        inc: &Incident,
        workload: &WorkloadRef,
    ) -> Result<Option<Diagnosis>, EngineError> {
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
            return Ok(None);
        };
        let refusal = Refusal::of(&message);
        let signature = format!("failed_create/{}", refusal.cause());
        let mut evidence = json!({
            "replica_failure": {"reason": reason, "message": message},
            "refusal": refusal,
            "replicaset": inc.pod_name,
        });
        if let (Refusal::Quota { over, .. }, WorkloadKind::Deployment) = (&refusal, workload.kind)
            && let Some(d) = Api::<Deployment>::namespaced(client, ns)
                .get_opt(&workload.name)
                .await
                .map_err(crate::cluster::ClusterError::from)?
        {
            let fitted = fit(
                over,
                d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(1) as u64,
                &requests(&d),
            );
            evidence["fit"] = match &fitted {
                Ok(f) => json!(f),
                Err(why) => json!({"not_proposed": why}),
            };
            let failure = Failure {
                kind: FailureKind::FailedCreate,
                reason: FAILED_CREATE.into(),
                container: fitted.map(|f| f.container).unwrap_or_default(),
                init_container: false,
                image: String::new(),
                message,
                exit_code: None,
            };
            evidence["failure"] = json!(failure);
            let symptoms = vec![Signature::of(&failure)];
            return Ok(Some(Diagnosis {
                failure,
                target: workload.clone(),
                evidence,
                pod: inc.pod_name.clone(),
                symptoms,
                probes: Vec::new(),
            }));
        }
        db.set_evidence(&inc.id, &signature, &evidence).await?;
        self.escalate(
            inc,
            workload,
            &refusal.diagnosis(&workload.to_string()),
            &refusal.suggestion(),
        )
        .await?;
        Ok(None)
    }

    /// The requests the diagnosis fitted to the quota, unless tried; else hand over with the quota's numbers and
    /// why no fit is proposed.
    pub(in crate::engine) fn plan_quota(
        &self,
        failure: &Failure,
        target: &WorkloadRef,
        evidence: &Value,
        tried: &[Action],
    ) -> Planned {
        let refusal = Refusal::of(&failure.message);
        let diagnosis = refusal.diagnosis(&target.to_string());
        let fitted: Option<Fit> = serde_json::from_value(evidence["fit"].clone()).ok();
        let not = |why: &str| Planned::Escalate {
            diagnosis: format!("{diagnosis}; lowering requests to fit is not proposed: {why}"),
            suggestion: refusal.suggestion(),
        };
        let Some(f) = fitted else {
            return not(evidence["fit"]["not_proposed"]
                .as_str()
                .unwrap_or("the pod template's requests are unknown"));
        };
        let action = Action::SetRequests {
            target: target.clone(),
            container: f.container.clone(),
            memory: f.memory.clone(),
            cpu: f.cpu.clone(),
        };
        if tried.contains(&action) {
            return not("the lowered requests were tried and did not hold");
        }
        Planned::Plan(Box::new(Plan {
            action,
            source: PlanSource::Rules,
            rationale: format!("{diagnosis}; {}", f.why),
            template: "set_requests:fit_quota".into(),
            description: "Lower one container's requests so that every replica fits the namespace's ResourceQuota (needs approval by default)".into(),
            llm: Value::Null,
            payload: None,
            proposal: None,
        }))
    }
}

/// The requests each container of a Deployment's template sets.
fn requests(d: &Deployment) -> Vec<Requests> {
    d.spec
        .iter()
        .flat_map(|s| s.template.spec.iter())
        .flat_map(|p| p.containers.iter())
        .map(|c| {
            let get = |r: &str| {
                c.resources
                    .as_ref()
                    .and_then(|res| res.requests.as_ref())
                    .and_then(|m| m.get(r))
                    .map(|q| q.0.clone())
            };
            Requests {
                container: c.name.clone(),
                memory: get("memory").as_deref().and_then(parse_bytes),
                cpu: get("cpu").as_deref().and_then(parse_millicores),
            }
        })
        .collect()
}
