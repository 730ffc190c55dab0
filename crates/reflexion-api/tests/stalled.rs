//! Workloads stopped at a deadline with no failing pod: a Job the job controller stops at its
//! `activeDeadlineSeconds` (its pods deleted) is reported from the controller's `DeadlineExceeded` Event and handed
//! over in the controller's words, with nothing changed; so is a rollout past its progress deadline whose pods run
//! but are held from Ready by a readiness gate, naming the gate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{Options, Stack, finished_incident};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_stopped_at_its_deadline_is_handed_over_in_the_controllers_words() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "export"},
        "spec": {"activeDeadlineSeconds": 20, "backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "export", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}}
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client, "default");
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let detail = finished_incident(&stack).await;
    let outcome = support::escalated(&detail, "stalled/active_deadline", ("Job", "export"));
    assert!(
        outcome.contains("DeadlineExceeded: Job was active longer than specified deadline"),
        "{outcome}"
    );
    assert!(outcome.contains("never changes a deadline"), "{outcome}");
    assert!(
        support::audit_commands(&detail).is_empty(),
        "nothing changed: {detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_past_its_deadline_with_no_failing_pod_is_handed_over_naming_what_holds_it() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    // Its pods run and their containers are ready, but a readiness gate nobody sets keeps them from Ready: no pod
    // fails, no probe complains, only the Deployment's Progressing condition says the rollout is stuck.
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"progressDeadlineSeconds": 60, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"readinessGates": [{"conditionType": "example.com/lb-ready"}],
                                       "containers": [{"name": "web", "image": "nginx:1.27"}]}}}
    }))
    .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    let outcome = support::escalated(&detail, "stalled/progress_deadline", ("Deployment", "web"));
    assert!(
        outcome.contains("ProgressDeadlineExceeded")
            && outcome.contains("has timed out progressing"),
        "{outcome}"
    );
    assert!(
        outcome.contains(
            "ReadinessGatesNotReady: corresponding condition of pod readiness gate \"example.com/lb-ready\" does not exist."
        ),
        "{outcome}"
    );
    assert!(
        outcome.contains("a readiness gate's condition is not True"),
        "{outcome}"
    );
    assert!(
        support::audit_commands(&detail).is_empty(),
        "nothing changed: {detail}"
    );
    assert_eq!(
        deployments.get("web").await.unwrap().metadata.generation,
        Some(1)
    );
}
