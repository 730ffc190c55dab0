//! The job controller: a Job runs pods from its template until `completions` of them succeed (`parallelism` at a
//! time), counts failed pods against `backoffLimit` with the back-off between them (10 s doubling, at most 6
//! minutes) and its run against `activeDeadlineSeconds`, and ends `Complete` or `Failed` (`BackoffLimitExceeded`,
//! `DeadlineExceeded`) with the conditions and events a real one writes. Its pods stay when
//! it ends; deleting the Job deletes them (they are owned by it).

use super::{controller_uid, name, ns, owner_ref, source, uid, write_status};
use crate::events::Recorder;
use crate::resources;
use crate::store::{DeleteOptions, Store, now};
use serde_json::{Value, json};
use std::time::Duration;

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("Pending")
}

fn finished(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

/// When the last of the job's pods failed (its containers' finish time), as seconds ago.
fn since_last_failure(pods: &[&Value]) -> Option<f64> {
    pods.iter()
        .filter(|p| phase(p) == "Failed")
        .flat_map(|p| {
            p["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|c| {
            c["state"]["terminated"]["finishedAt"]
                .as_str()
                .map(String::from)
        })
        .filter_map(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
        .map(|t| (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).as_seconds_f64())
        .reduce(f64::min)
}

pub fn reconcile(store: &Store, recorder: &Recorder, clock: crate::Clock) {
    let (jobs, _) = store.list(resources::jobs(), None);
    for job in jobs
        .iter()
        .filter(|j| j["metadata"]["deletionTimestamp"].is_null())
    {
        if finished(job) || job["spec"]["suspend"] == true {
            continue;
        }
        let (pods, _) = store.list(resources::pods(), Some(ns(job)));
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|p| controller_uid(p) == Some(uid(job)))
            .collect();
        let active: Vec<&&Value> = mine
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null()
                    && !matches!(phase(p), "Succeeded" | "Failed")
            })
            .collect();
        // Counted: the pod may go now (the real controller counts through uncountedTerminatedPods first).
        for p in mine.iter().filter(|p| {
            matches!(phase(p), "Succeeded" | "Failed")
                || !p["metadata"]["deletionTimestamp"].is_null()
        }) {
            release(store, p);
        }
        let succeeded = mine.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
        let failed = mine.iter().filter(|p| phase(p) == "Failed").count() as i64;
        let spec = &job["spec"];
        let completions = spec["completions"].as_i64();
        let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
        let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
        let src = source("job-controller");
        let mut conditions = Vec::new();
        let ts = now();
        // activeDeadlineSeconds counts from the Job's start, whatever its pods do.
        let past_deadline = spec["activeDeadlineSeconds"].as_u64().is_some_and(|d| {
            job["status"]["startTime"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .and_then(|t| {
                    (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                        .to_std()
                        .ok()
                })
                .is_some_and(|ran| ran >= clock.real(Duration::from_secs(d)))
        });
        let failure = if failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if past_deadline {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            for p in &active {
                let _ = store.delete(resources::pods(), ns(p), name(p), &DeleteOptions::default());
            }
            recorder.record(store, &src, job, None, ("Warning", reason, message));
            conditions.push(json!({"type": "FailureTarget", "status": "True", "reason": reason,
                                   "message": message, "lastProbeTime": ts, "lastTransitionTime": ts}));
            conditions.push(json!({"type": "Failed", "status": "True", "reason": reason,
                                   "message": message, "lastProbeTime": ts, "lastTransitionTime": ts}));
        } else if completions.is_some_and(|c| succeeded >= c) {
            recorder.record(
                store,
                &src,
                job,
                None,
                ("Normal", "Completed", "Job completed"),
            );
            conditions.push(json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                                   "message": "Reached expected number of succeeded pods", "lastProbeTime": ts, "lastTransitionTime": ts}));
            conditions.push(json!({"type": "Complete", "status": "True", "reason": "CompletionsReached",
                                   "message": "Reached expected number of succeeded pods", "lastProbeTime": ts, "lastTransitionTime": ts}));
        } else {
            let left = completions.map_or(parallelism, |c| (c - succeeded).min(parallelism));
            let backoff = BACKOFF_START
                .saturating_mul(1 << (failed.clamp(1, 9) - 1))
                .min(BACKOFF_MAX);
            let waiting = failed > 0
                && since_last_failure(&mine).is_some_and(|s| s < clock.real(backoff).as_secs_f64());
            for _ in (active.len() as i64)..left.max(0) {
                if waiting {
                    break;
                }
                create_pod(store, recorder, job);
            }
        }
        let ready = active
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        let mut status = json!({
            "active": active.len(), "succeeded": succeeded, "failed": failed, "ready": ready, "terminating": 0,
            "uncountedTerminatedPods": {},
            "startTime": job["status"]["startTime"].as_str().map(String::from).unwrap_or_else(now),
        });
        if !conditions.is_empty() {
            status["conditions"] = json!(conditions);
            if conditions.iter().any(|c| c["type"] == "Complete") {
                status["completionTime"] = json!(ts);
            }
            status["active"] = json!(0);
        }
        // Omitted when zero, as the API's `omitempty` counts are.
        if let Some(m) = status.as_object_mut() {
            m.retain(|k, v| !(["active", "succeeded", "failed"].contains(&k.as_str()) && *v == 0));
        }
        write_status(store, resources::jobs(), job, status);
    }
}

const TRACKING: &str = "batch.kubernetes.io/job-tracking";

fn release(store: &Store, pod: &Value) {
    let tracked = pod["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == TRACKING));
    if tracked {
        let _ = store.modify(resources::pods(), ns(pod), name(pod), false, false, |p| {
            let mut p = p.clone();
            if let Some(f) = p["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != TRACKING);
            }
            p["metadata"]["resourceVersion"] = Value::Null;
            Ok(p)
        });
    }
}

fn create_pod(store: &Store, recorder: &Recorder, job: &Value) {
    let template = &job["spec"]["template"];
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["generateName"] = json!(format!("{}-", name(job)));
    meta["ownerReferences"] = json!([owner_ref(job)]);
    meta["finalizers"] = json!([TRACKING]);
    let pod = json!({"metadata": meta, "spec": template["spec"]});
    let src = source("job-controller");
    match store.create(resources::pods(), ns(job), pod, false) {
        Ok(p) => recorder.record(
            store,
            &src,
            job,
            None,
            (
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {}", name(&p)),
            ),
        ),
        Err(e) => recorder.record(
            store,
            &src,
            job,
            None,
            (
                "Warning",
                "FailedCreate",
                &format!("Error creating: {}", e.message),
            ),
        ),
    }
}
