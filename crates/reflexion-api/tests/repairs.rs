//! End to end, the repairs of what real clusters throw at a workload: probes (one wrong, or both), a request no node
//! can hold, a nodeSelector no node matches, a claim of a StorageClass that does not exist, a command the image
//! lacks. The real binaries on loopback, driven through their public interfaces only; every high-risk change waits
//! for an operator's approval first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;
use support::{
    FIX_TIMEOUT, Options, Stack, audit_verbs, awaiting_approval, finished_incident, is_ready,
    template_container,
};

/// The live pods labelled `app=<app>`, once every one of them is Ready and none is terminating.
async fn ready_pods(stack: &Stack, app: &str, want: usize) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    stack
        .eventually("the workload's pods to be Ready", FIX_TIMEOUT, async || {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .unwrap()
                .items;
            let live: Vec<Pod> = list
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .cloned()
                .collect();
            let done = live.len() == want && live.iter().all(is_ready);
            let shown: Vec<String> = list
                .iter()
                .map(|p| {
                    format!(
                        "{} ready={} deleting={}",
                        p.metadata.name.clone().unwrap_or_default(),
                        is_ready(p),
                        p.metadata.deletion_timestamp.is_some()
                    )
                })
                .collect();
            (done.then_some(live), shown.join(", "))
        })
        .await
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(-1)
}

e2e_test! {
async fn a_liveness_probe_on_a_port_nothing_serves_is_pointed_at_what_the_container_serves() {
    let stack = Stack::start(Options::default()).await;
    // The repository's scenario: nginx serves / on port 80, the probe asks /healthz on 8080.
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/bad-liveness.yaml"))
        .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    let episodes = detail["episodes"].as_array().unwrap();
    // Trial 1 keeps the path on the declared port; nginx answers 404 there, so it is reverted and the root path
    // is tried next: a different strategy, chosen because the first failed.
    let commands: Vec<&str> = episodes
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(episodes.len(), 2, "{commands:?}");
    assert!(
        commands[0].contains(r#""httpGet":{"path":"/healthz","port":80}"#),
        "{commands:?}"
    );
    assert_eq!(episodes[0]["success"], false);
    assert_eq!(episodes[0]["reverted"], true, "{}", detail["audit"]);
    assert!(
        commands[1].contains(r#""httpGet":{"path":"/","port":80}"#),
        "{commands:?}"
    );
    let verbs = audit_verbs(&detail);
    assert_eq!(verbs, ["set_probe", "revert", "set_probe"]);
    let c = template_container(&deployments, "probed").await;
    let probe = c.liveness_probe.unwrap();
    let http = probe.http_get.unwrap();
    assert_eq!(
        (
            http.path.as_deref(),
            serde_json::to_value(&http.port).unwrap()
        ),
        (Some("/"), json!(80))
    );
    assert_eq!(
        (probe.period_seconds, probe.failure_threshold),
        (Some(5), Some(3)),
        "the probe's timings are kept"
    );
    assert!(probe.tcp_socket.is_none() && probe.exec.is_none());
}
}

e2e_test! {
async fn a_readiness_probe_that_never_passes_is_pointed_at_what_the_container_serves() {
    let stack = Stack::start(Options::default()).await;
    // nginx serves / on port 80; the readiness probe asks /ready (404). Its status never changes after it starts:
    // only the kubelet's Unhealthy events say what is wrong.
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/bad-readiness.yaml"))
        .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["signature"].as_str()),
        (Some("resolved"), Some("not_ready/readiness_probe")),
        "{detail}"
    );
    assert_eq!(audit_verbs(&detail), ["set_probe"], "{detail}");
    let c = template_container(&deployments, "gateway").await;
    let probe = c.readiness_probe.expect("the readiness probe is kept");
    let http = probe.http_get.expect("still an HTTP probe");
    assert_eq!(
        (http.path.as_deref(), serde_json::to_value(&http.port).unwrap()),
        (Some("/"), json!(80))
    );
    assert_eq!(probe.period_seconds, Some(1), "the probe's timings are kept");
}
}

e2e_test! {
async fn a_request_no_node_can_hold_is_lowered_only_after_approval() {
    let stack = Stack::start(Options::default()).await;
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/pending-memory.yaml"))
        .await;
    // Lowering requests is high risk: even in auto mode it waits for a human.
    let waiting = awaiting_approval(&stack).await;
    let command = waiting["pending_plan"]["command"].as_str().unwrap();
    assert!(
        command.starts_with("kubectl set resources deployment/hungry -c hungry --requests=memory="),
        "{waiting}"
    );
    assert_eq!(
        deployments.get("hungry").await.unwrap().metadata.generation,
        Some(1)
    );
    let id = waiting["id"].as_str().unwrap();
    let (status, _) = stack
        .post(
            &format!("/api/v1/reflexion/incidents/{id}/approve"),
            json!({"by": "sre"}),
        )
        .await;
    assert_eq!(status, 202);
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let c = template_container(&deployments, "hungry").await;
    let request = c.resources.unwrap().requests.unwrap()["memory"].0.clone();
    let bytes = reflexion_core::quantity::parse_bytes(&request).unwrap();
    assert!(
        bytes <= 8 * 1024 * 1024 * 1024 && bytes > 1024 * 1024 * 1024,
        "fits the 8Gi node: {request}"
    );
}
}

e2e_test! {
async fn both_probes_wrong_are_fixed_in_one_incident_keeping_the_change_that_made_progress() {
    let stack = Stack::start(Options::default()).await;
    // nginx serves / on port 80; liveness asks /alive and readiness /ready-now, neither served.
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/bad-probes.yaml"))
        .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    let all = stack.get("/api/v1/reflexion/incidents").await;
    assert_eq!(all["incidents"].as_array().unwrap().len(), 1, "one incident: {all}");
    let episodes = detail["episodes"].as_array().unwrap();
    // Each probe was fixed once; the first fix made progress (its cause gone, the other probe's showing) and was
    // kept, not reverted.
    let probes: Vec<&str> = episodes
        .iter()
        .map(|e| e["action"]["probe"].as_str().unwrap())
        .collect();
    assert_eq!(episodes.len(), 2, "{detail}");
    assert_ne!(probes[0], probes[1], "{probes:?}");
    assert_eq!(episodes[0]["reverted"], false, "{detail}");
    assert_eq!(episodes[0]["verification"]["progress"], "progress", "{detail}");
    assert!(
        episodes[0]["reflection"].as_str().unwrap().contains("made progress"),
        "{}",
        episodes[0]["reflection"]
    );
    assert!(!audit_verbs(&detail).contains(&"revert".to_string()), "{detail}");
    // Neither candidate the evidence showed failing was chosen: both probes now ask a path nginx serves.
    let c = template_container(&deployments, "probes").await;
    for (name, probe) in [("liveness", c.liveness_probe), ("readiness", c.readiness_probe)] {
        let probe = probe.unwrap_or_else(|| panic!("the {name} probe was removed"));
        let path = probe
            .http_get
            .as_ref()
            .and_then(|h| h.path.clone())
            .unwrap_or_default();
        assert!(
            probe.tcp_socket.is_some() || ["/", "/index.html"].contains(&path.as_str()),
            "{name}: {probe:?}"
        );
        assert_eq!(probe.period_seconds, Some(5), "{name}: timings kept");
    }
    let pods = ready_pods(&stack, "probes", 1).await;
    assert_eq!(restarts(&pods[0]), 0, "{:?}", pods[0].status);
}
}

e2e_test! {
async fn a_node_selector_no_node_matches_loses_that_key_after_approval_and_the_service_gets_endpoints() {
    let stack = Stack::start(Options::default()).await;
    stack
        .create_all(include_str!("../../../k8s/scenarios/selector-no-node.yaml"))
        .await;
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(waiting["signature"], "unschedulable/node_selector", "{waiting}");
    let command = waiting["pending_plan"]["command"].as_str().unwrap();
    assert!(
        command.contains("deployment/catalog") && command.contains(r#""nodeSelector":{"disktype":null}"#),
        "{command}"
    );
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    assert_eq!(
        deployments.get("catalog").await.unwrap().metadata.generation,
        Some(1),
        "nothing changes before approval"
    );
    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let spec = deployments.get("catalog").await.unwrap().spec.unwrap().template.spec.unwrap();
    assert!(
        spec.node_selector.unwrap_or_default().is_empty(),
        "only the unsatisfiable key was there, and it is gone"
    );
    ready_pods(&stack, "catalog", 2).await;
    let endpoints: Api<Endpoints> = Api::namespaced(stack.kube().await, "default");
    stack
        .eventually("the Service to have endpoints", FIX_TIMEOUT, async || {
            let e = endpoints.get_opt("catalog").await.unwrap();
            let ready = e
                .as_ref()
                .and_then(|e| e.subsets.as_ref())
                .map(|s| s.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum::<usize>())
                .unwrap_or(0);
            ((ready == 2).then_some(()), format!("{e:?}"))
        })
        .await;
}
}

e2e_test! {
async fn a_claim_of_a_missing_storage_class_is_recreated_with_the_default_after_approval() {
    let stack = Stack::start(Options::default()).await;
    stack
        .create_all(include_str!("../../../k8s/scenarios/pvc-missing-class.yaml"))
        .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(stack.kube().await, "default");
    let before = claims.get("uploads").await.unwrap();
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(waiting["signature"], "unschedulable/volume_claim", "{waiting}");
    let plan = &waiting["pending_plan"]["plan"]["action"];
    assert_eq!(
        (plan["action"].as_str(), plan["claim"].as_str(), plan["storage_class"].as_str()),
        (Some("recreate_claim"), Some("uploads"), Some("standard")),
        "{waiting}"
    );
    assert_eq!(
        claims.get("uploads").await.unwrap().metadata.uid,
        before.metadata.uid,
        "nothing changes before approval"
    );
    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let after = claims.get("uploads").await.unwrap();
    assert_ne!(after.metadata.uid, before.metadata.uid);
    let spec = after.spec.clone().unwrap();
    assert_eq!(spec.storage_class_name.as_deref(), Some("standard"));
    assert_eq!(
        (spec.access_modes, spec.resources),
        (before.spec.clone().unwrap().access_modes, before.spec.unwrap().resources),
        "everything else is preserved"
    );
    assert_eq!(after.metadata.labels, before.metadata.labels);
    assert_eq!(after.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    ready_pods(&stack, "uploader", 1).await;
}
}

e2e_test! {
async fn a_command_the_image_lacks_is_dropped_after_approval_and_the_image_entrypoint_runs() {
    let stack = Stack::start(Options::default()).await;
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/bad-command.yaml"))
        .await;
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(waiting["signature"], "crash_loop/exit_127", "{waiting}");
    let command = waiting["pending_plan"]["command"].as_str().unwrap();
    assert!(
        command.contains("deployment/storefront") && command.contains(r#""command":null"#),
        "{command}"
    );
    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let c = template_container(&deployments, "storefront").await;
    assert_eq!((c.command, c.args), (None, None));
    assert_eq!(c.image.as_deref(), Some("nginx:1.27"), "nothing else changed");
    let pods = ready_pods(&stack, "storefront", 1).await;
    assert_eq!(restarts(&pods[0]), 0, "{:?}", pods[0].status);
}
}

e2e_test! {
async fn a_command_missing_from_an_image_whose_entrypoint_runs_nothing_is_handed_over_unchanged() {
    let stack = Stack::start(Options::default()).await;
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/bad-command-busybox.yaml"))
        .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("image's own entrypoint is `sh`")
            && outcome.contains("set the image that contains `/usr/local/bin/worker-server`"),
        "{outcome}"
    );
    assert!(audit_verbs(&detail).is_empty(), "nothing changed: {detail}");
    let c = template_container(&deployments, "worker").await;
    assert!(c.command.is_some(), "the command is kept");
    assert_eq!(deployments.get("worker").await.unwrap().metadata.generation, Some(1));
}
}

e2e_test! {
async fn a_bare_pod_whose_command_the_image_lacks_is_recreated_without_it_after_approval() {
    let stack = Stack::start(Options::default()).await;
    stack
        .create_all(include_str!("../../../k8s/scenarios/bad-command-pod.yaml"))
        .await;
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(waiting["signature"], "crash_loop/start_error", "{waiting}");
    assert_eq!(waiting["pending_plan"]["plan"]["action"]["action"], "drop_command", "{waiting}");
    stack.approve(&waiting).await;
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    let pods = ready_pods(&stack, "storefront-solo", 1).await;
    let spec = pods[0].spec.clone().unwrap();
    assert_eq!(spec.containers[0].command, None);
    assert_eq!(spec.containers[0].ports.as_ref().map(Vec::len), Some(1), "the rest of the spec is kept");
    assert_eq!(restarts(&pods[0]), 0);
}
}

e2e_test! {
async fn a_taint_nothing_tolerates_is_handed_over_naming_the_taint_and_the_toleration() {
    let stack = Stack::start(Options::default()).await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(stack.kube().await);
    let node = nodes.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    let taint = json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    nodes
        .patch(&node, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(taint))
        .await
        .unwrap();
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/bad-readiness.yaml"))
        .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["signature"].as_str()),
        (Some("escalated"), Some("unschedulable/taint")),
        "{detail}"
    );
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains(&format!("node {node} has taint dedicated=gpu:NoSchedule"))
            && outcome.contains("{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}"),
        "{outcome}"
    );
    assert!(audit_verbs(&detail).is_empty(), "nothing changed: {detail}");
    assert_eq!(
        deployments.get("gateway").await.unwrap().metadata.generation,
        Some(1)
    );
}
}
