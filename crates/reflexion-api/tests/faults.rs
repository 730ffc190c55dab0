//! The Kubernetes API failing under the executor (simcluster's injected faults): a write answered with a server
//! error is read back before anything else is done — in place, the incident goes on to verify it and it is never
//! made twice; not in place, the incident is handed over saying nothing was changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use serde_json::{Value, json};
use support::{BAD_TAG_WEB, Options, Stack, finished_incident, template_container};

async fn inject(stack: &Stack, fault: Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/simcluster/faults", stack.sim_url))
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

async fn pending_faults(stack: &Stack) -> Value {
    reqwest::get(format!("{}/simcluster/faults", stack.sim_url))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["faults"]
        .clone()
}

fn generation(d: &Deployment) -> i64 {
    d.metadata.generation.unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_with_500_after_it_landed_is_read_back_and_not_made_again() {
    let stack = Stack::start(Options::default()).await;
    inject(
        &stack,
        json!({"verb": "patch", "resource": "deployments", "name": "web", "status": 500, "after_write": true}),
    )
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        pending_faults(&stack).await,
        json!([]),
        "the fault hit the fix"
    );
    assert_eq!(
        (detail["state"].as_str(), detail["trials"].as_i64()),
        (Some("resolved"), Some(1)),
        "{detail}"
    );
    let audit = detail["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 1, "one write, no revert: {detail}");
    assert_eq!(
        (audit[0]["verb"].as_str(), audit[0]["result"].as_str()),
        (Some("set_image"), Some("ok"))
    );
    let d = api.get("web").await.unwrap();
    assert_eq!(generation(&d), 2, "the template changed once");
    assert_ne!(
        template_container(&api, "web").await.image.as_deref(),
        Some("nginx:1.27.O")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_with_500_before_it_landed_is_handed_over_with_nothing_changed() {
    let stack = Stack::start(Options::default()).await;
    inject(
        &stack,
        json!({"verb": "patch", "resource": "deployments", "name": "web", "status": 500}),
    )
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "escalated", "{detail}");
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("not in place, nothing was changed"),
        "{outcome}"
    );
    let audit = detail["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 1, "{detail}");
    assert!(
        audit[0]["result"].as_str().unwrap().starts_with("error:"),
        "{detail}"
    );
    let d = api.get("web").await.unwrap();
    assert_eq!(generation(&d), 1, "nothing was changed");
    assert_eq!(
        template_container(&api, "web").await.image.as_deref(),
        Some("nginx:1.27.O")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simcluster_refuses_a_fault_it_cannot_inject() {
    let stack = Stack::start(Options {
        watcher: false,
        ..Options::default()
    })
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/simcluster/faults", stack.sim_url))
        .json(&json!({"verb": "exec", "resource": "pods"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("fault verb"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_failing_during_verification_delays_the_verdict_and_runs_nothing_twice() {
    let stack = Stack::start(Options {
        verify_window_secs: 4.0,
        ..Options::default()
    })
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    stack
        .eventually("the fix to be verified", support::FIX_TIMEOUT, async || {
            let list = stack
                .get("/api/v1/reflexion/incidents?state=verifying")
                .await;
            ((list["total_count"] == 1).then_some(()), list.to_string())
        })
        .await;
    // The API server drops the watch verification holds (only verification watches Deployments) and fails the
    // next three attempts to watch again.
    inject(
        &stack,
        json!({"verb": "watch", "resource": "deployments", "status": 500, "times": 3}),
    )
    .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        pending_faults(&stack).await,
        json!([]),
        "the faults hit verification"
    );
    let verbs = support::audit_verbs(&detail);
    match detail["state"].as_str() {
        // Verified after the API came back: the fix was made once, and holds.
        Some("resolved") => {
            assert_eq!(verbs, ["set_image"], "{detail}");
            assert_eq!(generation(&api.get("web").await.unwrap()), 2);
        }
        // Not verified in time: the change was reverted, never made twice.
        _ => assert_eq!(verbs, ["set_image", "revert"], "{detail}"),
    }
    let stable = detail["episodes"][0]["verification"]["stable_for_secs"]
        .as_f64()
        .unwrap_or_default();
    assert!(stable >= 4.0 || detail["state"] != "resolved", "{detail}");
}

/// Wait until the only incident is in `state`; its id.
async fn incident_in(stack: &Stack, state: &str) -> String {
    stack
        .eventually(
            &format!("the incident to be {state}"),
            support::FIX_TIMEOUT,
            async || {
                let list = stack
                    .get(&format!("/api/v1/reflexion/incidents?state={state}"))
                    .await;
                (
                    list["incidents"][0]["id"].as_str().map(String::from),
                    list.to_string(),
                )
            },
        )
        .await
}

async fn finished(stack: &Stack, id: &str) -> Value {
    stack
        .eventually("the incident to finish", support::FIX_TIMEOUT, async || {
            let d = stack
                .get(&format!("/api/v1/reflexion/incidents/{id}"))
                .await;
            let done =
                ["resolved", "escalated", "failed"].contains(&d["state"].as_str().unwrap_or(""));
            (done.then(|| d.clone()), d["state"].to_string())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_while_its_write_is_in_flight_verifies_it_after_the_restart_and_never_writes_again()
 {
    let mut stack = Stack::start(Options::default()).await;
    // The fix's write is held 3 s by the API server, then lands: the API is SIGKILLed while it waits.
    inject(
        &stack,
        json!({"verb": "patch", "resource": "deployments", "name": "web", "after_write": true, "delay_ms": 3000}),
    )
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    let id = incident_in(&stack, "executing").await;
    stack.kill_and_restart_api().await;
    let detail = finished(&stack, &id).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_image"], "{detail}");
    assert_eq!(
        detail["audit"][0]["result"], "ok (read back after a restart)",
        "{detail}"
    );
    assert_eq!(
        generation(&api.get("web").await.unwrap()),
        2,
        "written once"
    );
    let notes: Vec<&str> = detail["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["note"].as_str().unwrap())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("without acting again")),
        "{notes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_while_a_plan_awaits_approval_runs_it_once_when_approved_after_the_restart()
{
    let mut stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        ..Options::default()
    })
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    let id = incident_in(&stack, "awaiting_approval").await;
    stack.kill_and_restart_api().await;
    // Still waiting after the restart, and nothing written.
    let waiting = stack
        .get(&format!("/api/v1/reflexion/incidents/{id}"))
        .await;
    assert_eq!(waiting["state"], "awaiting_approval", "{waiting}");
    assert_eq!(waiting["audit"], json!([]));
    stack.approve(&waiting).await;
    let detail = finished(&stack, &id).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_image"], "{detail}");
    assert_eq!(
        generation(&api.get("web").await.unwrap()),
        2,
        "written once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_before_its_write_landed_reads_it_back_and_tries_again_once() {
    let mut stack = Stack::start(Options::default()).await;
    // The fix's write is held 3 s and then refused without being made: the API is SIGKILLed while it waits.
    inject(
        &stack,
        json!({"verb": "patch", "resource": "deployments", "name": "web", "delay_ms": 3000}),
    )
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    let id = incident_in(&stack, "executing").await;
    stack.kill_and_restart_api().await;
    // Read back for kube-apiserver's request timeout (a minute), then a fresh look and one write.
    let detail = finished(&stack, &id).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    let results: Vec<&str> = detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["result"].as_str().unwrap())
        .collect();
    assert_eq!(
        results,
        ["not applied (read back after a restart)", "ok"],
        "{detail}"
    );
    assert_eq!(
        generation(&api.get("web").await.unwrap()),
        2,
        "written once"
    );
}

/// Every kind of compiled write, answered with a 500 after it landed: read back (a guarded JSON patch by comparing
/// what the object holds with what the patch leaves), found in place, verified, never made twice.
async fn a_landed_write_answered_with_500_is_read_back(manifest: &str, workload: &str, verb: &str) {
    let stack = Stack::start(Options::default()).await;
    inject(
        &stack,
        json!({"verb": "patch", "resource": "deployments", "name": workload, "status": 500, "after_write": true}),
    )
    .await;
    stack.create_all(manifest).await;
    let api: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    // High-risk fixes wait for a person under the default policy.
    let waiting = stack
        .eventually("a plan", support::FIX_TIMEOUT, async || {
            let list = stack.get("/api/v1/reflexion/incidents").await;
            let i = &list["incidents"][0];
            let state = i["state"].as_str().unwrap_or("");
            let planned = !["", "reported", "diagnosing", "planning"].contains(&state);
            (planned.then(|| i.clone()), list.to_string())
        })
        .await;
    if waiting["state"] == "awaiting_approval" {
        stack.approve(&waiting).await;
    }
    let id = waiting["id"].as_str().unwrap().to_string();
    let detail = finished(&stack, &id).await;
    assert_eq!(
        pending_faults(&stack).await,
        json!([]),
        "the fault hit the fix"
    );
    assert_eq!(detail["state"], "resolved", "{detail}");
    let audit = detail["audit"].as_array().unwrap();
    assert_eq!(
        (audit[0]["verb"].as_str(), audit[0]["result"].as_str()),
        (Some(verb), Some("ok")),
        "{detail}"
    );
    assert_eq!(
        generation(&api.get(workload).await.unwrap()),
        1 + audit.len() as i64,
        "each write made once: {detail}"
    );
}

macro_rules! every_write {
    ($($name:ident: $manifest:literal, $workload:literal, $verb:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            a_landed_write_answered_with_500_is_read_back(
                include_str!(concat!("../../../k8s/scenarios/", $manifest)), $workload, $verb).await
        }
    )*};
}

every_write! {
    read_back_set_node_selector: "selector-no-node.yaml", "catalog", "set_node_selector";
    read_back_drop_command: "bad-command.yaml", "storefront", "drop_command";
    read_back_set_resources: "oom-deployment.yaml", "memory-app", "set_resources";
    read_back_set_probe: "bad-liveness.yaml", "probed", "set_probe";
    read_back_set_env: "missing-env.yaml", "demo-app", "set_env";
}

/// A bare pod whose memory limit is raised by recreating it (a pod's resources cannot change in place).
async fn oom_bare_pod(stack: &Stack) -> Api<k8s_openapi::api::core::v1::Pod> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(stack.kube().await, "default");
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "memory-app", "labels": {"run": "memory-app"}},
        "spec": {"containers": [{"name": "memory-app", "image": "polinux/stress", "args": ["--vm", "1", "--vm-bytes", "100M"],
                                 "resources": {"limits": {"memory": "10Mi"}}}]}
    }))
    .unwrap();
    pods.create(&Default::default(), &pod).await.unwrap();
    pods
}

/// The recreated pod: a new uid, the raised limit, the rest of the spec as it was.
async fn assert_recreated(pods: &Api<k8s_openapi::api::core::v1::Pod>, old_uid: &str, id: &str) {
    let pod = pods.get("memory-app").await.unwrap();
    assert_ne!(pod.metadata.uid.as_deref(), Some(old_uid), "a new pod");
    assert_eq!(
        pod.metadata
            .annotations
            .unwrap_or_default()
            .get("kube-reflexion.io/incident")
            .map(String::as_str),
        Some(id)
    );
    let c = &pod.spec.unwrap().containers[0];
    let limit = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .map(|q| q.0.clone());
    assert_eq!(limit.as_deref(), Some("266Mi"));
    assert_eq!(c.args.as_ref().unwrap().join(" "), "--vm 1 --vm-bytes 100M");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_between_a_recreations_delete_and_its_create_finishes_it_from_the_journal() {
    let mut stack = Stack::start(Options::default()).await;
    let pods = oom_bare_pod(&stack).await;
    let old_uid = pods.get("memory-app").await.unwrap().metadata.uid.unwrap();
    // The recreated pod's create is held 4 s and then refused: the API is SIGKILLed while it waits, the old pod
    // already deleted.
    inject(
        &stack,
        json!({"verb": "create", "resource": "pods", "delay_ms": 4000}),
    )
    .await;
    let id = incident_in(&stack, "executing").await;
    stack
        .eventually("the old pod to be gone", support::FIX_TIMEOUT, async || {
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
    stack.kill_and_restart_api().await;
    let detail = finished(&stack, &id).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_resources"], "{detail}");
    assert_eq!(
        detail["audit"][0]["result"], "ok (finished from the journal)",
        "{detail}"
    );
    let journal = &detail["audit"][0]["detail"]["journal"];
    assert_eq!(
        journal["kind"], "pod",
        "the whole original pod was stored before the delete: {journal}"
    );
    assert_eq!(journal["original"]["metadata"]["uid"], old_uid.as_str());
    assert_recreated(&pods, &old_uid, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_pods_create_answered_with_500_after_it_landed_is_read_back() {
    let stack = Stack::start(Options::default()).await;
    let pods = oom_bare_pod(&stack).await;
    let old_uid = pods.get("memory-app").await.unwrap().metadata.uid.unwrap();
    inject(
        &stack,
        json!({"verb": "create", "resource": "pods", "status": 500, "after_write": true}),
    )
    .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        pending_faults(&stack).await,
        json!([]),
        "the fault hit the recreation"
    );
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_resources"], "{detail}");
    assert_eq!(detail["audit"][0]["result"], "ok", "{detail}");
    assert_recreated(&pods, &old_uid, detail["id"].as_str().unwrap()).await;
}

/// An approval never holds the request while another replica holds the incident's claim (a replica that died holding
/// it, with the default claim TTL): it answers 202 `queued` at once, and the plan runs here, once, when the claim
/// is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_waiting_on_another_replicas_claim_answers_at_once_and_runs_when_the_claim_is_free()
 {
    let stack = Stack::start(Options {
        policy: Some(r#"{"default_mode": "approve"}"#),
        ..Options::default()
    })
    .await;
    let api: Api<Deployment> = stack.create_deployment(BAD_TAG_WEB).await;
    let id = incident_in(&stack, "awaiting_approval").await;
    let db = reflexion_api::db::Db::connect(&format!(
        "sqlite://{}",
        stack.dir.path().join("reflexion.db").display()
    ))
    .await
    .unwrap();
    // A replica that died holding the claim for 40 s — longer than a router's 30 s request timeout.
    let ghost = std::time::Duration::from_secs(40);
    stack
        .eventually(
            "the other replica to hold the claim",
            support::FIX_TIMEOUT,
            async || {
                (
                    db.claim(&id, "ghost", ghost).await.unwrap().then_some(()),
                    String::new(),
                )
            },
        )
        .await;
    let (status, body) = stack
        .post(
            &format!("/api/v1/reflexion/incidents/{id}/approve"),
            json!({"by": "sre"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("queued")),
        "{body}"
    );
    let now = stack
        .get(&format!("/api/v1/reflexion/incidents/{id}"))
        .await;
    assert_eq!(
        now["state"], "awaiting_approval",
        "nothing runs under another's claim: {now}"
    );
    assert_eq!(generation(&api.get("web").await.unwrap()), 1);
    let detail = finished(&stack, &id).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_image"], "{detail}");
    assert_eq!(
        generation(&api.get("web").await.unwrap()),
        2,
        "written once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreations_delete_answered_with_500_after_it_landed_goes_on_to_the_create() {
    let stack = Stack::start(Options::default()).await;
    let pods = oom_bare_pod(&stack).await;
    let old_uid = pods.get("memory-app").await.unwrap().metadata.uid.unwrap();
    inject(
        &stack,
        json!({"verb": "delete", "resource": "pods", "name": "memory-app", "status": 500, "after_write": true}),
    )
    .await;
    let detail = finished_incident(&stack).await;
    assert_eq!(
        pending_faults(&stack).await,
        json!([]),
        "the fault hit the recreation"
    );
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(support::audit_verbs(&detail), ["set_resources"], "{detail}");
    assert_recreated(&pods, &old_uid, detail["id"].as_str().unwrap()).await;
}
