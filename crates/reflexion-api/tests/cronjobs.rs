//! A CronJob's runs fail: the fix is made at the CronJob's jobTemplate (its Jobs' template is immutable) and proved
//! by the next run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{Options, Stack, audit_commands, finished_incident};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_whose_runs_miss_a_variable_gets_it_in_its_job_template_and_the_next_run_completes()
 {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "reports"}, "data": {"REPORT_BUCKET": "s3://reports"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    // Every minute (6 s at the stack's time scale), a run that exits 1: REPORT_BUCKET is not set.
    let cron: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "*/1 * * * *", "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "report", "image": "kubereflexion/report-job:1.0.0"}]}}}}}
    }))
    .unwrap();
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    cronjobs
        .create(&PostParams::default(), &cron)
        .await
        .unwrap();
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    assert_eq!(
        (
            detail["workload"]["kind"].as_str(),
            detail["workload"]["name"].as_str()
        ),
        (Some("CronJob"), Some("nightly"))
    );
    assert_eq!(
        audit_commands(&detail),
        [
            "kubectl set env cronjob/nightly -c report --from=configmap/reports --keys=REPORT_BUCKET -n default"
        ],
        "{detail}"
    );
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("the first run after the change, Job nightly-"),
        "{outcome}"
    );
    assert!(outcome.contains("completed"), "{outcome}");
    let env = cronjobs
        .get("nightly")
        .await
        .unwrap()
        .spec
        .unwrap()
        .job_template
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(env[0].name, "REPORT_BUCKET");
    // The run that proved it is a Job of the CronJob that completed.
    let jobs = Api::<Job>::namespaced(client, "default")
        .list(&Default::default())
        .await
        .unwrap();
    assert!(
        jobs.items.iter().any(|j| j
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c
                .iter()
                .any(|c| c.type_ == "Complete" && c.status == "True"))),
        "a run completed"
    );
}
