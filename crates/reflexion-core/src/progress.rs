//! Progress between trials. A workload can have several faults, and fixing one only reveals the next: a liveness
//! probe that kills the container hides a readiness probe that never passes. After a change that was not verified,
//! the engine looks again and judges the change by what the pods that can prove it show now.
//!
//! A pod goes through stages in order: scheduled, image pulled, container started, running without dying, Ready.
//! A change made **progress** when the cause it was meant to fix no longer shows and a different cause, at the same
//! stage or a later one (or one that showed before the change too), does: it is kept, and the next trial works on
//! the new cause. It made things **worse** when what shows now stops the pod at an earlier stage and did not show
//! before (a fix for a crash that leaves the image unpullable): it is reverted. Otherwise (the original cause still shows, or nothing shows at all) it made **no progress**: reverted.

use crate::classify::{PodEvent, classify, is_ready};
use crate::{Cause, FailureKind, Signature};
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

/// How far a pod gets before a cause stops it, earliest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// No node takes it.
    Scheduling,
    /// Its image cannot be pulled.
    Image,
    /// Its container cannot be created or started (configuration, a command the image lacks).
    Start,
    /// It starts and then dies (crash, OOM kill, liveness kill, eviction).
    Running,
    /// It runs and never becomes Ready.
    Ready,
}

/// The stage a cause stops a pod at.
pub fn stage(s: &Signature) -> Stage {
    match s.kind {
        // Refused at admission: not even scheduled.
        FailureKind::Unschedulable | FailureKind::FailedCreate => Stage::Scheduling,
        FailureKind::ImagePull | FailureKind::InvalidImageName => Stage::Image,
        FailureKind::ConfigError => Stage::Start,
        // The runtime could not exec the command: the program never ran.
        FailureKind::CrashLoop if s.cause.is_command_not_found() => Stage::Start,
        FailureKind::CrashLoop | FailureKind::OomKilled | FailureKind::Evicted => Stage::Running,
        // A Service selecting no pod: the pods may run and be Ready; nobody reaches them.
        FailureKind::NotReady | FailureKind::NoEndpoints => Stage::Ready,
        // Stopped by a deadline while running.
        FailureKind::Stalled => Stage::Running,
    }
}

/// What a change did, judged after its verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The original cause is gone and a different one, no earlier, shows: keep the change.
    Progress,
    /// The original cause still shows, or nothing shows: revert.
    NoProgress,
    /// What shows now stops the pod at an earlier stage: revert.
    Worse,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Progress => "progress",
            Self::NoProgress => "no progress",
            Self::Worse => "worse",
        }
    }
}

/// Judge a change by the causes that show now on the pods that can prove it, given those that showed before it. A
/// cause that already showed before is not one the change introduced: a readiness fix on a pod whose liveness probe
/// also fails leaves the liveness kills, and that is the next fault, not a worse state.
pub fn judge(original: &Signature, before: &[Signature], now: &[Signature]) -> Verdict {
    if now.is_empty() || now.contains(original) {
        return Verdict::NoProgress;
    }
    if now
        .iter()
        .any(|s| stage(s) < stage(original) && !before.contains(s))
    {
        return Verdict::Worse;
    }
    Verdict::Progress
}

/// Every cause a pod shows: its classified failure, and probes failing in its events that have not (yet) become
/// the failure — a liveness probe failing before the kubelet kills the container, a readiness probe failing on a
/// pod that is not Ready.
pub fn symptoms(pod: &Pod, events: &[PodEvent]) -> Vec<Signature> {
    let mut out: Vec<Signature> = classify(pod, events).iter().map(Signature::of).collect();
    let failing = |prefix: &str| {
        events
            .iter()
            .any(|e| e.reason == "Unhealthy" && e.message.starts_with(prefix))
    };
    let mut add = |kind: FailureKind, cause: Cause| {
        let s = Signature::new(kind, cause);
        if !out.contains(&s) {
            out.push(s);
        }
    };
    if failing("Liveness probe failed") {
        add(FailureKind::CrashLoop, Cause::LivenessProbe);
    }
    if failing("Readiness probe failed") && !is_ready(pod) {
        add(FailureKind::NotReady, Cause::ReadinessProbe);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sig(kind: FailureKind, cause: &str) -> Signature {
        Signature::new(kind, cause.parse().unwrap_or(Cause::Other))
    }

    #[test]
    fn stages_are_ordered_as_a_pod_goes_through_them() {
        let cases = [
            (
                sig(FailureKind::Unschedulable, "node_selector"),
                Stage::Scheduling,
            ),
            (sig(FailureKind::ImagePull, "not_found"), Stage::Image),
            (
                sig(FailureKind::InvalidImageName, "invalid_reference"),
                Stage::Image,
            ),
            (
                sig(FailureKind::ConfigError, "missing_secret"),
                Stage::Start,
            ),
            (sig(FailureKind::CrashLoop, "exit_127"), Stage::Start),
            (sig(FailureKind::CrashLoop, "start_error"), Stage::Start),
            (sig(FailureKind::CrashLoop, "exit_1"), Stage::Running),
            (
                sig(FailureKind::CrashLoop, "liveness_probe"),
                Stage::Running,
            ),
            (sig(FailureKind::OomKilled, "memory_limit"), Stage::Running),
            (
                sig(FailureKind::Evicted, "node_memory_pressure"),
                Stage::Running,
            ),
            (sig(FailureKind::NotReady, "readiness_probe"), Stage::Ready),
        ];
        for (s, want) in cases {
            assert_eq!(stage(&s), want, "{s}");
        }
        assert!(Stage::Scheduling < Stage::Image && Stage::Running < Stage::Ready);
    }

    #[test]
    fn a_change_is_judged_by_what_shows_after_it() {
        let liveness = sig(FailureKind::CrashLoop, "liveness_probe");
        let readiness = sig(FailureKind::NotReady, "readiness_probe");
        let not_found = sig(FailureKind::ImagePull, "not_found");
        let exit_1 = sig(FailureKind::CrashLoop, "exit_1");
        let oom = sig(FailureKind::OomKilled, "memory_limit");
        let selector = sig(FailureKind::Unschedulable, "node_selector");
        let cases = [
            // Both probes wrong: fixing liveness reveals readiness...
            (&liveness, vec![readiness.clone()], Verdict::Progress),
            // ...and fixing readiness first leaves the liveness kills that were there all along.
            (&readiness, vec![liveness.clone()], Verdict::Progress),
            // The original cause still shows, alone or with another.
            (&liveness, vec![liveness.clone()], Verdict::NoProgress),
            (
                &liveness,
                vec![liveness.clone(), readiness.clone()],
                Verdict::NoProgress,
            ),
            // Nothing shows: not verified, and no evidence the change did anything.
            (&liveness, vec![], Verdict::NoProgress),
            // A different cause at the same stage: the next fault of a workload with several.
            (&exit_1, vec![oom.clone()], Verdict::Progress),
            // Scheduled at last, now the image: a later stage.
            (&selector, vec![not_found.clone()], Verdict::Progress),
            // A crash fix that breaks the image, a readiness fix that makes it crash: earlier stages.
            (&exit_1, vec![not_found.clone()], Verdict::Worse),
            (&readiness, vec![exit_1.clone()], Verdict::Worse),
            (
                &readiness,
                vec![not_found.clone(), liveness.clone()],
                Verdict::Worse,
            ),
            (
                &oom,
                vec![readiness.clone(), selector.clone()],
                Verdict::Worse,
            ),
        ];
        for (original, now, want) in cases {
            // Before the change, the original cause showed, and with readiness also the liveness failures.
            let before = if *original == readiness {
                vec![readiness.clone(), liveness.clone()]
            } else {
                vec![original.clone()]
            };
            assert_eq!(
                judge(original, &before, &now),
                want,
                "{original} -> {now:?}"
            );
        }
    }

    #[test]
    fn symptoms_include_probes_failing_before_they_become_the_failure() {
        let pod = |ready: bool| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
                "containerStatuses": [{"name": "web", "image": "nginx", "imageID": "", "ready": ready,
                    "restartCount": 0, "state": {"running": {}}}]}}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let ev = |message: &str, count: i32| PodEvent {
            type_: "Warning".into(),
            reason: "Unhealthy".into(),
            message: message.into(),
            count,
        };
        let live = ev(
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
            1,
        );
        let ready = ev(
            "Readiness probe failed: HTTP probe failed with statuscode: 404",
            3,
        );
        let cases = [
            (false, vec![], vec![]),
            (
                false,
                vec![ready.clone()],
                vec![sig(FailureKind::NotReady, "readiness_probe")],
            ),
            (
                false,
                vec![live.clone(), ready.clone()],
                vec![
                    sig(FailureKind::NotReady, "readiness_probe"),
                    sig(FailureKind::CrashLoop, "liveness_probe"),
                ],
            ),
            // Ready now: early readiness failures during start-up are not a cause.
            (true, vec![ready], vec![]),
            (
                true,
                vec![live],
                vec![sig(FailureKind::CrashLoop, "liveness_probe")],
            ),
        ];
        for (is_ready, events, want) in cases {
            let mut got = symptoms(&pod(is_ready), &events);
            got.sort_by_key(|s| s.to_string());
            let mut want = want;
            want.sort_by_key(|s| s.to_string());
            assert_eq!(got, want, "{is_ready} {events:?}");
        }
    }
}
