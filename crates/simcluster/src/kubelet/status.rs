//! The pod status the kubelet writes: container states, restart counts, conditions and the phase.

use super::{Container, PodRuntime, State};
use crate::store::now;
use serde_json::{Value, json};

pub(super) fn container_status(c: Option<&Container>, spec: &Value) -> (Value, bool, bool) {
    let name = spec["name"].as_str().unwrap_or_default();
    let image = spec["image"].as_str().unwrap_or_default();
    let Some(c) = c else {
        let s = json!({"name": name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
                       "state": {"waiting": {"reason": "PodInitializing"}}, "lastState": {}});
        return (s, false, false);
    };
    let waiting = |reason: &str, message: Option<&str>| {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        json!({"waiting": w})
    };
    let (state, ready, running, container_id) = match &c.state {
        State::Running(r) => (
            json!({"running": {"startedAt": r.started_at}}),
            r.ready,
            true,
            Some(r.container_id.clone()),
        ),
        State::Waiting {
            reason, message, ..
        } => (waiting(reason, message.as_deref()), false, false, None),
        State::Pulling { .. } => (waiting("ContainerCreating", None), false, false, None),
        State::PullFailed { message, .. } => {
            (waiting("ErrImagePull", Some(message)), false, false, None)
        }
        State::PullBackOff { .. } => (
            waiting(
                "ImagePullBackOff",
                Some(&format!("Back-off pulling image \"{image}\"")),
            ),
            false,
            false,
            None,
        ),
        State::Terminated { t, .. } => (
            json!({"terminated": t.json()}),
            false,
            false,
            Some(t.container_id.clone()),
        ),
        State::CrashBackOff {
            message,
            shown: true,
            ..
        } => (
            waiting("CrashLoopBackOff", Some(message)),
            false,
            false,
            None,
        ),
        // The current kubelet shows the last exit until a resync lands inside the back-off.
        State::CrashBackOff { shown: false, .. } => match &c.last_terminated {
            Some(t) => (
                json!({"terminated": t.json()}),
                false,
                false,
                Some(t.container_id.clone()),
            ),
            None => (waiting("CrashLoopBackOff", None), false, false, None),
        },
    };
    let last = match &c.state {
        State::CrashBackOff { shown: false, .. } => c.prior_terminated.as_ref(),
        _ => c.last_terminated.as_ref(),
    };
    let pulled = !matches!(
        c.state,
        State::Pulling { .. } | State::PullFailed { .. } | State::PullBackOff { .. }
    ) && !matches!(&c.state, State::Waiting { reason, .. } if reason == "InvalidImageName");
    let image_id = if pulled {
        let (repo, _) = crate::catalog::normalize(image).unwrap_or_default();
        format!("{repo}@sha256:{:064x}", 0xabcd_u64)
    } else {
        String::new()
    };
    let mut s = json!({
        "name": name, "image": image, "imageID": image_id, "ready": ready, "restartCount": c.restart_count,
        "started": running, "state": state,
        "lastState": last.map(|t| json!({"terminated": t.json()})).unwrap_or(json!({})),
    });
    if let Some(id) = container_id {
        s["containerID"] = json!(id);
    }
    let terminated_ok =
        matches!(&c.state, State::Terminated { t, restart: false, .. } if t.exit_code == 0);
    (s, ready, terminated_ok)
}

/// The pod conditions the kubelet computes on every status write.
const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

pub(super) fn pod_status(
    rt: &mut PodRuntime,
    pod: &Value,
    inits: &[Value],
    apps: &[Value],
    initialized: bool,
) -> Value {
    let mut init_statuses = Vec::new();
    for spec in inits {
        let name = spec["name"].as_str().unwrap_or_default();
        init_statuses.push(container_status(rt.containers.get(name), spec).0);
    }
    let mut statuses = Vec::new();
    let (mut all_ready, mut unready) = (!apps.is_empty(), Vec::new());
    let (mut any_running, mut all_terminated, mut all_succeeded, mut all_started) =
        (false, true, true, true);
    for spec in apps {
        let name = spec["name"].as_str().unwrap_or_default();
        let c = if initialized {
            rt.containers.get(name)
        } else {
            None
        };
        let (s, ready, succeeded) = container_status(c, spec);
        if !ready {
            all_ready = false;
            unready.push(name.to_string());
        }
        match c.map(|c| &c.state) {
            Some(State::Running(_)) => {
                any_running = true;
                all_terminated = false;
                all_succeeded = false;
            }
            Some(State::Terminated { restart: false, .. }) => all_succeeded &= succeeded,
            Some(State::Terminated { restart: true, .. } | State::CrashBackOff { .. }) => {
                any_running = true;
                all_terminated = false;
                all_succeeded = false;
            }
            Some(State::Waiting { .. }) if c.is_some_and(|c| c.restart_count > 0) => {
                any_running = true;
                all_terminated = false;
                all_succeeded = false;
            }
            _ => {
                all_terminated = false;
                all_succeeded = false;
                all_started = false;
            }
        }
        statuses.push(s);
    }
    let phase = if !initialized {
        "Pending"
    } else if all_terminated && !apps.is_empty() {
        if all_succeeded { "Succeeded" } else { "Failed" }
    } else if any_running || (all_started && !apps.is_empty()) {
        "Running"
    } else {
        "Pending"
    };
    let mut condition = |t: &'static str,
                         ok: bool,
                         reason: Option<&str>,
                         message: Option<String>| {
        let entry = rt.transitions.entry(t).or_insert_with(|| (ok, now()));
        if entry.0 != ok {
            *entry = (ok, now());
        }
        let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": entry.1});
        if let (false, Some(r)) = (ok, reason) {
            c["reason"] = json!(r);
            c["message"] = json!(message.unwrap_or_default());
        }
        c
    };
    let unready_msg = format!("containers with unready status: [{}]", unready.join(" "));
    let ready_reason = if phase == "Succeeded" || phase == "Failed" {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let pending_inits: Vec<&str> = inits
        .iter()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !rt.containers.get(*n).is_some_and(|c| matches!(&c.state, State::Terminated { t, restart: false, .. } if t.exit_code == 0)))
        .collect();
    // Readiness gates: with its containers ready, a pod is Ready only once every gate's condition (set by someone
    // else, e.g. a load balancer controller) is True, in the kubelet's words (`GeneratePodReadyCondition`).
    let current = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let gates: Vec<String> = pod["spec"]["readinessGates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["conditionType"].as_str())
        .filter_map(|t| match current.iter().find(|c| c["type"] == t) {
            None => Some(format!(
                "corresponding condition of pod readiness gate \"{t}\" does not exist."
            )),
            Some(c) if c["status"] != "True" => Some(format!(
                "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                c["status"].as_str().unwrap_or_default()
            )),
            Some(_) => None,
        })
        .collect();
    let (pod_ready, pod_reason, pod_msg) = if all_ready && !gates.is_empty() {
        (false, "ReadinessGatesNotReady", gates.join(", "))
    } else {
        (all_ready, ready_reason, unready_msg.clone())
    };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", true, None, None),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                pending_inits.join(" ")
            )),
        ),
        condition("Ready", pod_ready, Some(pod_reason), Some(pod_msg)),
        condition(
            "ContainersReady",
            all_ready,
            Some(ready_reason),
            Some(unready_msg),
        ),
        condition("PodScheduled", true, None, None),
    ];
    // Conditions the kubelet does not own (a readiness gate's, a disruption target) are kept as they are.
    conditions.extend(
        current
            .into_iter()
            .filter(|c| !KUBELET_CONDITIONS.contains(&c["type"].as_str().unwrap_or_default())),
    );
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": "10.0.0.10", "hostIPs": [{"ip": "10.0.0.10"}],
        "podIP": rt.ip, "podIPs": [{"ip": rt.ip}],
        "startTime": rt.start_time,
        "containerStatuses": statuses,
        "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
    });
    if !inits.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    status
}
