//! Workloads stopped at a deadline with no failing pod: a Job the job controller stops at its
//! `activeDeadlineSeconds` (its pods deleted) is reported from the controller's `DeadlineExceeded` Event and handed
//! over in the controller's words, with nothing changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

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
    assert_eq!(detail["state"], "escalated", "{detail}");
    assert_eq!(detail["signature"], "stalled/active_deadline", "{detail}");
    assert_eq!(
        (
            detail["workload"]["kind"].as_str(),
            detail["workload"]["name"].as_str()
        ),
        (Some("Job"), Some("export"))
    );
    let outcome = detail["outcome"].as_str().unwrap();
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
