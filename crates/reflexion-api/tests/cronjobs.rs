//! A CronJob's runs fail: the fix is made at the CronJob's jobTemplate (its Jobs' template is immutable) and proved
//! by the next run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use support::{Options, Stack, audit_commands, awaiting_approval, finished_incident};

/// The only ConfigMap holding `REPORT_BUCKET`.
async fn reports_config_map(client: &kube::Client) {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "reports"}, "data": {"REPORT_BUCKET": "s3://reports"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_whose_runs_miss_a_variable_gets_it_in_its_job_template_and_the_next_run_completes()
 {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    reports_config_map(&client).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_job_missing_a_variable_is_recreated_with_it_after_approval_and_completes() {
    let stack = Stack::start(Options::default()).await;
    let client = stack.kube().await;
    reports_config_map(&client).await;
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "report", "labels": {"team": "data"}},
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": {"app": "report"}}, "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "report", "image": "kubereflexion/report-job:1.0.0"}]}}}
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let first = jobs.create(&PostParams::default(), &job).await.unwrap();
    let waiting = awaiting_approval(&stack).await;
    assert_eq!(
        (
            waiting["workload"]["kind"].as_str(),
            waiting["workload"]["name"].as_str()
        ),
        (Some("Job"), Some("report")),
        "{waiting}"
    );
    let command = waiting["pending_plan"]["command"].as_str().unwrap();
    assert!(
        command.starts_with(
            "kubectl get job/report -n default -o json | kubectl set env --local -f - -c report --from=configmap/reports --keys=REPORT_BUCKET -o json | jq"
        ) && command.ends_with("| kubectl replace --force -f -"),
        "{command}"
    );
    assert_eq!(
        jobs.get("report").await.unwrap().metadata.uid,
        first.metadata.uid,
        "nothing changes before approval"
    );
    stack.approve(&waiting).await;
    let detail = finished_incident(&stack).await;
    assert_eq!(detail["state"], "resolved", "{detail}");
    let outcome = detail["outcome"].as_str().unwrap();
    assert!(
        outcome.contains("recreated with the change, completed"),
        "{outcome}"
    );
    let now = jobs.get("report").await.unwrap();
    assert_ne!(now.metadata.uid, first.metadata.uid, "a new Job");
    assert_eq!(
        now.metadata.labels.as_ref().unwrap()["team"],
        "data",
        "its metadata kept"
    );
    let spec = now.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(0), "its spec kept");
    let env = spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert_eq!(env[0].name, "REPORT_BUCKET");
    assert!(
        now.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Complete" && c.status == "True")
    );
}
