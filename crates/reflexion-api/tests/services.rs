//! Services that select no pod — no pod fails: the watcher sees a Service without endpoints, the engine points it
//! at the one workload it was meant for (medium risk: no approval under the default policy), verifies that it keeps
//! ready endpoints, and a busybox pod reaches it by name; with two candidates it is handed over naming them. A
//! Service whose named target port its pods do not declare is pointed at the port they declare: by name without
//! approval, by number only after a person's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{LogParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Options, Stack, audit_commands, awaiting_approval, finished_incident};

async fn deploy(client: &Client, name: &str, app: &str) {
    deploy_with_ports(client, name, app, json!([{"containerPort": 80}])).await
}

async fn deploy_with_ports(client: &Client, name: &str, app: &str, ports: serde_json::Value) {
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": ports}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
}

async fn service(client: &Client, name: &str, app: &str) {
    service_with_ports(client, name, app, json!([{"port": 80}])).await
}

async fn service_with_ports(client: &Client, name: &str, app: &str, ports: serde_json::Value) {
    let s: Service = serde_json::from_value(json!({
        "metadata": {"name": name}, "spec": {"selector": {"app": app}, "ports": ports}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

fn selector(s: Service) -> BTreeMap<String, String> {
    s.spec.unwrap().selector.unwrap_or_default()
}

/// A busybox pod's `wget -qO- URL`: its phase once it ended, and its logs.
async fn wget(client: &Client, name: &str, url: &str) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "wget", "image": "busybox:1.36", "command": ["wget", "-qO-", url]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    for _ in 0..300 {
        let phase = pods
            .get(name)
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            let logs = pods
                .logs(name, &LogParams::default())
                .await
                .unwrap_or_default();
            return (phase, logs);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pod {name} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_selecting_no_pod_is_pointed_at_its_workload_and_answers() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    deploy(&client, "nginx", "nginx").await;
    service(&client, "nginx", "web").await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(
        detail["signature"], "no_endpoints/selector_mismatch",
        "{detail}"
    );
    assert_eq!(
        (
            detail["workload"]["kind"].as_str(),
            detail["workload"]["name"].as_str()
        ),
        (Some("Service"), Some("nginx"))
    );
    assert_eq!(
        audit_commands(&detail),
        [
            r#"kubectl patch service/nginx -n default --type=merge -p '{"spec":{"selector":{"app":"nginx"}}}'"#
        ],
        "{detail}"
    );
    assert!(
        detail["outcome"]
            .as_str()
            .unwrap()
            .contains("has ready endpoints, stable for"),
        "{detail}"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        selector(services.get("nginx").await.unwrap()),
        BTreeMap::from([("app".to_string(), "nginx".to_string())])
    );
    let (phase, logs) = wget(&client, "after", "nginx").await;
    assert_eq!(phase, "Succeeded", "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_two_workloads_are_as_close_to_is_handed_over_naming_them() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    deploy(&client, "blue", "blue").await;
    deploy(&client, "green", "green").await;
    service(&client, "shop", "web").await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("service shop selects no pod")
            && outcome.contains("deployment/blue, deployment/green"),
        "{outcome}"
    );
    assert_eq!(detail["audit"], json!([]), "nothing changed");
    let services: Api<Service> = Api::namespaced(client, "default");
    assert_eq!(
        selector(services.get("shop").await.unwrap()),
        BTreeMap::from([("app".to_string(), "web".to_string())])
    );
}

fn target_port(s: Service) -> serde_json::Value {
    json!(s.spec.unwrap().ports.unwrap()[0].target_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_port_targeting_a_name_no_pod_declares_is_pointed_at_the_declared_port() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    deploy_with_ports(
        &client,
        "nginx",
        "nginx",
        json!([{"name": "http", "containerPort": 80}]),
    )
    .await;
    service_with_ports(
        &client,
        "nginx",
        "nginx",
        json!([{"name": "web", "port": 80, "targetPort": "web"}]),
    )
    .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(detail["signature"], "no_endpoints/target_port", "{detail}");
    assert_eq!(
        audit_commands(&detail),
        [
            r#"kubectl patch service/nginx -n default -p '{"spec":{"ports":[{"port":80,"targetPort":"http"}]}}'"#
        ],
        "{detail}"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = services.get("nginx").await.unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
            .name
            .as_deref(),
        Some("web"),
        "only the target changed"
    );
    assert_eq!(target_port(svc), json!("http"));
    let (phase, logs) = wget(&client, "after", "nginx").await;
    assert_eq!(phase, "Succeeded", "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_target_port_waits_for_a_person() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    // The pods declare one unnamed port: the fix is a number, a promise about a socket only a person can check.
    deploy_with_ports(&client, "nginx", "nginx", json!([{"containerPort": 80}])).await;
    service_with_ports(
        &client,
        "nginx",
        "nginx",
        json!([{"port": 8080, "targetPort": "web"}]),
    )
    .await;
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(
        waiting["signature"], "no_endpoints/target_port",
        "{waiting}"
    );
    assert_eq!(
        waiting["pending_plan"]["command"],
        r#"kubectl patch service/nginx -n default -p '{"spec":{"ports":[{"port":8080,"targetPort":80}]}}'"#,
        "{waiting}"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    assert_eq!(
        target_port(services.get("nginx").await.unwrap()),
        json!("web"),
        "nothing changes before approval"
    );
    stack.approve(&waiting).await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(target_port(services.get("nginx").await.unwrap()), json!(80));
    let (phase, logs) = wget(&client, "after", "http://nginx:8080/").await;
    assert_eq!(phase, "Succeeded", "{logs}");
}
