//! Workloads whose pods the API server refuses — no pod fails, none exists: the watcher sees the ReplicaSet's
//! `FailedCreate`, and the incident is handed over naming the quota's numbers or the Pod Security checks, with
//! nothing changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::{Options, Stack, awaiting_approval, finished_incident};

fn deployment(ns: &str, resources: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": ns},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "resources": resources}]}}}
    }))
    .unwrap()
}

/// ResourceQuota `compute` in `default`: 512Mi of memory requests.
async fn quota(client: &kube::Client) {
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "compute"}, "spec": {"hard": {"requests.memory": "512Mi"}}
    }))
    .unwrap();
    Api::<ResourceQuota>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &quota)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_over_its_namespaces_quota_is_handed_over_with_the_numbers() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    quota(&client).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("default", json!({"requests": {"memory": "300Mi"}})),
        )
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    let outcome = support::escalated(&detail, "failed_create/quota", ("Deployment", "web"));
    assert!(
        outcome.contains(
            "deployment/web -n default cannot create its pods: ResourceQuota compute would be exceeded (requests.memory: a pod asks 300Mi, 300Mi is used of 512Mi)"
        ),
        "{outcome}"
    );
    assert!(outcome.contains("raise ResourceQuota compute"), "{outcome}");
    // Two pods of 300Mi beside the one running would have to ask 106Mi each: not proposed.
    assert!(
        outcome.contains("lowering requests to fit is not proposed: 2 pods fit beside the 300Mi used of 512Mi only at 106Mi"),
        "{outcome}"
    );
    assert_eq!(detail["evidence"]["refusal"]["kind"], "quota", "{detail}");
    assert_eq!(detail["audit"], json!([]), "nothing changed");
    let d = deployments.get("web").await.unwrap();
    assert_eq!(d.metadata.generation, Some(1), "the template is as it was");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_whose_pod_cannot_fit_its_quota_waits_for_approval_with_requests_that_fit() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    quota(&client).await;
    let mut d = deployment("default", json!({"requests": {"memory": "600Mi"}}));
    d.spec.as_mut().unwrap().replicas = Some(1);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(waiting["signature"], "failed_create/quota", "{waiting}");
    let command = waiting["pending_plan"]["command"].as_str().unwrap();
    assert!(
        command == "kubectl set resources deployment/web -c web --requests=memory=512Mi -n default",
        "{command}"
    );
    assert_eq!(
        deployments.get("web").await.unwrap().metadata.generation,
        Some(1),
        "nothing changes before approval"
    );
    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1, "the pod is created at last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_deployment_in_a_restricted_namespace_is_handed_over_naming_the_fields() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "locked", "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "locked");
    deployments
        .create(&PostParams::default(), &deployment("locked", json!({})))
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    assert_eq!(
        detail["signature"], "failed_create/pod_security",
        "{detail}"
    );
    let outcome = detail["outcome"].as_str().unwrap();
    for field in [
        "the namespace enforces Pod Security \"restricted:latest\"",
        "securityContext.allowPrivilegeEscalation=false",
        "securityContext.runAsNonRoot=true",
        "securityContext.capabilities.drop=[\"ALL\"]",
        "never weakens a namespace's security level",
    ] {
        assert!(outcome.contains(field), "{field}: {outcome}");
    }
    assert_eq!(detail["audit"], json!([]), "nothing changed");
    let labels = Api::<Namespace>::all(client)
        .get("locked")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_whose_jobs_cannot_create_pods_is_handed_over_at_the_cronjob() {
    use k8s_openapi::api::batch::v1::CronJob;
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "batch", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    // Every minute (6 s at the stack's time scale), a Job whose pod asks for the host's network.
    let cron: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "nightly", "namespace": "batch"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "hostNetwork": true,
            "containers": [{"name": "report", "image": "busybox:1.36", "command": ["true"]}]}}}}}
    }))
    .unwrap();
    Api::<CronJob>::namespaced(client, "batch")
        .create(&PostParams::default(), &cron)
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    assert_eq!(
        (
            detail["workload"]["kind"].as_str(),
            detail["workload"]["name"].as_str()
        ),
        (Some("CronJob"), Some("nightly")),
        "{detail}"
    );
    assert_eq!(
        detail["signature"], "failed_create/pod_security",
        "{detail}"
    );
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("cronjob/nightly -n batch cannot create its pods: the namespace enforces Pod Security \"baseline:latest\"")
            && outcome.contains("host namespaces (hostNetwork=true)"),
        "{outcome}"
    );
    assert_eq!(detail["audit"], json!([]), "nothing changed");
}
