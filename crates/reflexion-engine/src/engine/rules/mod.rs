//! The built-in rules, one file per failure family: each diagnoses its family precisely and proposes the smallest
//! typed fix at the owner, or says why there is none. This file dispatches by family and chooses between rules.

use super::{Engine, Plan, Planned};
use crate::db::Incident;
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::strategy::{Record, choose};
use reflexion_core::{Action, Cause, Failure, FailureKind, ProbeKind, Signature};
use serde_json::Value;

mod crash;
mod image;
mod oom;
pub(in crate::engine) mod probe;
pub(in crate::engine) mod rbac;
mod rollout;
pub(in crate::engine) mod scheduling;
mod service;
mod storage;

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
            FailureKind::ImagePull | FailureKind::InvalidImageName => {
                self.plan_image(failure, target, tried).await
            }
            FailureKind::OomKilled => self.plan_memory(failure, target, tried).await,
            FailureKind::CrashLoop => {
                let cause = Signature::of(failure).cause;
                match probe::liveness_failing(evidence) {
                    Some(message) => {
                        self.plan_probe(
                            failure,
                            target,
                            ProbeKind::Liveness,
                            &message,
                            &known_probes(evidence),
                            tried,
                        )
                        .await
                    }
                    None if cause == Cause::LivenessProbe => {
                        self.plan_probe(
                            failure,
                            target,
                            ProbeKind::Liveness,
                            &failure.message,
                            &known_probes(evidence),
                            tried,
                        )
                        .await
                    }
                    None => self.diagnose_crash(inc, pod, failure, target, tried).await,
                }
            }
            FailureKind::NotReady => {
                self.plan_probe(
                    failure,
                    target,
                    ProbeKind::Readiness,
                    &failure.message,
                    &known_probes(evidence),
                    tried,
                )
                .await
            }
            FailureKind::NoEndpoints => self.plan_service(failure, target, evidence, tried),
            FailureKind::FailedCreate => self.plan_quota(failure, target, evidence, tried),
            // Stalled workloads with a failing pod are diagnosed as that failure (`engine/stalled.rs`).
            FailureKind::Stalled => Planned::Escalate {
                diagnosis: format!("{target} stopped at a deadline: {}", failure.message),
                suggestion: next_step(&Signature::of(failure)).into(),
            },
            FailureKind::Evicted => Planned::Escalate {
                diagnosis: format!("the kubelet evicted a pod of {target}: {}", failure.message),
                suggestion: next_step(&Signature::of(failure)).into(),
            },
            FailureKind::ConfigError => Planned::Escalate {
                diagnosis: format!(
                    "container {} of {target} cannot be created: {}",
                    failure.container, failure.message
                ),
                suggestion: next_step(&Signature::of(failure)).into(),
            },
            FailureKind::Unschedulable => {
                let cause = Signature::of(failure).cause;
                match cause {
                    Cause::NodeSelector | Cause::Taint => {
                        self.plan_placement(failure, target, pod, cause).await
                    }
                    Cause::VolumeClaim => self.plan_claim(failure, target, tried).await,
                    _ => match self
                        .plan_requests(failure, target, pod, cause)
                        .await
                        .filter(|p| !tried.contains(&p.action))
                    {
                        Some(plan) => Planned::Plan(Box::new(plan)),
                        None => Planned::Escalate {
                            diagnosis: format!("no node can run {target}: {}", failure.message),
                            suggestion: next_step(&Signature::of(failure)).into(),
                        },
                    },
                }
            }
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

/// The probe results the evidence carries (those seen in this incident's trials so far).
pub(in crate::engine) fn known_probes(evidence: &Value) -> Vec<probe::ProbeResult> {
    serde_json::from_value(evidence["probes"].clone()).unwrap_or_default()
}

/// What a person should do next about a failure the rules (and trials) could not fix, per family and cause.
pub(in crate::engine) fn next_step(s: &Signature) -> &'static str {
    match (s.kind, s.cause) {
        (FailureKind::ImagePull | FailureKind::InvalidImageName, Cause::AccessDenied) => {
            "check the image's repository name and the pull secret the workload uses"
        }
        (FailureKind::ImagePull | FailureKind::InvalidImageName, _) => {
            "check which image tag the workload is meant to run"
        }
        (FailureKind::OomKilled, _) => {
            "measure how much memory the container needs under load and set its limit to that, or find what makes it grow"
        }
        (FailureKind::CrashLoop, Cause::LivenessProbe) => {
            "point the liveness probe at an endpoint the application serves once it has started (never remove it)"
        }
        (FailureKind::CrashLoop, c) if c.is_command_not_found() => {
            "check that the container's command exists in the image, or drop the override so the image's entrypoint runs"
        }
        (FailureKind::CrashLoop, _) => {
            "read the crashed container's logs and fix the application or its configuration; if the crash began with the latest rollout, roll it back"
        }
        (FailureKind::NotReady, _) => {
            "point the readiness probe at a port and path the application serves, and check what the application waits for before it is ready"
        }
        (FailureKind::ConfigError, _) => {
            "create the missing object or key, or correct the reference in the workload; kube-reflexion never invents configuration or secrets"
        }
        (FailureKind::Evicted, Cause::NodeMemoryPressure) => {
            "set memory requests close to what the containers use, so the scheduler only places the pod where that memory exists"
        }
        (FailureKind::Evicted, Cause::EphemeralStorage) => {
            "set ephemeral-storage requests and limits, or write less to the container's filesystem"
        }
        (FailureKind::Evicted, _) => "read the eviction message and the node's conditions",
        (FailureKind::Unschedulable, Cause::InsufficientMemory | Cause::InsufficientCpu) => {
            "lower the pod's resource requests to fit a node, or add capacity"
        }
        (FailureKind::Unschedulable, Cause::NodeSelector) => {
            "correct the nodeSelector/affinity, or label a node to match it"
        }
        (FailureKind::Unschedulable, Cause::Taint) => {
            "add the matching toleration, or remove the taint from a node"
        }
        (FailureKind::Unschedulable, Cause::VolumeClaim) => {
            "create or bind the PersistentVolumeClaim the pod mounts"
        }
        (FailureKind::Unschedulable, _) => {
            "read the scheduler's message and adjust the pod or the nodes"
        }
        (FailureKind::FailedCreate, Cause::Quota) => {
            "lower the pod template's requests (or replicas) to fit the ResourceQuota, or raise its hard limits"
        }
        (FailureKind::FailedCreate, _) => {
            "read the workload's FailedCreate events and fix the pod template; kube-reflexion never weakens a namespace's security level or creates identities"
        }
        (FailureKind::NoEndpoints, Cause::TargetPort) => {
            "point the Service port's targetPort at a port name or number its pods declare"
        }
        (FailureKind::NoEndpoints, _) => {
            "set the Service's selector to the labels of the pods it should send traffic to"
        }
        (FailureKind::Stalled, Cause::ActiveDeadline) => {
            reflexion_core::stalled::suggestion(reflexion_core::stalled::ACTIVE_DEADLINE)
        }
        (FailureKind::Stalled, _) => {
            reflexion_core::stalled::suggestion(reflexion_core::stalled::PROGRESS_DEADLINE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_step_after_the_last_trial_is_the_familys_own() {
        let sig = Signature::new;
        let cases = [
            (sig(FailureKind::ImagePull, Cause::NotFound), "image tag"),
            (sig(FailureKind::OomKilled, Cause::MemoryLimit), "memory"),
            (
                sig(FailureKind::CrashLoop, Cause::LivenessProbe),
                "liveness probe",
            ),
            (sig(FailureKind::CrashLoop, Cause::Exit(127)), "command"),
            (
                sig(FailureKind::NotReady, Cause::ReadinessProbe),
                "readiness probe",
            ),
            (sig(FailureKind::Unschedulable, Cause::Taint), "toleration"),
            (
                sig(FailureKind::NoEndpoints, Cause::TargetPort),
                "targetPort",
            ),
            (
                sig(FailureKind::Unschedulable, Cause::VolumeClaim),
                "PersistentVolumeClaim",
            ),
        ];
        for (s, want) in cases {
            assert!(next_step(&s).contains(want), "{s}: {}", next_step(&s));
            if s.kind != FailureKind::ImagePull {
                assert!(!next_step(&s).contains("image tag"), "{s}");
            }
        }
    }
}
