//! Diagnosis: the evidence a plan starts from, read live from the pods that can prove a fix.

use super::{Diagnosis, Engine, EngineError};
use crate::db::Incident;
use kube::ResourceExt;
use reflexion_core::classify;
use reflexion_core::classify::recovered;
use reflexion_core::owner::{WorkloadKind, WorkloadRef, fix_target};
use reflexion_core::report::FailureReport;
use serde_json::json;

impl Engine {
    /// Read the evidence: a pod that can prove the fix (the reported one while it is live and of the workload's
    /// current revision, else a current pod of the workload, a failing one first), its events and owner chain.
    /// Classify from live evidence, falling back to the report's pod when the failure is between two kubelet
    /// retries or the container is up between two deaths (a pod has only recovered when it is Ready and nothing
    /// died in it recently). `None` when there is nothing (left) to fix.
    pub(in crate::engine) async fn diagnose(
        &self,
        inc: &Incident,
    ) -> Result<Option<Diagnosis>, EngineError> {
        let (db, cluster) = (&self.inner.db, &self.inner.cluster);
        let report: FailureReport = match serde_json::from_value(inc.report.clone()) {
            Ok(r) => r,
            Err(e) => {
                db.finish(&inc.id, "failed", &format!("stored report unreadable: {e}"))
                    .await?;
                return Ok(None);
            }
        };
        let workload = WorkloadRef::new(
            WorkloadKind::parse(&inc.workload_kind).unwrap_or(WorkloadKind::Pod),
            &inc.namespace,
            &inc.workload_name,
        );
        let current = cluster.current_pods(&workload).await?;
        let pod = match current.iter().find(|p| p.name_any() == inc.pod_name) {
            Some(reported) => Some(reported.clone()),
            None => {
                let mut found = None;
                for p in &current {
                    if classify(p, &cluster.pod_events(p).await?).is_some() {
                        found = Some(p.clone());
                        break;
                    }
                }
                found.or_else(|| current.first().cloned())
            }
        };
        let Some(pod) = pod else {
            let why = match workload.kind {
                WorkloadKind::Pod => format!(
                    "pod {}/{} no longer exists or is being deleted",
                    inc.namespace, inc.pod_name
                ),
                _ => format!(
                    "{workload} has no live pod of its current revision; the failure was reported on pod {}",
                    inc.pod_name
                ),
            };
            db.finish(&inc.id, "dismissed", &why).await?;
            return Ok(None);
        };
        let pod_name = pod.name_any();
        let events = cluster.pod_events(&pod).await?;
        let chain = cluster.owner_chain(&pod).await?;
        let failure = classify(&pod, &events).or_else(|| {
            let reported: k8s_openapi::api::core::v1::Pod =
                serde_json::from_value(report.real_k8s_data.pod.clone()?).ok()?;
            if reported.metadata.uid != pod.metadata.uid
                || recovered(&pod, k8s_openapi::jiff::Timestamp::now())
            {
                None
            } else {
                classify(&reported, &events)
            }
        });
        let evidence = json!({
            "pod": {"name": pod_name, "phase": pod.status.as_ref().and_then(|s| s.phase.clone()),
                    "node": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    "container_statuses": pod.status.as_ref().and_then(|s| s.container_statuses.clone())},
            "events": events,
            "owner_chain": chain,
            "failure": failure,
        });
        let Some(failure) = failure else {
            db.set_evidence(&inc.id, &inc.signature, &evidence).await?;
            db.finish(
                &inc.id,
                "dismissed",
                "the pod shows no failure any more (recovered before any action)",
            )
            .await?;
            return Ok(None);
        };
        let Some(target) = fix_target(&inc.namespace, &chain) else {
            db.set_evidence(&inc.id, &inc.signature, &evidence).await?;
            db.finish(&inc.id, "escalated", "the pod is owned by a controller kube-reflexion does not manage; fix it at that controller").await?;
            return Ok(None);
        };
        Ok(Some(Diagnosis {
            failure,
            target,
            evidence,
            pod: pod_name,
        }))
    }
}
