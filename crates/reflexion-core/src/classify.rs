//! What is wrong with a pod, as a pure function of the Pod object and its recent events.

use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use serde::{Deserialize, Serialize};

/// A failure family: what kind of fix could apply. The kubelet's raw reason is kept in [`Failure::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`.
    ImagePull,
    /// `InvalidImageName`: the reference cannot even be parsed.
    InvalidImageName,
    /// The container was killed for using more memory than its limit (`OOMKilled`, exit 137), now or last time.
    OomKilled,
    /// The container keeps exiting (`CrashLoopBackOff`, or `Error` with restartPolicy Never).
    CrashLoop,
    /// The container cannot be created from its configuration (`CreateContainerConfigError`, `CreateContainerError`).
    ConfigError,
    /// No node can take the pod (`PodScheduled=False/Unschedulable`).
    Unschedulable,
    /// The kubelet evicted the pod (node memory or disk pressure): phase `Failed`, reason `Evicted`.
    Evicted,
    /// Running, but never Ready: the readiness probe keeps failing (`Unhealthy` events).
    NotReady,
    /// A Service has no endpoints because its selector matches no pod (`crate::service`): no pod fails.
    NoEndpoints,
    /// The API server refuses a workload's pods (`FailedCreate`: a ResourceQuota, Pod Security, a missing
    /// ServiceAccount; `crate::refusal`): no pod exists.
    FailedCreate,
    /// A workload stopped at a deadline with no failing pod to show why (`crate::stalled`).
    Stalled,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImagePull => "image_pull",
            Self::InvalidImageName => "invalid_image_name",
            Self::OomKilled => "oom_killed",
            Self::CrashLoop => "crash_loop",
            Self::ConfigError => "config_error",
            Self::Unschedulable => "unschedulable",
            Self::Evicted => "evicted",
            Self::NotReady => "not_ready",
            Self::NoEndpoints => "no_endpoints",
            Self::FailedCreate => "failed_create",
            Self::Stalled => "stalled",
        }
    }

    /// The reason the whole family is known by (`kubectl get pods` settles on it), used as a strategy's `type`.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::ImagePull => "ImagePullBackOff",
            Self::InvalidImageName => "InvalidImageName",
            Self::OomKilled => "OOMKilled",
            Self::CrashLoop => "CrashLoopBackOff",
            Self::ConfigError => "CreateContainerConfigError",
            Self::Unschedulable => "Unschedulable",
            Self::Evicted => "Evicted",
            Self::NotReady => "Unhealthy",
            Self::NoEndpoints => crate::service::NO_ENDPOINTS,
            Self::FailedCreate => crate::refusal::FAILED_CREATE,
            Self::Stalled => crate::stalled::PROGRESS_DEADLINE,
        }
    }
}

/// A pod event, reduced to what classification and evidence need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodEvent {
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
    #[serde(default)]
    pub count: i32,
}

/// The most recent `limit` events, oldest first, with messages bounded for reports and evidence.
pub fn recent_events(mut events: Vec<Event>, limit: usize) -> Vec<PodEvent> {
    events.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    let skip = events.len().saturating_sub(limit);
    events.into_iter().skip(skip).map(PodEvent::from).collect()
}

impl From<Event> for PodEvent {
    /// The event, with its message bounded for reports and evidence.
    fn from(e: Event) -> Self {
        Self {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e
                .message
                .unwrap_or_default()
                .chars()
                .take(crate::report::MAX_MESSAGE_CHARS)
                .collect(),
            count: e.count.unwrap_or(1),
        }
    }
}

/// One classified failure of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// The kubelet's reason, as `kubectl get pods` shows it (`ImagePullBackOff`).
    pub reason: String,
    pub container: String,
    pub init_container: bool,
    pub image: String,
    /// The most specific message available: a `Failed` event's text beats the generic back-off message.
    pub message: String,
    /// Exit code of the last terminated instance, for crashes and OOM kills.
    #[serde(default)]
    pub exit_code: Option<i32>,
}

/// Classify a pod. An evicted pod is evicted, whatever its containers show; then init containers come first (the app
/// containers cannot start until they succeed), then app containers in spec order; the first failing container is
/// the failure. A pod no node accepts comes next, and last a running pod whose readiness probe keeps failing.
pub fn classify(pod: &Pod, events: &[PodEvent]) -> Option<Failure> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") && status.reason.as_deref() == Some("Evicted") {
        let first = pod.spec.as_ref().and_then(|s| s.containers.first());
        return Some(Failure {
            kind: FailureKind::Evicted,
            reason: "Evicted".into(),
            container: first.map(|c| c.name.clone()).unwrap_or_default(),
            init_container: false,
            image: first.and_then(|c| c.image.clone()).unwrap_or_default(),
            message: status.message.clone().unwrap_or_default(),
            exit_code: None,
        });
    }
    let init = status
        .init_container_statuses
        .iter()
        .flatten()
        .map(|s| (s, true));
    let app = status
        .container_statuses
        .iter()
        .flatten()
        .map(|s| (s, false));
    let containers: Vec<(&ContainerStatus, bool)> = init.chain(app).collect();
    // Precedence: a container that cannot even get its image, then one killed for memory, then one crashing, then
    // one that cannot be created; a pod no node accepts has no container status at all.
    for rank in [
        FailureKind::ImagePull,
        FailureKind::OomKilled,
        FailureKind::CrashLoop,
        FailureKind::ConfigError,
    ] {
        let found = containers.iter().find_map(|(cs, init)| {
            classify_container(cs, *init, events).filter(|f| same_rank(f.kind, rank))
        });
        if found.is_some() {
            return found;
        }
    }
    unschedulable(pod).or_else(|| not_ready(pod, &containers, events))
}

/// How long after a container's last termination a pod that looks healthy is still not "recovered": a container
/// killed by its liveness probe, or one that crashes after a while, is Running and Ready between two deaths.
pub const RECOVERY_WINDOW_SECS: i64 = 120;

/// Whether a pod that was reported failing has recovered by itself: Ready, and no container terminated within
/// [`RECOVERY_WINDOW_SECS`] of `now`. Without that evidence a reported failure still stands.
pub fn recovered(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let recent_death = status
        .container_statuses
        .iter()
        .chain(status.init_container_statuses.iter())
        .flatten()
        .filter_map(|cs| cs.last_state.as_ref()?.terminated.as_ref())
        .any(|t| {
            t.finished_at.as_ref().is_none_or(|at| {
                now.as_second().saturating_sub(at.0.as_second()) < RECOVERY_WINDOW_SECS
            })
        });
    is_ready(pod) && !recent_death
}

/// The pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Failed readiness probes (an event's `count`) before a pod that never became Ready is worth an incident: the
/// kubelet records every failed probe, and a few are normal while an application starts.
pub const NOT_READY_AFTER_FAILURES: i32 = 3;

/// Whether an event says a pod's readiness probe keeps failing. The pod's status alone cannot say it: the kubelet
/// writes no pod update while a never-Ready container keeps failing its probe, so a watcher must watch events.
pub fn readiness_keeps_failing(event: &PodEvent) -> bool {
    event.reason == "Unhealthy"
        && event.message.starts_with("Readiness probe failed")
        && event.count >= NOT_READY_AFTER_FAILURES
}

/// Running but not Ready, with the readiness probe failing in the events.
fn not_ready(
    pod: &Pod,
    containers: &[(&ContainerStatus, bool)],
    events: &[PodEvent],
) -> Option<Failure> {
    if pod.status.as_ref()?.phase.as_deref() != Some("Running") {
        return None;
    }
    let (cs, _) = containers.iter().find(|(cs, init)| {
        !init && !cs.ready && cs.state.as_ref().is_some_and(|s| s.running.is_some())
    })?;
    let probe = events
        .iter()
        .rev()
        .find(|e| e.reason == "Unhealthy" && e.message.starts_with("Readiness probe failed"))?;
    Some(Failure {
        kind: FailureKind::NotReady,
        reason: "Unhealthy".into(),
        container: cs.name.clone(),
        init_container: false,
        image: cs.image.clone(),
        message: probe.message.clone(),
        exit_code: None,
    })
}

fn same_rank(found: FailureKind, rank: FailureKind) -> bool {
    found == rank || (rank == FailureKind::ImagePull && found == FailureKind::InvalidImageName)
}

fn unschedulable(pod: &Pod) -> Option<Failure> {
    let status = pod.status.as_ref()?;
    let cond = status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")?;
    if cond.status != "False" || cond.reason.as_deref() != Some("Unschedulable") {
        return None;
    }
    let first = pod.spec.as_ref().and_then(|s| s.containers.first());
    Some(Failure {
        kind: FailureKind::Unschedulable,
        reason: "Unschedulable".into(),
        container: first.map(|c| c.name.clone()).unwrap_or_default(),
        init_container: false,
        image: first.and_then(|c| c.image.clone()).unwrap_or_default(),
        message: cond.message.clone().unwrap_or_default(),
        exit_code: None,
    })
}

fn classify_container(
    cs: &ContainerStatus,
    init_container: bool,
    events: &[PodEvent],
) -> Option<Failure> {
    let state = cs.state.as_ref()?;
    let last = cs.last_state.as_ref().and_then(|l| l.terminated.as_ref());
    let now_terminated = state.terminated.as_ref().filter(|t| t.exit_code != 0);
    let failure =
        |kind: FailureKind, reason: &str, message: String, exit_code: Option<i32>| Failure {
            kind,
            reason: reason.to_string(),
            container: cs.name.clone(),
            init_container,
            image: cs.image.clone(),
            message,
            exit_code,
        };
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.as_deref().unwrap_or_default();
        let message = waiting.message.clone().unwrap_or_default();
        match reason {
            "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" => {
                return Some(failure(
                    FailureKind::ImagePull,
                    reason,
                    specific_message(&cs.image, &message, events),
                    None,
                ));
            }
            "InvalidImageName" => {
                return Some(failure(
                    FailureKind::InvalidImageName,
                    reason,
                    message,
                    None,
                ));
            }
            "CreateContainerConfigError"
            | "CreateContainerError"
            | "RunContainerError"
            | "PreStartHookError"
            | "PostStartHookError" => {
                return Some(failure(FailureKind::ConfigError, reason, message, None));
            }
            _ => {}
        }
    }
    // An OOM kill shows in state (restartPolicy Never, or right after the kill) or in lastState while the
    // container waits to be restarted.
    let oom = now_terminated
        .filter(|t| t.reason.as_deref() == Some("OOMKilled"))
        .or_else(|| {
            last.filter(|t| {
                t.reason.as_deref() == Some("OOMKilled")
                    && (state.waiting.is_some() || state.terminated.is_some())
            })
        });
    if let Some(t) = oom {
        let message = format!(
            "container {} was OOM-killed (exit code {}): it used more memory than its limit",
            cs.name, t.exit_code
        );
        return Some(failure(
            FailureKind::OomKilled,
            "OOMKilled",
            message,
            Some(t.exit_code),
        ));
    }
    let crash_waiting = state
        .waiting
        .as_ref()
        .filter(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
    if crash_waiting.is_some() || now_terminated.is_some() {
        let t = now_terminated.or(last);
        let code = t.map(|t| t.exit_code);
        let how = t
            .map(|t| {
                format!(
                    "last exit code {} ({})",
                    t.exit_code,
                    t.reason.as_deref().unwrap_or("Error")
                )
            })
            .unwrap_or_else(|| "no exit recorded".into());
        let detail = t
            .and_then(|t| t.message.clone())
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        let reason = if crash_waiting.is_some() {
            "CrashLoopBackOff"
        } else {
            "Error"
        };
        let message = match liveness_kill(&cs.name, code, events) {
            Some(probe) => format!(
                "container {} keeps being {LIVENESS_KILL}, {how}: {probe}",
                cs.name
            ),
            None => format!("container {} keeps exiting, {how}{detail}", cs.name),
        };
        return Some(failure(FailureKind::CrashLoop, reason, message, code));
    }
    None
}

/// How a crash message says the kubelet, not the program, ended the container.
pub const LIVENESS_KILL: &str = "restarted by its liveness probe";

/// The last liveness failure when the kubelet killed this container for it: exit 137 (SIGKILL) with the kubelet's
/// liveness failures (`Unhealthy`) or its `Killing` event for this container among the pod's events.
fn liveness_kill(container: &str, code: Option<i32>, events: &[PodEvent]) -> Option<String> {
    if code != Some(137) {
        return None;
    }
    let killed = format!("Container {container} failed liveness probe");
    let probe = events
        .iter()
        .rev()
        .find(|e| e.reason == "Unhealthy" && e.message.starts_with("Liveness probe failed"));
    let by_kubelet = events
        .iter()
        .any(|e| e.reason == "Killing" && e.message.starts_with(&killed));
    match probe {
        Some(p) => Some(p.message.clone()),
        None if by_kubelet => Some("Liveness probe failed".into()),
        None => None,
    }
}

/// `Back-off pulling image "x"` says nothing about why; the last `Failed` event naming the image does.
fn specific_message(image: &str, waiting_message: &str, events: &[PodEvent]) -> String {
    if !waiting_message.starts_with("Back-off") && !waiting_message.is_empty() {
        return waiting_message.to_string();
    }
    let quoted = format!("\"{image}\"");
    events
        .iter()
        .rev()
        .find(|e| {
            e.reason == "Failed" && e.message.contains(&quoted) && !e.message.starts_with("Error: ")
        })
        .map(|e| e.message.clone())
        .unwrap_or_else(|| waiting_message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(statuses: serde_json::Value, init: serde_json::Value) -> Pod {
        let v = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "test-nginx", "namespace": "default"},
            "spec": {"containers": [{"name": "test-nginx", "image": "nginx:bu-tag-yok"}]},
            "status": {"phase": "Pending", "containerStatuses": statuses, "initContainerStatuses": init}
        });
        serde_json::from_value(v).unwrap_or_else(|e| panic!("fixture: {e}"))
    }

    fn waiting(name: &str, image: &str, reason: &str, message: &str) -> serde_json::Value {
        json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0,
               "state": {"waiting": {"reason": reason, "message": message}}})
    }

    const NOT_FOUND: &str = "Failed to pull image \"nginx:bu-tag-yok\": rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nginx:bu-tag-yok\": failed to resolve reference \"docker.io/library/nginx:bu-tag-yok\": docker.io/library/nginx:bu-tag-yok: not found";

    #[test]
    fn a_pod_has_recovered_only_when_ready_and_no_container_died_recently() {
        let now: k8s_openapi::jiff::Timestamp = "2026-11-26T12:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let pod = |ready: &str, last_finished: Option<Option<&str>>| -> Pod {
            let last = match last_finished {
                None => json!({}),
                Some(None) => json!({"terminated": {"exitCode": 137, "reason": "Error"}}),
                Some(Some(at)) => {
                    json!({"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": at}})
                }
            };
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"phase": "Running",
                           "conditions": [{"type": "Ready", "status": ready}],
                           "containerStatuses": [{"name": "web", "image": "nginx:1.27", "imageID": "", "ready": ready == "True",
                                                  "restartCount": 3, "state": {"running": {}}, "lastState": last}]}
            }))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        for (p, want, why) in [
            (pod("True", None), true, "ready, never died"),
            (
                pod("True", Some(Some("2026-11-26T11:50:00Z"))),
                true,
                "ready, died 10 minutes ago",
            ),
            (
                pod("True", Some(Some("2026-11-26T11:58:00Z"))),
                true,
                "ready, died 120 s ago",
            ),
            (
                pod("True", Some(Some("2026-11-26T11:58:01Z"))),
                false,
                "ready, died 119 s ago",
            ),
            (
                pod("True", Some(Some("2026-11-26T11:59:40Z"))),
                false,
                "ready between two liveness kills",
            ),
            (
                pod("True", Some(None)),
                false,
                "a termination without a time proves nothing",
            ),
            (pod("False", None), false, "not ready"),
            (
                serde_json::from_value(json!({"metadata": {"name": "p"}}))
                    .unwrap_or_else(|e| panic!("{e}")),
                false,
                "no status",
            ),
        ] {
            assert_eq!(recovered(&p, now), want, "{why}");
        }
    }

    #[test]
    fn only_a_readiness_probe_that_keeps_failing_is_worth_an_incident() {
        let ev = |reason: &str, message: &str, count: i32| PodEvent {
            type_: "Warning".into(),
            reason: reason.into(),
            message: message.into(),
            count,
        };
        let refused = "Readiness probe failed: Get \"http://10.244.0.7:80/ready\": dial tcp: connection refused";
        for (event, want) in [
            (ev("Unhealthy", refused, 3), true),
            (ev("Unhealthy", refused, 40), true),
            (ev("Unhealthy", refused, 2), false),
            (ev("Unhealthy", refused, 1), false),
            (
                ev(
                    "Unhealthy",
                    "Liveness probe failed: HTTP probe failed with statuscode: 404",
                    9,
                ),
                false,
            ),
            (
                ev("Unhealthy", "Startup probe failed: connection refused", 9),
                false,
            ),
            (ev("BackOff", refused, 9), false),
        ] {
            assert_eq!(readiness_keeps_failing(&event), want, "{event:?}");
        }
    }

    fn failed_event(message: &str) -> PodEvent {
        PodEvent {
            type_: "Warning".into(),
            reason: "Failed".into(),
            message: message.into(),
            count: 1,
        }
    }

    #[test]
    fn image_failures_are_classified() {
        let cases = [
            (
                "ErrImagePull",
                NOT_FOUND,
                vec![],
                Some((FailureKind::ImagePull, NOT_FOUND)),
            ),
            // The back-off message is generic; the Failed event says why.
            (
                "ImagePullBackOff",
                "Back-off pulling image \"nginx:bu-tag-yok\"",
                vec![failed_event(NOT_FOUND), failed_event("Error: ErrImagePull")],
                Some((FailureKind::ImagePull, NOT_FOUND)),
            ),
            // Without events the generic message is all there is.
            (
                "ImagePullBackOff",
                "Back-off pulling image \"nginx:bu-tag-yok\"",
                vec![],
                Some((
                    FailureKind::ImagePull,
                    "Back-off pulling image \"nginx:bu-tag-yok\"",
                )),
            ),
            (
                "ErrImageNeverPull",
                "Container image \"nginx:bu-tag-yok\" is not present with pull policy of Never",
                vec![],
                Some((
                    FailureKind::ImagePull,
                    "Container image \"nginx:bu-tag-yok\" is not present with pull policy of Never",
                )),
            ),
            (
                "InvalidImageName",
                "couldn't parse image name",
                vec![],
                Some((FailureKind::InvalidImageName, "couldn't parse image name")),
            ),
            ("ContainerCreating", "", vec![], None),
        ];
        for (reason, message, events, want) in cases {
            let p = pod(
                json!([waiting("test-nginx", "nginx:bu-tag-yok", reason, message)]),
                json!([]),
            );
            let got = classify(&p, &events).map(|f| (f.kind, f.message));
            assert_eq!(got, want.map(|(k, m)| (k, m.to_string())), "{reason}");
        }
    }

    #[test]
    fn recent_events_keeps_the_newest_in_order_and_bounds_messages() {
        let ev = |reason: &str, ts: &str, msg: String| -> Event {
            serde_json::from_value(
                json!({"metadata": {"name": reason}, "involvedObject": {}, "reason": reason,
                "message": msg, "type": "Warning", "lastTimestamp": ts}),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let events = vec![
            ev(
                "c",
                "2026-01-01T00:00:03Z",
                "x".repeat(crate::report::MAX_MESSAGE_CHARS + 10),
            ),
            ev("a", "2026-01-01T00:00:01Z", "m".into()),
            ev("b", "2026-01-01T00:00:02Z", "m".into()),
        ];
        let got = recent_events(events, 2);
        let reasons: Vec<&str> = got.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["b", "c"]);
        assert_eq!(
            got[1].message.chars().count(),
            crate::report::MAX_MESSAGE_CHARS
        );
        assert_eq!(got[0].count, 1);
    }

    fn terminated(code: i32, reason: &str) -> serde_json::Value {
        json!({"exitCode": code, "reason": reason, "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"})
    }

    #[test]
    fn every_family_is_classified_with_explicit_precedence() {
        let cs = |state: serde_json::Value, last: serde_json::Value, restarts: i32| json!({"name": "app", "image": "busybox", "imageID": "", "ready": false, "restartCount": restarts, "state": state, "lastState": last});
        let crash = cs(
            json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container=app"}}),
            json!({"terminated": terminated(1, "Error")}),
            2,
        );
        let oom_last = cs(
            json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            json!({"terminated": terminated(137, "OOMKilled")}),
            1,
        );
        let oom_now = cs(
            json!({"terminated": terminated(137, "OOMKilled")}),
            json!({}),
            0,
        );
        let running_after_oom = cs(
            json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}),
            json!({"terminated": terminated(137, "OOMKilled")}),
            1,
        );
        let failed_never = cs(json!({"terminated": terminated(3, "Error")}), json!({}), 0);
        let completed = cs(
            json!({"terminated": terminated(0, "Completed")}),
            json!({}),
            0,
        );
        let config = cs(
            json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"db\" not found"}}),
            json!({}),
            0,
        );
        let image = waiting(
            "sidecar",
            "nginx:nope",
            "ImagePullBackOff",
            "Back-off pulling image \"nginx:nope\"",
        );
        let cases: Vec<(serde_json::Value, Option<(FailureKind, &str, Option<i32>)>)> = vec![
            (
                json!([crash.clone()]),
                Some((FailureKind::CrashLoop, "CrashLoopBackOff", Some(1))),
            ),
            (
                json!([oom_last]),
                Some((FailureKind::OomKilled, "OOMKilled", Some(137))),
            ),
            (
                json!([oom_now.clone()]),
                Some((FailureKind::OomKilled, "OOMKilled", Some(137))),
            ),
            // Recovered after an OOM kill: nothing to fix now.
            (json!([running_after_oom]), None),
            (
                json!([failed_never]),
                Some((FailureKind::CrashLoop, "Error", Some(3))),
            ),
            (json!([completed]), None),
            (
                json!([config.clone()]),
                Some((FailureKind::ConfigError, "CreateContainerConfigError", None)),
            ),
            // An image failure anywhere beats a crash elsewhere; an OOM kill beats a crash.
            (
                json!([crash.clone(), image]),
                Some((FailureKind::ImagePull, "ImagePullBackOff", None)),
            ),
            (
                json!([crash, oom_now]),
                Some((FailureKind::OomKilled, "OOMKilled", Some(137))),
            ),
        ];
        for (statuses, want) in cases {
            let p = pod(statuses.clone(), json!([]));
            let got = classify(&p, &[]).map(|f| (f.kind, f.reason.clone(), f.exit_code));
            assert_eq!(
                got,
                want.map(|(k, r, c)| (k, r.to_string(), c)),
                "{statuses}"
            );
        }
    }

    #[test]
    fn unschedulable_pods_are_classified_from_their_condition() {
        let mut p = pod(json!([]), json!([]));
        if let Some(st) = p.status.as_mut() {
            st.conditions = Some(vec![
                serde_json::from_value(
                    json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient memory."}),
                )
                .unwrap_or_else(|e| panic!("{e}")),
            ]);
        }
        let f = classify(&p, &[]).unwrap_or_else(|| panic!("unschedulable"));
        assert_eq!(
            (f.kind, f.container.as_str(), f.message.as_str()),
            (
                FailureKind::Unschedulable,
                "test-nginx",
                "0/1 nodes are available: 1 Insufficient memory."
            )
        );
    }

    #[test]
    fn a_container_killed_by_its_liveness_probe_says_so() {
        let crashed = |code: i32| {
            json!([{"name": "web", "image": "nginx", "imageID": "", "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": terminated(code, "Error")}}])
        };
        let ev = |reason: &str, message: &str| PodEvent {
            type_: "Warning".into(),
            reason: reason.into(),
            message: message.into(),
            count: 3,
        };
        let unhealthy = ev(
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
        );
        let killing = ev(
            "Killing",
            "Container web failed liveness probe, will be restarted",
        );
        let other = ev(
            "Killing",
            "Container sidecar failed liveness probe, will be restarted",
        );
        let cases = [
            (
                137,
                vec![unhealthy.clone(), killing.clone()],
                Some("statuscode: 404"),
            ),
            (137, vec![killing], Some("Liveness probe failed")),
            (137, vec![other], None),
            (137, vec![], None),
            // Exit 1 is the program's own doing, whatever the probe says.
            (1, vec![unhealthy], None),
        ];
        for (code, events, want) in cases {
            let f = classify(&pod(crashed(code), json!([])), &events)
                .unwrap_or_else(|| panic!("{code} {events:?}"));
            assert_eq!(f.kind, FailureKind::CrashLoop);
            match want {
                Some(text) => {
                    assert!(f.message.contains(LIVENESS_KILL), "{}", f.message);
                    assert!(f.message.contains(text), "{}", f.message);
                }
                None => assert!(!f.message.contains(LIVENESS_KILL), "{}", f.message),
            }
        }
    }

    #[test]
    fn events_about_another_image_are_ignored() {
        let p = pod(
            json!([waiting(
                "c",
                "nginx:bu-tag-yok",
                "ImagePullBackOff",
                "Back-off pulling image \"nginx:bu-tag-yok\""
            )]),
            json!([]),
        );
        let other = failed_event("Failed to pull image \"redis:nope\": not found");
        let f = classify(&p, &[other]).map(|f| f.message);
        assert_eq!(
            f.as_deref(),
            Some("Back-off pulling image \"nginx:bu-tag-yok\"")
        );
    }

    #[test]
    fn init_containers_come_first_and_healthy_pods_have_no_failure() {
        let running = json!({"name": "app", "image": "nginx:1.27", "imageID": "", "ready": true, "restartCount": 0,
                             "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}});
        let p = pod(json!([running.clone()]), json!([]));
        assert_eq!(classify(&p, &[]), None);

        let p = pod(
            json!([waiting("app", "nginx:nope", "ErrImagePull", "x")]),
            json!([waiting("init", "busybox:nope", "ErrImagePull", "y")]),
        );
        let f = classify(&p, &[]).map(|f| (f.container, f.init_container, f.image));
        assert_eq!(
            f,
            Some(("init".to_string(), true, "busybox:nope".to_string()))
        );

        let no_status: Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap_or_default();
        assert_eq!(classify(&no_status, &[]), None);
    }
}
