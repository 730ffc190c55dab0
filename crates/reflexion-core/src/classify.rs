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
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImagePull => "image_pull",
            Self::InvalidImageName => "invalid_image_name",
        }
    }

    /// The reason the whole family is known by (`kubectl get pods` settles on it), used as a strategy's `type`.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::ImagePull => "ImagePullBackOff",
            Self::InvalidImageName => "InvalidImageName",
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
    events
        .into_iter()
        .skip(skip)
        .map(|e| PodEvent {
            type_: e.type_.unwrap_or_default(),
            reason: e.reason.unwrap_or_default(),
            message: e
                .message
                .unwrap_or_default()
                .chars()
                .take(crate::report::MAX_MESSAGE_CHARS)
                .collect(),
            count: e.count.unwrap_or(1),
        })
        .collect()
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
}

/// Classify a pod. Init containers come first (the app containers cannot start until they succeed), then app
/// containers in spec order; the first failing container is the failure.
pub fn classify(pod: &Pod, events: &[PodEvent]) -> Option<Failure> {
    let status = pod.status.as_ref()?;
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
    init.chain(app)
        .find_map(|(cs, is_init)| classify_container(cs, is_init, events))
}

fn classify_container(
    cs: &ContainerStatus,
    init_container: bool,
    events: &[PodEvent],
) -> Option<Failure> {
    let waiting = cs.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let kind = match reason {
        "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull" => FailureKind::ImagePull,
        "InvalidImageName" => FailureKind::InvalidImageName,
        _ => return None,
    };
    let waiting_message = waiting.message.clone().unwrap_or_default();
    Some(Failure {
        kind,
        reason: reason.to_string(),
        container: cs.name.clone(),
        init_container,
        image: cs.image.clone(),
        message: specific_message(&cs.image, &waiting_message, events),
    })
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
