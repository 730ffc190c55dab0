//! Diagnosis: the evidence a plan starts from, read live from the pods that can prove a fix — at the start of an
//! incident and again after every trial that was not verified.

use super::rules::probe::{ProbeResult, observe};
use super::{Diagnosis, Engine, EngineError};
use crate::db::Incident;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use reflexion_core::IncidentState;
use reflexion_core::classify::{LIVENESS_KILL, PodEvent, recovered};
use reflexion_core::owner::{WorkloadKind, WorkloadRef, fix_target};
use reflexion_core::progress::symptoms;
use reflexion_core::report::FailureReport;
use reflexion_core::{Failure, FailureKind, Signature, classify};
use serde_json::{Value, json};

/// Pods of one workload read per examination: enough to see every cause, bounded for large Deployments.
const MAX_PODS_EXAMINED: usize = 10;

/// What one look at a workload found.
pub(in crate::engine) enum Examined {
    /// A pod that can prove the fix shows a failure.
    Failing(Box<Diagnosis>),
    /// Live pods, none failing (the causes their events show are kept, for judging progress).
    Quiet {
        symptoms: Vec<Signature>,
        evidence: Value,
    },
    /// No live pod of the workload's current revision.
    NoPods,
    /// The failing pod is owned by a controller kube-reflexion does not manage.
    Unmanaged(Value),
}

impl Examined {
    /// Every cause the workload's pods show now.
    pub(in crate::engine) fn symptoms(&self) -> &[Signature] {
        match self {
            Self::Failing(d) => &d.symptoms,
            Self::Quiet { symptoms, .. } => symptoms,
            Self::NoPods | Self::Unmanaged(_) => &[],
        }
    }
}

impl Engine {
    /// The incident's first diagnosis; `None` (with the incident finished) when there is nothing (left) to fix.
    /// The report's pod stands in for live evidence when the failure is between two kubelet retries or the
    /// container is up between two deaths (a pod has only recovered when it is Ready and nothing died in it
    /// recently).
    pub(in crate::engine) async fn diagnose(
        &self,
        inc: &Incident,
    ) -> Result<Option<Diagnosis>, EngineError> {
        let db = &self.inner.db;
        let report: FailureReport = match serde_json::from_value(inc.report.clone()) {
            Ok(r) => r,
            Err(e) => {
                db.finish(
                    &inc.id,
                    IncidentState::Failed,
                    &format!("stored report unreadable: {e}"),
                )
                .await?;
                return Ok(None);
            }
        };
        let reported: Option<Pod> = report
            .real_k8s_data
            .pod
            .clone()
            .and_then(|p| serde_json::from_value(p).ok());
        let workload = WorkloadRef::new(
            WorkloadKind::parse(&inc.workload_kind).unwrap_or(WorkloadKind::Pod),
            &inc.namespace,
            &inc.workload_name,
        );
        if report.error_type == reflexion_core::refusal::FAILED_CREATE {
            return self.refused_pods(inc, &workload).await;
        }
        if reflexion_core::stalled::is_stalled(&report.error_type) {
            return self.stalled(inc, &workload, &report).await;
        }
        match self
            .examine(&workload, &inc.pod_name, reported.as_ref())
            .await?
        {
            Examined::Failing(d) => Ok(Some(*d)),
            Examined::NoPods => {
                let why = match workload.kind {
                    WorkloadKind::Service => format!("{workload} no longer exists"),
                    WorkloadKind::Pod => format!(
                        "pod {}/{} no longer exists or is being deleted",
                        inc.namespace, inc.pod_name
                    ),
                    _ => format!(
                        "{workload} has no live pod of its current revision; the failure was reported on pod {}",
                        inc.pod_name
                    ),
                };
                db.finish(&inc.id, IncidentState::Dismissed, &why).await?;
                Ok(None)
            }
            Examined::Quiet { evidence, .. } => {
                db.set_evidence(&inc.id, &inc.signature, &evidence).await?;
                let why = match workload.kind {
                    WorkloadKind::Service => {
                        format!("{workload} selects pods now (recovered before any action)")
                    }
                    _ => "the pod shows no failure any more (recovered before any action)".into(),
                };
                db.finish(&inc.id, IncidentState::Dismissed, &why).await?;
                Ok(None)
            }
            Examined::Unmanaged(evidence) => {
                db.set_evidence(&inc.id, &inc.signature, &evidence).await?;
                db.finish(&inc.id, IncidentState::Escalated, "the pod is owned by a controller kube-reflexion does not manage; fix it at that controller").await?;
                Ok(None)
            }
        }
    }

    /// Look at a workload now: its live pods of the current revision (the preferred one first, else a failing
    /// one), the causes they show, and the failing pod's events, owner chain and probe results. Never finishes
    /// the incident: after a trial, what it sees decides whether the change made progress.
    pub(in crate::engine) async fn examine(
        &self,
        workload: &WorkloadRef,
        preferred: &str,
        reported: Option<&Pod>,
    ) -> Result<Examined, EngineError> {
        if workload.kind == WorkloadKind::Service {
            return self.examine_service(workload).await;
        }
        let cluster = &self.scope.cluster;
        let mut pods: Vec<(Pod, Vec<PodEvent>)> = Vec::new();
        for p in cluster
            .current_pods(workload)
            .await?
            .into_iter()
            .take(MAX_PODS_EXAMINED)
        {
            let events = cluster.pod_events(&p).await?;
            pods.push((p, events));
        }
        let mut all: Vec<Signature> = Vec::new();
        for (p, events) in &pods {
            for s in symptoms(p, events) {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
        }
        let chosen = pods
            .iter()
            .position(|(p, _)| p.name_any() == preferred)
            .or_else(|| {
                pods.iter()
                    .position(|(p, events)| classify(p, events).is_some())
            });
        let Some((pod, events)) = chosen.or((!pods.is_empty()).then_some(0)).map(|i| &pods[i])
        else {
            return Ok(Examined::NoPods);
        };
        let pod_name = pod.name_any();
        let chain = cluster.owner_chain(pod).await?;
        let failure = classify(pod, events)
            .or_else(|| {
                let reported = reported?;
                if reported.metadata.uid != pod.metadata.uid
                    || recovered(pod, k8s_openapi::jiff::Timestamp::now())
                {
                    None
                } else {
                    classify(reported, events)
                }
            })
            .or_else(|| about_to_be_killed(pod, events));
        let probes: Vec<ProbeResult> = observe(pod, events, k8s_openapi::jiff::Timestamp::now());
        let evidence = json!({
            "pod": {"name": pod_name, "phase": pod.status.as_ref().and_then(|s| s.phase.clone()),
                    "node": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    "container_statuses": pod.status.as_ref().and_then(|s| s.container_statuses.clone())},
            "events": events,
            "owner_chain": chain,
            "failure": failure,
            "probes": probes,
            "causes_showing": all.iter().map(Signature::class).collect::<Vec<_>>(),
        });
        let Some(failure) = failure else {
            return Ok(Examined::Quiet {
                symptoms: all,
                evidence,
            });
        };
        let Some(target) = fix_target(&workload.namespace, &chain) else {
            return Ok(Examined::Unmanaged(evidence));
        };
        Ok(Examined::Failing(Box::new(Diagnosis {
            failure,
            target,
            evidence,
            pod: pod_name,
            symptoms: all,
            probes,
        })))
    }
}

/// A running container whose liveness probe fails but which the kubelet has not killed yet: the failure it is
/// about to have.
fn about_to_be_killed(pod: &Pod, events: &[PodEvent]) -> Option<Failure> {
    let probe = events
        .iter()
        .rev()
        .find(|e| e.reason == "Unhealthy" && e.message.starts_with("Liveness probe failed"))?;
    let c = pod
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.liveness_probe.is_some())?;
    Some(Failure {
        kind: FailureKind::CrashLoop,
        reason: "Unhealthy".into(),
        container: c.name.clone(),
        init_container: false,
        image: c.image.clone().unwrap_or_default(),
        message: format!(
            "container {} is about to be {LIVENESS_KILL}: {}",
            c.name, probe.message
        ),
        exit_code: None,
    })
}
