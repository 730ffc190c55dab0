//! End to end: the three real binaries on loopback, driven through their public interfaces only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use support::{
    FIX_TIMEOUT, Options, Stack, audit_verbs, awaiting_approval, finished_incident, is_ready,
    template_container,
};

/// The tags simcluster's registry really has for a repository.
async fn registry_tags(stack: &Stack, repo: &str) -> Vec<String> {
    let v: Value = reqwest::get(format!("{}/v2/{repo}/tags/list", stack.sim_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

async fn resolved_incident(stack: &Stack) -> Value {
    stack
        .eventually("the incident to be resolved", FIX_TIMEOUT, async || {
            let list = stack.get("/api/v1/reflexion/incidents").await;
            let done = list["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["state"] == "resolved")
                .cloned();
            (done, list.to_string())
        })
        .await
}

e2e_test! {
async fn seed_scenario_bad_tag_on_a_bare_pod_is_fixed_verified_and_remembered() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // What `kubectl run test-nginx --image=nginx:bu-tag-yok` creates.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "test-nginx", "labels": {"run": "test-nginx"}},
        "spec": {"containers": [{"name": "test-nginx", "image": "nginx:bu-tag-yok"}], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();

    let incident = resolved_incident(&stack).await;
    let fixed = pods.get("test-nginx").await.unwrap();
    assert!(is_ready(&fixed), "pod not Ready: {:?}", fixed.status);
    assert_eq!(
        fixed.metadata.uid, created.metadata.uid,
        "the image was changed in place: the same pod, not a new one"
    );
    let image = fixed.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap();
    let tag = image
        .strip_prefix("nginx:")
        .unwrap_or_else(|| panic!("repository changed: {image}"));
    assert!(
        registry_tags(&stack, "library/nginx")
            .await
            .contains(&tag.to_string()),
        "{image} is not in the registry"
    );
    assert_eq!(image, "nginx:1.27.3", "newest stable nginx in the catalog");
    // The whole spec was preserved: labels and the rest of the pod are as the user wrote them.
    assert_eq!(
        fixed
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("run")
            .map(String::as_str),
        Some("test-nginx")
    );
    assert!(fixed.metadata.owner_references.is_none());

    // One report, one incident: the watcher did not report every status update.
    let all = stack.get("/api/v1/reflexion/incidents").await;
    assert_eq!(all["total_count"], 1, "{all}");
    let detail = stack
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            incident["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        detail["workload"],
        json!({"kind": "Pod", "name": "test-nginx"})
    );
    assert_eq!(detail["signature"], "image_pull/not_found");
    let states: Vec<&str> = detail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "reported",
            "diagnosing",
            "planning",
            "executing",
            "verifying",
            "resolved"
        ]
    );
    assert_eq!(detail["episodes"].as_array().unwrap().len(), 1);
    assert_eq!(
        detail["episodes"][0]["command"],
        "kubectl set image pod/test-nginx test-nginx=nginx:1.27.3 -n default"
    );
    assert_eq!(detail["audit"][0]["verb"], "set_image");
    assert_eq!(detail["audit"][0]["result"], "ok");
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(stack.kube().await, "default");
    let fixed_events = events
        .list(
            &kube::api::ListParams::default()
                .fields("involvedObject.name=test-nginx,reason=ReflexionFixed"),
        )
        .await
        .unwrap();
    assert!(
        fixed_events.items.iter().any(|e| e
            .message
            .as_deref()
            .is_some_and(|m| m.contains("kubectl set image pod/test-nginx"))),
        "{:?}",
        fixed_events.items
    );

    let episodes = stack.get("/api/v1/reflexion/memory/episodic").await;
    assert_eq!(episodes["total_count"], 1, "{episodes}");
    let episode = &episodes["episodes"][0];
    assert_eq!(episode["success"], true);
    assert_eq!(episode["verification"]["verified"], true);
    assert!(
        episode["reflection"].as_str().unwrap().contains("fix held"),
        "{episode}"
    );
    assert_eq!(episode["lessons_learned"].as_array().unwrap().len(), 1);

    let strategies = stack
        .get("/api/v1/reflexion/strategies?error_type=ImagePullBackOff")
        .await;
    assert_eq!(strategies["total_count"], 1, "{strategies}");
    let s = &strategies["strategies"][0];
    assert_eq!(
        (
            s["type"].as_str(),
            s["successes"].as_i64(),
            s["usage_count"].as_i64()
        ),
        (Some("ImagePullBackOff"), Some(1), Some(1))
    );
    assert!((s["confidence"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);

    let cleared = stack.delete("/api/v1/memory/clear").await;
    assert_eq!(
        cleared["deleted"],
        json!({"episodes": 1, "lessons": 1, "strategies": 1})
    );
    assert_eq!(
        stack.get("/api/v1/reflexion/memory/episodic").await["total_count"],
        0
    );
    assert_eq!(
        stack.get("/api/v1/reflexion/strategies").await["total_count"],
        0
    );
    // The incident record stays: it is the record of what was done to the cluster.
    assert_eq!(
        stack.get("/api/v1/reflexion/incidents").await["total_count"],
        1
    );
}
}

e2e_test! {
async fn bad_tag_on_a_deployment_is_fixed_at_the_deployment() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.27.O", "ports": [{"containerPort": 80}]}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    let incident = resolved_incident(&stack).await;
    assert_eq!(
        incident["workload"],
        json!({"kind": "Deployment", "name": "web"})
    );

    // The fix is in the Deployment's template (a typo one edit away from a real tag), not in some pod.
    let web = deployments.get("web").await.unwrap();
    let container = &web
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(container.image.as_deref(), Some("nginx:1.27.3"));
    assert_eq!(
        container.ports.as_ref().unwrap()[0].container_port,
        80,
        "the rest of the template is untouched"
    );
    let status = web.status.unwrap();
    assert_eq!(
        (status.ready_replicas, status.updated_replicas),
        (Some(2), Some(2))
    );

    let pods: Api<Pod> = Api::namespaced(client, "default");
    let running = pods
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(running.items.len(), 2);
    assert!(running.items.iter().all(|p| is_ready(p)
        && p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:1.27.3")));

    let detail = stack
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            incident["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail["episodes"][0]["action"]["action"], "set_image");
    assert_eq!(
        detail["episodes"][0]["command"],
        "kubectl set image deployment/web web=nginx:1.27.3 -n default"
    );
    assert_eq!(
        stack.get("/api/v1/reflexion/incidents").await["total_count"],
        1,
        "two failing pods, one incident"
    );
}
}

e2e_test! {
async fn incidents_beyond_the_concurrency_limit_wait_their_turn_and_all_finish() {
    let stack = Stack::start(Options {
        watcher: false,
        extra_args: vec!["--max-concurrent-incidents".into(), "2".into()],
        ..Options::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (code, r) = stack
            .post(
                "/api/v1/reflexion/process-with-k8s-data",
                json!({"pod_name": format!("ghost-{i}"), "namespace": "default", "error_type": "ImagePullBackOff"}),
            )
            .await;
        assert_eq!(code, 202, "{r}");
        ids.push(r["incident_id"].as_str().unwrap().to_string());
    }
    // Two at a time, each one's pod gone: every one is worked and closed, none left waiting.
    stack
        .eventually("every incident to finish", FIX_TIMEOUT, async || {
            let mut states = Vec::new();
            for id in &ids {
                let i = stack.get(&format!("/api/v1/reflexion/incidents/{id}")).await;
                states.push(i["state"].as_str().unwrap_or_default().to_string());
            }
            (states.iter().all(|s| s == "dismissed").then_some(()), format!("{states:?}"))
        })
        .await;
}
}

e2e_test! {
async fn a_report_seen_before_the_workloads_incident_finished_belongs_to_that_incident() {
    let stack = Stack::start(Options {
        watcher: false,
        ..Options::default()
    })
    .await;
    let report = |key: &str, detected_at: &str| {
        json!({"pod_name": "ghost", "namespace": "default", "error_type": "ImagePullBackOff", "idempotency_key": key,
               "real_k8s_data": {"detected_at": detected_at}})
    };
    let seen = chrono::Utc::now().to_rfc3339();
    let (code, first) = stack
        .post(
            "/api/v1/reflexion/process-with-k8s-data",
            report("a", &seen),
        )
        .await;
    assert_eq!(
        (code, first["duplicate"].as_bool()),
        (202, Some(false)),
        "{first}"
    );
    let id = first["incident_id"].as_str().unwrap().to_string();
    stack
        .eventually("the incident to finish", FIX_TIMEOUT, async || {
            let i = stack
                .get(&format!("/api/v1/reflexion/incidents/{id}"))
                .await;
            ((i["state"] == "dismissed").then_some(()), i.to_string())
        })
        .await;
    // Delivered late (a spool, a slow network): seen while the incident worked, so it is that incident's.
    let (_, late) = stack
        .post(
            "/api/v1/reflexion/process-with-k8s-data",
            report("b", &seen),
        )
        .await;
    assert_eq!(
        (late["incident_id"].as_str(), late["duplicate"].as_bool()),
        (Some(id.as_str()), Some(true)),
        "{late}"
    );
    // Seen after it finished: a new incident.
    let (_, fresh) = stack
        .post(
            "/api/v1/reflexion/process-with-k8s-data",
            report("c", &chrono::Utc::now().to_rfc3339()),
        )
        .await;
    assert_eq!(fresh["duplicate"], false, "{fresh}");
    assert_ne!(fresh["incident_id"].as_str(), Some(id.as_str()));
}
}

e2e_test! {
async fn warnings_of_another_workload_with_a_longer_name_do_not_fail_a_fix() {
    let stack = Stack::start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let deployment = |name: &str, container: Value| -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}
        }))
        .unwrap()
    };
    // `web-api` fails its readiness probe every second (Unhealthy warnings all along) at revision 2, the revision
    // `web` is at once fixed: a check by name prefix and revision number would take them for web's.
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": 80}, "periodSeconds": 1});
    deployments
        .create(
            &PostParams::default(),
            &deployment(
                "web-api",
                json!({"name": "api", "image": "nginx:1.27", "readinessProbe": probe("/nope")}),
            ),
        )
        .await
        .unwrap();
    let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        Api::namespaced(stack.kube().await, "default");
    stack
        .eventually("web-api's first revision", FIX_TIMEOUT, async || {
            let n = rs.list(&Default::default()).await.unwrap().items.len();
            ((n == 1).then_some(()), n.to_string())
        })
        .await;
    // Recreate: revision 1's pod goes, so every warning comes from revision 2's.
    deployments
        .patch(
            "web-api",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null},
                "template": {"spec": {"containers": [{"name": "api", "readinessProbe": probe("/still-nope")}]}}}})),
        )
        .await
        .unwrap();
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", json!({"name": "web", "image": "nginx:1.27.O"})),
        )
        .await
        .unwrap();
    let web = stack
        .eventually("web's incident to finish", FIX_TIMEOUT, async || {
            let list = stack.get("/api/v1/reflexion/incidents").await;
            let web = list["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| {
                    i["workload"]["name"] == "web"
                        && ![
                            "reported",
                            "diagnosing",
                            "planning",
                            "executing",
                            "verifying",
                        ]
                        .contains(&i["state"].as_str().unwrap_or(""))
                })
                .cloned();
            (web, list.to_string())
        })
        .await;
    let detail = stack
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            web["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        (web["state"].as_str(), web["trials"].as_i64()),
        (Some("resolved"), Some(1)),
        "the first fix held: {detail}"
    );
}
}

e2e_test! {
async fn bad_reports_get_precise_errors_and_change_nothing() {
    let stack = Stack::start(Options {
        watcher: false,
        ..Options::default()
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/reflexion/process-with-k8s-data", stack.api_url);
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("application/json", "{not json", 400, "invalid_json"),
        (
            "text/plain",
            r#"{"pod_name":"a","namespace":"default","error_type":"ImagePullBackOff"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "application/json",
            r#"{"pod_name":"a"}"#,
            422,
            "invalid_body",
        ),
        (
            "application/json",
            r#"{"pod_name":"Bad_Name","namespace":"default","error_type":"ImagePullBackOff"}"#,
            422,
            "invalid_report",
        ),
        (
            "application/json",
            r#"{"pod_name":"a","namespace":"default","error_type":"Image Pull"}"#,
            422,
            "invalid_report",
        ),
    ];
    for (content_type, body, status, code) in cases {
        let resp = http
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    let huge = format!(
        r#"{{"pod_name":"a","namespace":"default","error_type":"X","real_k8s_data":{{"pod":{{"x":"{}"}}}}}}"#,
        "a".repeat(2 * 1024 * 1024)
    );
    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    assert_eq!(
        stack.get("/api/v1/reflexion/incidents").await["total_count"],
        0
    );
    let missing = reqwest::get(format!("{}/api/v1/reflexion/incidents/nope", stack.api_url))
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let health = stack.get("/health").await;
    assert_eq!(
        (health["status"].as_str(), health["database"].as_str()),
        (Some("healthy"), Some("ok"))
    );
}
}

fn memory_limit(spec: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    spec.containers[0]
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

e2e_test! {
async fn seed_oom_scenario_raises_the_limit_twice_reverting_the_first_that_did_not_hold() {
    let stack = Stack::start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    // The seed's scenario 3, with the 10Mi limit set at creation (a pod's resources cannot be changed later).
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "memory-app", "labels": {"run": "memory-app"}},
        "spec": {"containers": [{"name": "memory-app", "image": "polinux/stress", "args": ["--vm", "1", "--vm-bytes", "500M"],
                                 "resources": {"limits": {"memory": "10Mi"}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();

    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(detail["signature"], "oom_killed/memory_limit");
    // 10Mi -> 266Mi (max(2x, +256Mi)) is still below the 500M stress uses: OOM-killed again, reverted;
    // then 532Mi holds.
    let episodes = detail["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 2, "{detail}");
    assert_eq!(
        (
            episodes[0]["success"].as_bool(),
            episodes[0]["reverted"].as_bool()
        ),
        (Some(false), Some(true))
    );
    assert_eq!(episodes[0]["action"]["memory_limit"], "266Mi");
    assert!(
        episodes[0]["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("OOMKilled"),
        "{}",
        episodes[0]["verification"]
    );
    assert_eq!(
        (
            episodes[1]["success"].as_bool(),
            episodes[1]["action"]["memory_limit"].as_str()
        ),
        (Some(true), Some("532Mi"))
    );
    assert!(
        episodes[1]["rationale"].as_str().unwrap().contains("266Mi"),
        "the second trial starts from the first"
    );
    let verbs = audit_verbs(&detail);
    assert_eq!(verbs, ["set_resources", "revert", "set_resources"]);

    let fixed = pods.get("memory-app").await.unwrap();
    assert!(is_ready(&fixed));
    let spec = fixed.spec.unwrap();
    assert_eq!(memory_limit(&spec).as_deref(), Some("532Mi"));
    assert_eq!(
        spec.containers[0].args.as_ref().unwrap().join(" "),
        "--vm 1 --vm-bytes 500M",
        "the rest of the spec is preserved"
    );

    let strategies = stack
        .get("/api/v1/reflexion/strategies?error_type=OOMKilled")
        .await;
    let s = &strategies["strategies"][0];
    assert_eq!(
        (
            s["successes"].as_i64(),
            s["failures"].as_i64(),
            s["usage_count"].as_i64()
        ),
        (Some(1), Some(1), Some(2)),
        "{strategies}"
    );

    // The same failure again on the same workload: the learned limit, one trial.
    pods.delete("memory-app", &Default::default())
        .await
        .unwrap();
    stack
        .eventually("the old pod to go", FIX_TIMEOUT, async || {
            (
                pods.get_opt("memory-app")
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(()),
                String::new(),
            )
        })
        .await;
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let second = stack
        .eventually("a second incident, resolved", FIX_TIMEOUT, async || {
            let list = stack
                .get("/api/v1/reflexion/incidents?state=resolved")
                .await;
            (
                (list["total_count"] == 2).then(|| list["incidents"][0].clone()),
                list.to_string(),
            )
        })
        .await;
    let detail = stack
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            second["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail["trials"], 1, "{detail}");
    let episode = &detail["episodes"][0];
    assert_eq!(
        (
            episode["source"].as_str(),
            episode["action"]["memory_limit"].as_str()
        ),
        (Some("learned"), Some("532Mi")),
        "{episode}"
    );
    let s = &stack
        .get("/api/v1/reflexion/strategies?error_type=OOMKilled")
        .await["strategies"][0];
    assert_eq!(
        (s["successes"].as_i64(), s["usage_count"].as_i64()),
        (Some(2), Some(3))
    );
}
}

e2e_test! {
async fn oom_in_a_deployment_is_fixed_at_the_deployment_keeping_the_request() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "memory-app"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "memory-app"}},
                 "template": {"metadata": {"labels": {"app": "memory-app"}},
                              "spec": {"containers": [{"name": "memory-app", "image": "polinux/stress:1.0.4", "args": ["--vm", "1", "--vm-bytes", "300M"],
                                                       "resources": {"requests": {"memory": "64Mi"}, "limits": {"memory": "128Mi"}}}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["trials"].as_i64()),
        (Some("resolved"), Some(1)),
        "{detail}"
    );
    assert_eq!(
        detail["workload"],
        json!({"kind": "Deployment", "name": "memory-app"})
    );
    assert_eq!(
        detail["episodes"][0]["command"],
        "kubectl set resources deployment/memory-app -c memory-app --limits=memory=384Mi -n default"
    );
    let d = deployments.get("memory-app").await.unwrap();
    let spec = d.spec.unwrap().template.spec.unwrap();
    let res = spec.containers[0].resources.clone().unwrap();
    assert_eq!(res.limits.unwrap()["memory"].0, "384Mi");
    assert_eq!(
        res.requests.unwrap()["memory"].0,
        "64Mi",
        "request kept, still below the limit"
    );
}
}

e2e_test! {
async fn a_file_written_to_tmp_past_the_limit_is_an_oom_fixed_by_raising_the_limit() {
    let stack = Stack::start(Options::default()).await;
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../k8s/scenarios/oom-tmpfile.yaml"
    ))
    .unwrap();
    let deployments = stack.create_deployment(&yaml).await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["signature"].as_str()),
        (Some("resolved"), Some("oom_killed/memory_limit")),
        "{detail}"
    );
    assert_eq!(
        detail["episodes"][0]["command"],
        "kubectl set resources deployment/cache-warmer -c web --limits=memory=512Mi -n default"
    );
    let c = template_container(&deployments, "cache-warmer").await;
    assert_eq!(
        c.command.unwrap().join(" "),
        "/bin/sh -c dd if=/dev/zero of=/tmp/warm bs=1M count=300 && exec nginx -g 'daemon off;'",
        "the command is left as it is"
    );
}
}

e2e_test! {
async fn a_one_replica_deployment_keeps_its_pod_through_a_broken_rollout_and_is_rolled_back() {
    let stack = Stack::start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    // What `kubectl create deployment w --image=busybox:1.36 -- sh -c "sleep 100000"` sends: `strategy: {}`,
    // which the API server defaults to RollingUpdate 25%/25% (maxUnavailable 0 for one replica).
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "w", "labels": {"app": "w"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "w"}}, "strategy": {},
                 "template": {"metadata": {"labels": {"app": "w"}},
                              "spec": {"containers": [{"name": "busybox", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 100000"]}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let first = stack
        .eventually("the first pod Ready", FIX_TIMEOUT, async || {
            let list = pods.list(&Default::default()).await.unwrap();
            let ready = list.items.into_iter().find(is_ready);
            (ready.clone(), format!("{ready:?}"))
        })
        .await;
    deployments
        .patch(
            "w",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [{"name": "busybox", "command": ["sh", "-c", "exit 1"]}]}}}})),
        )
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(
        detail["episodes"][0]["action"]["action"], "rollout_undo",
        "{detail}"
    );
    // The working pod never went away: the rollback brought the Deployment back to it.
    let still = pods
        .get(first.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert!(is_ready(&still) && still.metadata.deletion_timestamp.is_none());
    let c = template_container(&deployments, "w").await;
    assert_eq!(c.command.unwrap().join(" "), "sh -c sleep 100000");
}
}

e2e_test! {
async fn seed_crash_scenario_is_escalated_with_exit_code_and_logs_and_nothing_changes() {
    let stack = Stack::start(Options::default()).await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    // `kubectl run crash-app --image=busybox -- sh -c "echo 'Başladım'; sleep 5; exit 1"`
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "crash-app", "labels": {"run": "crash-app"}},
        "spec": {"containers": [{"name": "crash-app", "image": "busybox", "args": ["sh", "-c", "echo 'Başladım'; sleep 5; exit 1"]}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    assert_eq!(detail["signature"], "crash_loop/exit_1");
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("keeps crashing with exit code 1") && outcome.contains("Başladım"),
        "{outcome}"
    );
    assert!(
        detail["audit"].as_array().unwrap().is_empty(),
        "an escalation writes nothing to the cluster"
    );
    assert!(detail["episodes"].as_array().unwrap().is_empty());
    let now = pods.get("crash-app").await.unwrap();
    assert_eq!(
        now.metadata.uid, created.metadata.uid,
        "the pod was not touched"
    );
}
}

e2e_test! {
async fn a_missing_secret_is_escalated_by_name_and_the_deployment_is_untouched() {
    let stack = Stack::start(Options::default()).await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "api"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "kubereflexion/demo-app:1.2.0",
                                  "env": [{"name": "DATABASE_URL", "value": "postgres://db/app"},
                                          {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}}]}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["signature"].as_str()),
        (Some("escalated"), Some("config_error/missing_secret")),
        "{detail}"
    );
    assert!(
        detail["outcome"]
            .as_str()
            .unwrap()
            .contains("secret \"db-credentials\" not found"),
        "{detail}"
    );
    assert_eq!(
        deployments.get("api").await.unwrap().metadata.generation,
        Some(1),
        "the Deployment was not changed"
    );
}
}

e2e_test! {
async fn a_crash_that_began_with_the_latest_rollout_is_rolled_back() {
    let stack = Stack::start(Options::default()).await;
    let deployments = running_web(&stack).await;
    // Revision 2 crashes at start.
    let broken = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "command": ["sh", "-c", "echo boom; exit 1"]}]}}}});
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(broken),
        )
        .await
        .unwrap();

    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["trials"].as_i64()),
        (Some("resolved"), Some(1)),
        "{detail}"
    );
    let episode = &detail["episodes"][0];
    assert_eq!(
        episode["action"],
        json!({"action": "rollout_undo", "target": {"kind": "Deployment", "namespace": "default", "name": "web"}, "to_revision": 1})
    );
    assert_eq!(
        episode["command"],
        "kubectl rollout undo deployment/web --to-revision=1 -n default"
    );
    assert!(
        episode["rationale"]
            .as_str()
            .unwrap()
            .contains("with revision 2"),
        "{episode}"
    );
    let web = deployments.get("web").await.unwrap();
    let c = &web.spec.unwrap().template.spec.unwrap().containers[0];
    assert_eq!(
        (c.image.as_deref(), c.command.as_ref()),
        (Some("nginx:1.27"), None),
        "the template is revision 1's again"
    );
    assert_eq!(
        web.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "3",
        "rolling back makes revision 1 the newest, as 3"
    );
}
}

async fn create_config_map(client: &kube::Client, name: &str, data: Value) {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap(),
    )
    .await
    .unwrap();
}

fn demo_app() -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "demo-app"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "demo-app"}},
                 "template": {"metadata": {"labels": {"app": "demo-app"}},
                              "spec": {"containers": [{"name": "demo-app", "image": "kubereflexion/demo-app:1.2.0"}]}}}
    }))
    .unwrap()
}

e2e_test! {
async fn a_missing_env_var_named_in_the_logs_comes_from_the_only_config_map_key_of_that_name() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    create_config_map(
        &client,
        "app-config",
        json!({"DATABASE_URL": "postgres://db:5432/app", "LOG_LEVEL": "info"}),
    )
    .await;
    create_config_map(&client, "unrelated", json!({"OTHER": "x"})).await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .create(&PostParams::default(), &demo_app())
        .await
        .unwrap();

    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["trials"].as_i64()),
        (Some("resolved"), Some(1)),
        "{detail}"
    );
    assert_eq!(
        detail["episodes"][0]["command"],
        "kubectl set env deployment/demo-app -c demo-app --from=configmap/app-config --keys=DATABASE_URL -n default"
    );
    let c = &deployments
        .get("demo-app")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0];
    let env = c.env.as_ref().unwrap();
    assert_eq!(
        env.len(),
        1,
        "only the missing variable, nothing else: {env:?}"
    );
    let from = env[0]
        .value_from
        .as_ref()
        .unwrap()
        .config_map_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (env[0].name.as_str(), from.name.as_str(), from.key.as_str()),
        ("DATABASE_URL", "app-config", "DATABASE_URL")
    );
}
}

e2e_test! {
async fn an_ambiguous_missing_env_var_is_escalated_naming_the_candidates() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    create_config_map(
        &client,
        "staging-config",
        json!({"DATABASE_URL": "postgres://staging"}),
    )
    .await;
    create_config_map(
        &client,
        "prod-config",
        json!({"DATABASE_URL": "postgres://prod"}),
    )
    .await;
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .create(&PostParams::default(), &demo_app())
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("DATABASE_URL")
            && outcome.contains("ConfigMap prod-config")
            && outcome.contains("ConfigMap staging-config"),
        "{outcome}"
    );
    assert_eq!(
        deployments
            .get("demo-app")
            .await
            .unwrap()
            .metadata
            .generation,
        Some(1),
        "nothing changed"
    );
}
}

fn seed_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "test-nginx", "labels": {"run": "test-nginx"}},
        "spec": {"containers": [{"name": "test-nginx", "image": "nginx:bu-tag-yok"}]}
    }))
    .unwrap()
}

e2e_test! {
async fn in_approve_mode_nothing_runs_until_an_operator_approves() {
    let stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        ..Options::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let created = pods
        .create(&PostParams::default(), &seed_pod())
        .await
        .unwrap();
    let waiting = awaiting_approval(&stack).await;
    let id = waiting["id"].as_str().unwrap().to_string();
    assert!(
        waiting["pending_plan"]["command"]
            .as_str()
            .unwrap()
            .contains("nginx:1.27.3"),
        "{waiting}"
    );
    assert!(
        waiting["audit"].as_array().unwrap().is_empty(),
        "nothing ran before approval"
    );
    assert_eq!(
        pods.get("test-nginx").await.unwrap().metadata.uid,
        created.metadata.uid
    );

    let (status, body) = stack
        .post(
            &format!("/api/v1/reflexion/incidents/{id}/approve"),
            json!({"by": "sre-on-call"}),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (202, Some("approved")));
    let done = finished_incident(&stack).await;
    assert_eq!(done["state"], "resolved", "{done}");
    assert!(
        done["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["note"] == "approved by sre-on-call"),
        "{done}"
    );
    let image = pods
        .get("test-nginx")
        .await
        .unwrap()
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.27.3"));
    let (again, _) = stack
        .post(
            &format!("/api/v1/reflexion/incidents/{id}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(again, 409, "an incident is approved once");
}
}

e2e_test! {
async fn a_rejected_plan_never_runs() {
    let stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        ..Options::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let created = pods
        .create(&PostParams::default(), &seed_pod())
        .await
        .unwrap();
    let id = awaiting_approval(&stack).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = stack
        .post(
            &format!("/api/v1/reflexion/incidents/{id}/reject"),
            json!({"by": "sre-on-call", "reason": "maintenance window"}),
        )
        .await;
    assert_eq!(status, 200);
    let detail = stack
        .get(&format!("/api/v1/reflexion/incidents/{id}"))
        .await;
    assert_eq!(detail["state"], "escalated");
    assert!(
        detail["outcome"]
            .as_str()
            .unwrap()
            .starts_with("rejected by sre-on-call: maintenance window"),
        "{detail}"
    );
    assert!(detail["audit"].as_array().unwrap().is_empty());
    assert_eq!(
        pods.get("test-nginx").await.unwrap().metadata.uid,
        created.metadata.uid,
        "the pod was not touched"
    );
    assert_eq!(
        stack
            .post(
                &format!("/api/v1/reflexion/incidents/{id}/approve"),
                json!({})
            )
            .await
            .0,
        409
    );
    assert_eq!(
        stack
            .post("/api/v1/reflexion/incidents/no-such-id/approve", json!({}))
            .await
            .0,
        404
    );
}
}

e2e_test! {
async fn a_fix_that_is_ready_and_then_crashes_is_never_declared_resolved() {
    // Verification window 5 s real = 50 s simulated; every container of this pod exits 20 simulated seconds after
    // it starts, whatever image it runs.
    let stack = Stack::start(Options {
        verify_window_secs: 5.0,
        ..Options::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "flaky", "annotations": {"simcluster.io/exit-code": "1", "simcluster.io/exit-after": "20"}},
        "spec": {"containers": [{"name": "flaky", "image": "nginx:bu-tag-yok"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(
        detail["signature"], "image_pull/not_found",
        "one incident per workload: {detail}"
    );
    assert_ne!(detail["state"], "resolved", "{detail}");
    let episodes = detail["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 1, "{detail}");
    let e = &episodes[0];
    assert_eq!(e["success"], false, "{e}");
    let why = e["verification"]["detail"].as_str().unwrap();
    assert!(why.contains("died") || why.contains("restarted"), "{why}");
    // The image now pulls and the container runs before it dies: the tag was right, so the change is kept, and the
    // crash is a different fault the incident hands over with its exit code.
    assert_eq!(
        (e["verification"]["progress"].as_str(), e["reverted"].as_bool()),
        (Some("progress"), Some(false)),
        "{e}"
    );
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("exit code 1")
            && outcome.contains("Kept from earlier trials because they made progress: `kubectl set image"),
        "{outcome}"
    );
    // The pod shows the crash now, not the image: it runs the tag the trial set.
    let now = pods.get("flaky").await.unwrap();
    assert_eq!(
        now.spec.unwrap().containers[0].image,
        e["action"]["image"].as_str().map(String::from)
    );
}
}

e2e_test! {
async fn a_new_pod_of_a_fixed_deployment_that_restarts_during_the_window_fails_verification() {
    // The Deployment's status counts no restarts: the container exits 20 simulated seconds after it starts and the
    // kubelet restarts it at once (the first restart has no back-off, so no Warning), Ready again. Verification
    // must see the restart itself, within the 50 s (simulated) window.
    let stack = Stack::start(Options {
        verify_window_secs: 5.0,
        ..Options::default()
    })
    .await;
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "blinker"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "blinker"}},
                 "template": {"metadata": {"labels": {"app": "blinker"},
                                           "annotations": {"simcluster.io/exit-code": "1", "simcluster.io/exit-after": "20"}},
                              "spec": {"containers": [{"name": "blinker", "image": "nginx:bu-tag-yok"}]}}}
    }))
    .unwrap();
    deployments.create(&PostParams::default(), &d).await.unwrap();
    let detail = finished_incident(&stack).await;
    assert_ne!(detail["state"], "resolved", "{detail}");
    let first = &detail["episodes"][0];
    let why = first["verification"]["detail"].as_str().unwrap();
    assert!(
        why.contains("a container restarted during verification") && why.contains("of the current revision"),
        "{why}"
    );
}
}

e2e_test! {
async fn a_cronjobs_failing_pod_is_the_same_workload_for_the_watcher_and_the_engine() {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    // A daily CronJob: the fix is proven by a run the product starts, which this policy allows.
    let stack = Stack::start(Options {
        policy: Some(r#"{"trigger_cronjob_runs": true}"#),
        ..Options::default()
    })
    .await;
    let client = stack.kube().await;
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "busybox:bu-tag-yok"}]}});
    let cron: CronJob = serde_json::from_value(json!({"metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}}))
    .unwrap();
    let cron = Api::<CronJob>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cron)
        .await
        .unwrap();
    // The Job the CronJob controller would create at 03:00, owned by it.
    let job: Job = serde_json::from_value(json!({"metadata": {"name": "nightly-29000000",
        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly",
                             "uid": cron.metadata.uid, "controller": true}]},
        "spec": {"backoffLimit": 0, "template": template}}))
    .unwrap();
    Api::<Job>::namespaced(client, "default")
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["workload"]["kind"].as_str(), detail["workload"]["name"].as_str()),
        (Some("CronJob"), Some("nightly")),
        "{detail}"
    );
    // The engine found the CronJob's pod (through its Job) and worked on the CronJob, not on the Job.
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(!outcome.contains("no live pod"), "{outcome}");
    assert_eq!(detail["evidence"]["owner_chain"][2]["kind"], "CronJob", "{detail}");
    // Fixed at the CronJob's jobTemplate, proven by the run started for it.
    assert_eq!(detail["state"], "resolved", "{detail}");
    let commands = support::audit_commands(&detail);
    assert_eq!(commands.len(), 2, "{detail}");
    assert!(commands[0].starts_with("kubectl set image cronjob/nightly report=busybox:"), "{commands:?}");
    let run = commands[1];
    assert!(
        run.starts_with("kubectl create job nightly-reflexion-") && run.ends_with(" --from=cronjob/nightly -n default"),
        "{run}"
    );
    assert!(outcome.contains("the first run after the change, Job nightly-reflexion-"), "{outcome}");
}
}

e2e_test! {
async fn the_circuit_breaker_stops_a_second_action_within_the_hour() {
    let stack = Stack::start(Options {
        api_args: &["--max-actions-per-hour", "1"],
        ..Options::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "memory-app"},
        "spec": {"containers": [{"name": "memory-app", "image": "polinux/stress", "args": ["--vm", "1", "--vm-bytes", "500M"],
                                 "resources": {"limits": {"memory": "10Mi"}}}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    assert!(
        detail["outcome"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open: 1 actions in the last hour, the limit is 1"),
        "{detail}"
    );
    let verbs = audit_verbs(&detail);
    assert_eq!(
        verbs,
        ["set_resources", "revert"],
        "the first trial ran and was reverted; the second never ran"
    );
    let spec = pods.get("memory-app").await.unwrap().spec.unwrap();
    assert_eq!(
        memory_limit(&spec).as_deref(),
        Some("10Mi"),
        "back to the original spec"
    );
}
}

e2e_test! {
async fn when_rollback_and_retag_both_apply_thompson_sampling_chooses_and_says_so() {
    let stack = Stack::start(Options {
        api_args: &["--exploration-rate", "0"],
        ..Options::default()
    })
    .await;
    let deployments = running_web(&stack).await;
    let typo = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27.9"}]}}}});
    deployments
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(typo),
        )
        .await
        .unwrap();

    let detail = finished_incident(&stack).await;
    assert_eq!(
        (detail["state"].as_str(), detail["trials"].as_i64()),
        (Some("resolved"), Some(1)),
        "{detail}"
    );
    let episode = &detail["episodes"][0];
    let rationale = episode["rationale"].as_str().unwrap();
    assert!(
        rationale.contains("chosen by Thompson sampling among rollout_undo:previous_running_revision (0 verified, 0 failed), set_image:registry_tag (0 verified, 0 failed)"),
        "{rationale}"
    );
    let image = template_container(&deployments, "web").await.image.unwrap();
    match episode["action"]["action"].as_str().unwrap() {
        "rollout_undo" => assert_eq!(image, "nginx:1.27"),
        "set_image" => assert_eq!(image, "nginx:1.27.3"),
        other => panic!("unexpected action {other}"),
    }
}
}

/// A Deployment `web` (2 × nginx:1.27) whose first revision is fully available.
async fn running_web(stack: &Stack) -> Api<Deployment> {
    let deployments: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    stack
        .eventually("revision 1 available", FIX_TIMEOUT, async || {
            let d = deployments.get("web").await.unwrap();
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            ((available == 2).then_some(()), format!("{:?}", d.status))
        })
        .await;
    deployments
}

e2e_test! {
async fn a_workload_that_fails_again_within_the_cooldown_is_handed_over() {
    let stack = Stack::start(Options {
        workload_cooldown_secs: 600.0,
        ..Options::default()
    })
    .await;
    let deployments = stack
        .create_deployment(include_str!("../../../k8s/scenarios/oom-deployment.yaml"))
        .await;
    let first = finished_incident(&stack).await;
    assert_eq!(first["state"], "resolved", "{first}");
    // It needs more memory again right away.
    let more = json!({"spec": {"template": {"spec": {"containers": [{"name": "memory-app", "args": ["--vm", "1", "--vm-bytes", "900M"]}]}}}});
    deployments
        .patch(
            "memory-app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(more),
        )
        .await
        .unwrap();
    let generation = stack
        .eventually("a second incident to finish", FIX_TIMEOUT, async || {
            let list = stack.get("/api/v1/reflexion/incidents").await;
            let second = list["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] != first["id"] && i["state"] == "escalated")
                .cloned();
            (second, list.to_string())
        })
        .await;
    let second = stack
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            generation["id"].as_str().unwrap()
        ))
        .await;
    let outcome = second["outcome"].as_str().unwrap();
    assert!(outcome.contains("within the 600s cooldown"), "{outcome}");
    assert!(second["audit"].as_array().unwrap().is_empty(), "{second}");
}
}

e2e_test! {
async fn a_revert_the_api_refuses_is_recorded_as_not_reverted_with_the_reason() {
    // The fix holds long enough to be verifying; then the Deployment is deleted under it. Verification fails, the
    // revert finds no Deployment to patch back (404): the episode must say it was not reverted, and why.
    let stack = Stack::start(Options {
        verify_window_secs: 6.0,
        ..Options::default()
    })
    .await;
    let deployments = stack
        .create_deployment(
            support::BAD_TAG_WEB,
        )
        .await;
    stack
        .eventually("the incident to verify", FIX_TIMEOUT, async || {
            let list = stack
                .get("/api/v1/reflexion/incidents?state=verifying")
                .await;
            (list["incidents"][0]["id"].as_str().map(String::from), list.to_string())
        })
        .await;
    deployments
        .delete("web", &Default::default())
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    let first = &detail["episodes"][0];
    assert_eq!(first["success"], false, "{detail}");
    assert_eq!(first["reverted"], false, "{first}");
    let revert = &first["execution"]["revert"];
    assert_eq!(revert["outcome"], "failed", "{revert}");
    assert!(
        revert["detail"].as_str().unwrap().contains("not found"),
        "{revert}"
    );
    let row = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["verb"] == "revert")
        .unwrap_or_else(|| panic!("no revert in the audit: {detail}"));
    assert!(
        row["result"].as_str().unwrap().starts_with("revert failed:"),
        "{row}"
    );
    let stats = stack.get("/api/v1/memory/statistics").await;
    assert_eq!(stats["episodes"]["reverted"], 0, "{stats}");
}
}
