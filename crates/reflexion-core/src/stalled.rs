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

/// What a person is asked to decide for a stalled workload.
pub fn suggestion(error_type: &str) -> &'static str {
    if error_type == ACTIVE_DEADLINE {
        "the Job ran past its activeDeadlineSeconds with no pod failing: find why the run takes longer than it used to, or raise the deadline if it needs longer; kube-reflexion never changes a deadline"
    } else {
        "the rollout passed its progressDeadlineSeconds with no pod failing: read `kubectl rollout status` and the new ReplicaSet's events; roll back with `kubectl rollout undo` if the new revision is at fault"
    }
}
