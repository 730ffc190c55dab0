//! Workloads that stopped with no failing pod to show why: a Deployment whose rollout passed its progress deadline
//! (`Progressing=False`, reason `ProgressDeadlineExceeded`) while its pods look fine or are gone, and a Job stopped
//! at its `activeDeadlineSeconds` (the job controller's `DeadlineExceeded`: its pods are deleted). When the
//! workload's pods show a failure, that failure is diagnosed and fixed as usual; when none does, the incident is
//! handed over with the controller's words: a deadline is a person's decision, never changed automatically.

/// The watcher's `error_type` for a Deployment past its progress deadline.
pub const PROGRESS_DEADLINE: &str = "ProgressDeadlineExceeded";
/// The watcher's `error_type` (and the job controller's reason) for a Job stopped at its active deadline.
pub const ACTIVE_DEADLINE: &str = "DeadlineExceeded";

/// Whether a report's `error_type` is a stalled workload's.
pub fn is_stalled(error_type: &str) -> bool {
    error_type == PROGRESS_DEADLINE || error_type == ACTIVE_DEADLINE
}

/// The Ready condition's reason when a pod's containers are ready but a readiness gate is not.
pub const READINESS_GATES: &str = "ReadinessGatesNotReady";

/// A pod of the workload that is not Ready: its name and its Ready condition's reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unready {
    pub pod: String,
    pub reason: String,
    pub message: String,
}

/// What holds a stalled rollout whose pods do not fail: its pods' Ready conditions, one line per distinct reason
/// and message (naming one pod and how many more say the same), at most three; `None` when every pod is Ready.
pub fn holding(pods: &[Unready]) -> Option<String> {
    let mut said: Vec<(&Unready, usize)> = Vec::new();
    for p in pods {
        match said
            .iter_mut()
            .find(|(q, _)| q.reason == p.reason && q.message == p.message)
        {
            Some((_, n)) => *n += 1,
            None => said.push((p, 0)),
        }
    }
    if said.is_empty() {
        return None;
    }
    let lines: Vec<String> = said
        .iter()
        .take(3)
        .map(|(p, more)| {
            let others = match more {
                0 => String::new(),
                1 => " (and 1 more pod)".into(),
                n => format!(" (and {n} more pods)"),
            };
            // Read from the cluster: bounded.
            let bounded = |t: &str, max: usize| t.chars().take(max).collect::<String>();
            format!(
                "{}{others}: {}: {}",
                bounded(&p.pod, 253),
                bounded(&p.reason, 64),
                bounded(&p.message, 300)
            )
        })
        .collect();
    Some(format!("pods not Ready: {}", lines.join("; ")))
}

/// What a person is asked to decide for a stalled workload.
pub fn suggestion(error_type: &str) -> &'static str {
    if error_type == READINESS_GATES {
        "the pods run but a readiness gate's condition is not True: it is set by another controller (a load balancer's, a mesh's); check that controller and its view of these pods, or remove the gate from the template"
    } else if error_type == ACTIVE_DEADLINE {
        "the Job ran past its activeDeadlineSeconds with no pod failing: find why the run takes longer than it used to, or raise the deadline if it needs longer; kube-reflexion never changes a deadline"
    } else {
        "the rollout passed its progressDeadlineSeconds with no pod failing: read `kubectl rollout status` and the new ReplicaSet's events; roll back with `kubectl rollout undo` if the new revision is at fault"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(pod: &str, reason: &str, message: &str) -> Unready {
        Unready {
            pod: pod.into(),
            reason: reason.into(),
            message: message.into(),
        }
    }

    #[test]
    fn what_holds_a_rollout_is_said_once_per_reason() {
        let gate = "corresponding condition of pod readiness gate \"x\" does not exist.";
        let cases: Vec<(Vec<Unready>, Option<&str>)> = vec![
            (vec![], None),
            (
                vec![u("web-1", READINESS_GATES, gate)],
                Some(
                    "pods not Ready: web-1: ReadinessGatesNotReady: corresponding condition of pod readiness gate \"x\" does not exist.",
                ),
            ),
            (
                vec![
                    u("web-1", READINESS_GATES, gate),
                    u("web-2", READINESS_GATES, gate),
                    u("web-3", READINESS_GATES, gate),
                ],
                Some(
                    "pods not Ready: web-1 (and 2 more pods): ReadinessGatesNotReady: corresponding condition of pod readiness gate \"x\" does not exist.",
                ),
            ),
            (
                vec![
                    u("a", "R1", "m"),
                    u("b", "R2", "m"),
                    u("c", "R3", "m"),
                    u("d", "R4", "m"),
                ],
                Some("pods not Ready: a: R1: m; b: R2: m; c: R3: m"),
            ),
        ];
        for (pods, want) in cases {
            assert_eq!(holding(&pods).as_deref(), want, "{pods:?}");
        }
        assert!(suggestion(READINESS_GATES).contains("readiness gate"));
        let long = holding(&[u("p", "R", &"x".repeat(5000))]).unwrap_or_default();
        assert_eq!(long.len(), "pods not Ready: p: R: ".len() + 300);
    }
}
