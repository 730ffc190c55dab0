//! The built-in rules, one file per failure family: each diagnoses its family precisely and proposes the smallest
//! typed fix at the owner, or says why there is none. This file dispatches by family and chooses between rules.

use super::{Engine, Plan, Planned};
use crate::db::Incident;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::strategy::{Record, choose};
use reflexion_core::{Action, Failure, FailureKind, Signature};
use serde_json::Value;

mod crash;
mod image;
mod oom;
mod probe;
mod rollout;
mod scheduling;

impl Engine {
    /// Choose the fix for a failure from the built-in rules.
    pub(in crate::engine) async fn plan(
        &self,
        inc: &Incident,
        failure: &Failure,
        target: &WorkloadRef,
        pod: &str,
        evidence: &Value,
        tried: &[Action],
    ) -> Planned {
        let from_rollout = matches!(
            failure.kind,
            FailureKind::ImagePull | FailureKind::InvalidImageName | FailureKind::CrashLoop
        );
        if from_rollout
            && target.kind == WorkloadKind::Deployment
            && !tried
                .iter()
                .any(|a| matches!(a, Action::RolloutUndo { .. }))
            && let Some(rollback) = self.plan_rollback(failure, target, evidence).await
        {
            // A bad image can also be re-tagged: when both rules apply, the strategies' verified records decide
            // (Thompson sampling, with exploration), so the engine learns which works for this signature.
            if matches!(
                failure.kind,
                FailureKind::ImagePull | FailureKind::InvalidImageName
            ) && let Planned::Plan(retag) = self.plan_image(failure, target, tried).await
            {
                return Planned::Plan(self.pick(failure, vec![rollback, *retag]).await);
            }
            return Planned::Plan(Box::new(rollback));
        }
        match failure.kind {
            FailureKind::ImagePull | FailureKind::InvalidImageName => self.plan_image(failure, target, tried).await,
            FailureKind::OomKilled => self.plan_memory(failure, target, tried).await,
            FailureKind::CrashLoop => match probe::liveness_failing(evidence) {
                Some(message) => self.plan_probe(failure, target, &message, tried).await,
                None => self.diagnose_crash(inc, pod, failure, target, tried).await,
            },
            FailureKind::Evicted => Planned::Escalate {
                diagnosis: format!("the kubelet evicted a pod of {target}: {}", failure.message),
                suggestion: match Signature::of(failure).cause.as_str() {
                    "node_memory_pressure" => "set memory requests close to what the containers use, so the scheduler only places the pod where that memory exists",
                    "ephemeral_storage" => "set ephemeral-storage requests and limits, or write less to the container's filesystem",
                    _ => "read the eviction message and the node's conditions",
                }
                .into(),
            },
            FailureKind::NotReady => Planned::Escalate {
                diagnosis: format!("container {} of {target} runs but never becomes Ready: {}", failure.container, failure.message),
                suggestion: "check that the readiness probe asks a port and path the application serves, and what the application waits for before it is ready".into(),
            },
            FailureKind::ConfigError => Planned::Escalate {
                diagnosis: format!("container {} of {target} cannot be created: {}", failure.container, failure.message),
                suggestion: "create the missing object or key, or correct the reference in the workload; kube-reflexion never invents configuration or secrets".into(),
            },
            FailureKind::Unschedulable => match self
                .plan_requests(failure, target, pod, &Signature::of(failure).cause)
                .await
                .filter(|p| !tried.contains(&p.action))
            {
                Some(plan) => Planned::Plan(Box::new(plan)),
                None => Planned::Escalate {
                diagnosis: format!("no node can run {target}: {}", failure.message),
                suggestion: match Signature::of(failure).cause.as_str() {
                    "insufficient_memory" | "insufficient_cpu" => "lower the pod's resource requests to fit a node, or add capacity",
                    "node_selector" => "correct the nodeSelector/affinity, or label a node to match it",
                    "taint" => "add the matching toleration, or remove the taint from a node",
                    "volume_claim" => "create or bind the PersistentVolumeClaim the pod mounts",
                    _ => "read the scheduler's message and adjust the pod or the nodes",
                }
                .into(),
            }},
        }
    }

    /// Choose among candidate plans by their strategies' records.
    pub(in crate::engine) async fn pick(
        &self,
        failure: &Failure,
        mut candidates: Vec<Plan>,
    ) -> Box<Plan> {
        let signature = Signature::of(failure).class();
        let mut records = Vec::with_capacity(candidates.len());
        for c in &candidates {
            let (successes, failures) = self
                .inner
                .db
                .strategy_record(&signature, &c.template)
                .await
                .unwrap_or((0, 0));
            records.push(Record {
                successes,
                failures,
            });
        }
        let index = {
            let mut rng = rand::rng();
            choose(&records, self.inner.config.exploration_rate, &mut rng).unwrap_or(0)
        };
        let shown: Vec<String> = candidates
            .iter()
            .zip(&records)
            .map(|(c, r)| {
                format!(
                    "{} ({} verified, {} failed)",
                    c.template, r.successes, r.failures
                )
            })
            .collect();
        let mut chosen = candidates.swap_remove(index.min(candidates.len().saturating_sub(1)));
        chosen.rationale = format!(
            "{}; chosen by Thompson sampling among {}",
            chosen.rationale,
            shown.join(", ")
        );
        Box::new(chosen)
    }
}
