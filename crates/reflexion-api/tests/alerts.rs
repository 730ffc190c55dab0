//! Alertmanager's webhook as a second source of incidents (issue 29): an alert on a workload the watcher already
//! reported joins its incident; one on a workload nobody reported opens one, which is fixed like any other;
//! resolved alerts are recorded, alerts naming no workload are kept as ignored with why.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::{BAD_TAG_WEB, Options, Stack, awaiting_approval, finished_incident};

/// An Alertmanager webhook body (version 4) with these alerts.
fn payload(alerts: Vec<Value>) -> Value {
    json!({"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0, "status": "firing",
           "receiver": "kube-reflexion", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "alerts": alerts})
}

fn alert(status: &str, fingerprint: &str, labels: Value) -> Value {
    json!({"status": status, "labels": labels, "annotations": {"summary": "s"},
           "startsAt": "2026-12-06T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
           "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_join_the_watchers_incident_and_the_rest_are_recorded_with_why() {
    let stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        ..Options::default()
    })
    .await;
    stack.create_deployment(BAD_TAG_WEB).await;
    let waiting = awaiting_approval(&stack).await;
    let id = waiting["id"].as_str().unwrap();
    let pod = support::a_pod_of(&stack, "web").await;
    let (status, body) = stack
        .post(
            "/api/v1/alerts/alertmanager",
            payload(vec![
                alert(
                    "firing",
                    "a1",
                    json!({"alertname": "KubePodCrashLooping", "namespace": "default", "pod": pod,
                                             "job": "kube-state-metrics", "severity": "warning"}),
                ),
                alert(
                    "firing",
                    "a2",
                    json!({"alertname": "KubeDeploymentReplicasMismatch", "namespace": "default",
                                             "deployment": "web"}),
                ),
                alert(
                    "resolved",
                    "a3",
                    json!({"alertname": "KubePodNotReady", "namespace": "default", "pod": pod}),
                ),
                alert(
                    "firing",
                    "a4",
                    json!({"alertname": "KubeNodeNotReady", "node": "sim-node-1"}),
                ),
            ]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let outcomes: Vec<(&str, Option<&str>)> = body["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["outcome"].as_str().unwrap(), a["incident_id"].as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("reported", Some(id)),
            ("reported", Some(id)),
            ("resolved", None),
            ("ignored", None)
        ],
        "both firing alerts join the watcher's incident on deployment/web: {body}"
    );
    assert_eq!(body["alerts"][3]["why"], "no namespace label");
    // Stored, newest first, with what became of each.
    let stored = stack.get("/api/v1/alerts").await;
    let rows: Vec<(&str, &str, Option<&str>)> = stored["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["alertname"].as_str().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["why"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("KubeNodeNotReady", "ignored", Some("no namespace label")),
            ("KubePodNotReady", "resolved", None),
            ("KubeDeploymentReplicasMismatch", "reported", None),
            ("KubePodCrashLooping", "reported", None),
        ]
    );
    assert_eq!(stored["alerts"][2]["workload_kind"], "Deployment");
    assert_eq!(stored["alerts"][3]["labels"]["severity"], "warning");
    // Alertmanager re-sends a firing alert every repeat_interval: the same incident, no new one.
    let (_, again) = stack
        .post(
            "/api/v1/alerts/alertmanager",
            payload(vec![alert(
                "firing",
                "a2",
                json!({"alertname": "KubeDeploymentReplicasMismatch",
                                                      "namespace": "default", "deployment": "web"}),
            )]),
        )
        .await;
    assert_eq!(again["alerts"][0]["incident_id"], id);
    let incidents = stack.get("/api/v1/reflexion/incidents").await;
    assert_eq!(
        incidents["incidents"].as_array().unwrap().len(),
        1,
        "{incidents}"
    );
    // Not a version 4 payload: refused whole, nothing stored.
    let (status, err) = stack
        .post(
            "/api/v1/alerts/alertmanager",
            json!({"version": "3", "alerts": []}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("invalid_payload")),
        "{err}"
    );
    assert_eq!(stack.get("/api/v1/alerts").await["total_count"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_on_a_workload_nobody_reported_opens_its_incident_and_it_is_fixed() {
    let stack = Stack::start(Options {
        watcher: false,
        ..Options::default()
    })
    .await;
    stack.create_deployment(BAD_TAG_WEB).await;
    // Prometheus fires once the condition held for its `for:`: here, once the pod fails to pull.
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    stack
        .eventually(
            "the pod to fail pulling",
            std::time::Duration::from_secs(60),
            async || {
                let list = pods
                    .list(&ListParams::default().labels("app=web"))
                    .await
                    .unwrap();
                let reason = list.items.first().and_then(|p| {
                    p.status
                        .as_ref()?
                        .container_statuses
                        .as_ref()?
                        .first()?
                        .state
                        .as_ref()?
                        .waiting
                        .as_ref()?
                        .reason
                        .clone()
                });
                let failing = reason.as_deref().is_some_and(|r| r.contains("ImagePull"));
                (failing.then_some(()), format!("{reason:?}"))
            },
        )
        .await;
    let (status, body) = stack
        .post(
            "/api/v1/alerts/alertmanager",
            payload(vec![alert(
                "firing",
                "b1",
                json!({"alertname": "KubeDeploymentReplicasMismatch",
                                                      "namespace": "default", "deployment": "web"}),
            )]),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["alerts"][0]["outcome"], "reported", "{body}");
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(
        detail["workload"],
        json!({"kind": "Deployment", "name": "web"})
    );
    assert_eq!(detail["id"], body["alerts"][0]["incident_id"]);
    assert!(
        support::audit_commands(&detail)
            .iter()
            .any(|c| c.starts_with("kubectl set image deployment/web web=nginx:1.27")),
        "{detail}"
    );
}
