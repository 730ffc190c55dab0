//! A CronJob is fixed when the first Job it starts after the change completes: its Jobs' template cannot change, so
//! only a new run proves the new jobTemplate. A run that fails (or whose pod fails or restarts) is not verified, nor
//! is no run before the deadline: the timeout plus the CronJob's interval as its last runs show it (capped), so
//! that a run due soon after the change is waited for. A run kube-reflexion started for the change (when the policy
//! allows it) counts as the first one. A bare Job recreated with its fix is fixed when that Job (its new uid)
//! completes, by the same rules.

use super::Verification;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use reflexion_core::owner::WorkloadRef;
use std::collections::HashSet;
use std::time::Duration;
use tokio::time::Instant;

const LOOK_EVERY: Duration = Duration::from_millis(500);
/// The longest interval between runs waited for: a daily CronJob is not held open for a day.
const MAX_INTERVAL: Duration = Duration::from_secs(3600);

fn controlled_by(o: &impl ResourceExt, uid: &str) -> bool {
    o.owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && r.uid == uid)
}

/// The gap between the last two runs (their Jobs' creation), if there were two.
pub(super) fn interval(jobs: &[&Job]) -> Option<Duration> {
    let mut at: Vec<_> = jobs
        .iter()
        .filter_map(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .collect();
    at.sort();
    let [.., a, b] = at.as_slice() else {
        return None;
    };
    Duration::try_from(b.duration_since(*a)).ok()
}

/// How a Job stands: `Some(Ok)` complete, `Some(Err(why))` failed, `None` still running.
pub(super) fn outcome(job: &Job) -> Option<Result<(), String>> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if is("Complete").is_some() {
        return Some(Ok(()));
    }
    is("Failed").map(|c| {
        Err(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Failed"),
            c.message.as_deref().unwrap_or_default()
        ))
    })
}

pub(super) async fn verify_cronjob(
    client: &Client,
    target: &WorkloadRef,
    timeout: Duration,
    started: Option<&str>,
) -> Verification {
    let start = Instant::now();
    let ns = &target.namespace;
    let uid = match Api::<CronJob>::namespaced(client.clone(), ns)
        .get_opt(&target.name)
        .await
    {
        Ok(Some(c)) => c.metadata.uid.unwrap_or_default(),
        Ok(None) => return not_verified(format!("{target} no longer exists")),
        Err(e) => return not_verified(format!("reading {target} failed: {e}")),
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let (before, wait) = match jobs.list(&ListParams::default()).await {
        Ok(list) => {
            let own: Vec<&Job> = list
                .items
                .iter()
                .filter(|j| controlled_by(*j, &uid))
                .collect();
            // The run started for this change, before verification began, is the one that proves it.
            let names: HashSet<String> = own
                .iter()
                .map(|j| j.name_any())
                .filter(|n| Some(n.as_str()) != started)
                .collect();
            (names, interval(&own).unwrap_or_default().min(MAX_INTERVAL))
        }
        Err(e) => return not_verified(format!("listing {target}'s Jobs failed: {e}")),
    };
    let deadline = start + timeout + wait;
    let mut last = "no run since the change".to_string();
    loop {
        if Instant::now() >= deadline {
            return not_verified(format!(
                "{target} completed no run within {}s of the change: {last}",
                (deadline - start).as_secs()
            ));
        }
        match jobs.list(&ListParams::default()).await {
            Ok(list) => {
                for job in list
                    .items
                    .iter()
                    .filter(|j| controlled_by(*j, &uid) && !before.contains(&j.name_any()))
                {
                    let name = job.name_any();
                    match outcome(job) {
                        Some(Ok(())) => {
                            return Verification {
                                verified: true,
                                detail: format!(
                                    "the first run after the change, Job {name}, completed"
                                ),
                                ready_after_ms: Some(start.elapsed().as_millis() as u64),
                                stable_for_secs: 0.0,
                            };
                        }
                        Some(Err(why)) => {
                            return not_verified(format!(
                                "the first run after the change, Job {name}, failed ({why})"
                            ));
                        }
                        None => last = format!("Job {name} is running"),
                    }
                    if let Some(pod) = failed_pod(&pods, job).await {
                        return not_verified(format!(
                            "pod {pod} of the first run after the change, Job {name}, failed"
                        ));
                    }
                }
            }
            Err(e) => last = format!("listing Jobs failed: {e}"),
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

fn not_verified(detail: String) -> Verification {
    Verification {
        verified: false,
        detail,
        ready_after_ms: None,
        stable_for_secs: 0.0,
    }
}

/// A pod of the run that failed or restarted: the fix did not hold, whatever the Job retries.
async fn failed_pod(pods: &Api<Pod>, job: &Job) -> Option<String> {
    let job_uid = job.metadata.uid.clone().unwrap_or_default();
    let list = pods.list(&ListParams::default()).await.ok()?;
    list.items
        .iter()
        .find(|p| {
            controlled_by(*p, &job_uid)
                && (p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
                    || p.status
                        .iter()
                        .flat_map(|s| s.container_statuses.iter().flatten())
                        .any(|c| c.restart_count > 0))
        })
        .map(|p| p.name_any())
}

/// A bare Job recreated with its fix: verified when that Job (`uid`) completes; not when it fails, one of its pods
/// fails, it is replaced, or it is still running at the timeout.
pub(super) async fn verify_job(
    client: &Client,
    target: &WorkloadRef,
    timeout: Duration,
    uid: Option<&str>,
) -> Verification {
    let start = Instant::now();
    let Some(uid) = uid else {
        return not_verified(format!(
            "{target} was not recreated: no run proves the change"
        ));
    };
    let jobs: Api<Job> = Api::namespaced(client.clone(), &target.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
    let mut last = "not read yet".to_string();
    while start.elapsed() < timeout {
        match jobs.get_opt(&target.name).await {
            Ok(Some(job)) if job.metadata.uid.as_deref() == Some(uid) => {
                match outcome(&job) {
                    Some(Ok(())) => {
                        return Verification {
                            verified: true,
                            detail: format!("{target}, recreated with the change, completed"),
                            ready_after_ms: Some(start.elapsed().as_millis() as u64),
                            stable_for_secs: 0.0,
                        };
                    }
                    Some(Err(why)) => {
                        return not_verified(format!(
                            "{target}, recreated with the change, failed ({why})"
                        ));
                    }
                    None => last = "running".into(),
                }
                if let Some(pod) = failed_pod(&pods, &job).await {
                    return not_verified(format!(
                        "pod {pod} of {target}, recreated with the change, failed"
                    ));
                }
            }
            Ok(Some(_)) => return not_verified(format!("{target} was replaced by someone else")),
            Ok(None) => return not_verified(format!("{target} no longer exists")),
            Err(e) => last = format!("reading it failed: {e}"),
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
    not_verified(format!(
        "{target} did not complete within {}s of the change ({last})",
        timeout.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(created: &str, conditions: serde_json::Value) -> Job {
        serde_json::from_value(
            json!({"metadata": {"name": "j", "creationTimestamp": created},
                                       "status": {"conditions": conditions}}),
        )
        .unwrap_or_else(|e| panic!("job: {e}"))
    }

    #[test]
    fn a_run_is_judged_by_its_conditions_and_the_interval_by_the_last_two_runs() {
        let complete = job(
            "2026-01-01T00:00:00Z",
            json!([{"type": "Complete", "status": "True"}]),
        );
        let failed = job(
            "2026-01-01T00:05:00Z",
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
        );
        let running = job("2026-01-01T00:10:00Z", json!([]));
        assert_eq!(outcome(&complete), Some(Ok(())));
        assert_eq!(
            outcome(&failed),
            Some(Err(
                "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            ))
        );
        assert_eq!(outcome(&running), None);
        assert_eq!(
            interval(&[&running, &complete, &failed]),
            Some(Duration::from_secs(300))
        );
        assert_eq!(interval(&[&complete]), None);
    }
}
