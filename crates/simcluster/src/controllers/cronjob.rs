//! The CronJob controller: a Job from the `jobTemplate` at each time the schedule fires (named after the scheduled
//! minute, as the real controller names it), `concurrencyPolicy` honoured (`Forbid` skips a run while one is
//! active, `Replace` deletes the active ones first), `suspend` honoured, finished Jobs kept up to the history limits
//! (3 succeeded, 1 failed by default), and `status.active`, `lastScheduleTime` and `lastSuccessfulTime` kept.
//!
//! Simulated time runs `--time-scale` times faster: the schedule is walked in simulated minutes from the moment the
//! controller first saw the CronJob, while the timestamps it writes are the real clock's, like every other one.

use super::{
    DeleteOptions, Recorder, Store, controller_uid, name, ns, owner_ref, source, uid, write_status,
};
use crate::cron::Schedule;
use crate::resources;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Instant;

/// Per CronJob uid: its schedule as last read, the next simulated time it fires, and the real instant that is.
#[derive(Default)]
pub struct Cursors(HashMap<String, (String, DateTime<Utc>, Instant)>);

fn job_finished(job: &Value) -> Option<&str> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")?["type"]
        .as_str()
}

pub(super) fn reconcile(
    store: &Store,
    recorder: &Recorder,
    cursors: &mut Cursors,
    clock: crate::Clock,
) {
    let (cronjobs, _) = store.list(resources::cronjobs(), None);
    cursors
        .0
        .retain(|u, _| cronjobs.iter().any(|c| uid(c) == u));
    let (jobs, _) = store.list(resources::jobs(), None);
    for cj in cronjobs
        .iter()
        .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
    {
        let mine: Vec<&Value> = jobs
            .iter()
            .filter(|j| controller_uid(j) == Some(uid(cj)))
            .collect();
        keep_history(store, cj, &mine);
        let text = cj["spec"]["schedule"].as_str().unwrap_or_default();
        // Admission refused a schedule that does not parse.
        let Ok(schedule) = Schedule::parse(text) else {
            continue;
        };
        let now = Instant::now();
        let cursor = cursors.0.entry(uid(cj).to_string());
        let entry = cursor.or_insert_with(|| (String::new(), Utc::now(), now));
        if entry.0 != text {
            // First seen, or its schedule changed: walk it from now.
            let Some(next) = schedule.next_after(Utc::now()) else {
                continue;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            *entry = (text.to_string(), next, now + clock.real(wait));
        }
        let mut fired = None;
        while entry.2 <= now {
            fired = Some(entry.1);
            let Some(next) = schedule.next_after(entry.1) else {
                break;
            };
            let step = (next - entry.1).to_std().unwrap_or_default();
            *entry = (text.to_string(), next, entry.2 + clock.real(step));
        }
        let active: Vec<&&Value> = mine.iter().filter(|j| job_finished(j).is_none()).collect();
        if let Some(at) = fired
            && cj["spec"]["suspend"] != true
        {
            run(store, recorder, cj, at, &active);
        }
        update_status(store, cj);
    }
}

fn run(store: &Store, recorder: &Recorder, cj: &Value, at: DateTime<Utc>, active: &[&&Value]) {
    let src = source("cronjob-controller");
    match cj["spec"]["concurrencyPolicy"].as_str().unwrap_or("Allow") {
        "Forbid" if !active.is_empty() => return,
        "Replace" => {
            for j in active {
                if store
                    .delete(resources::jobs(), ns(j), name(j), &DeleteOptions::default())
                    .is_ok()
                {
                    recorder.record(
                        store,
                        &src,
                        cj,
                        None,
                        (
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted job {}", name(j)),
                        ),
                    );
                }
            }
        }
        _ => {}
    }
    let template = &cj["spec"]["jobTemplate"];
    let mut meta = template["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    let job_name = format!("{}-{}", name(cj), at.timestamp() / 60);
    meta["name"] = json!(job_name);
    meta["ownerReferences"] = json!([owner_ref(cj)]);
    meta["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] =
        json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]});
    match store.create(resources::jobs(), ns(cj), job, false) {
        Ok(_) => recorder.record(
            store,
            &src,
            cj,
            None,
            (
                "Normal",
                "SuccessfulCreate",
                &format!("Created job {job_name}"),
            ),
        ),
        Err(e) => recorder.record(
            store,
            &src,
            cj,
            None,
            (
                "Warning",
                "FailedCreate",
                &format!("Error creating job: {}", e.message),
            ),
        ),
    }
    let _ = store.modify(resources::cronjobs(), ns(cj), name(cj), true, false, |o| {
        let mut o = o.clone();
        o["status"]["lastScheduleTime"] = json!(crate::store::now());
        o["metadata"]["resourceVersion"] = Value::Null;
        Ok(o)
    });
}

/// Finished Jobs beyond the history limits go, oldest first.
fn keep_history(store: &Store, cj: &Value, mine: &[&Value]) {
    for (outcome, field, default) in [
        ("Complete", "successfulJobsHistoryLimit", 3),
        ("Failed", "failedJobsHistoryLimit", 1),
    ] {
        let limit = cj["spec"][field].as_u64().unwrap_or(default) as usize;
        let mut done: Vec<&&Value> = mine
            .iter()
            .filter(|j| job_finished(j) == Some(outcome))
            .collect();
        done.sort_by_key(|j| {
            j["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        });
        let excess = done.len().saturating_sub(limit);
        for j in done.into_iter().take(excess) {
            let _ = store.delete(resources::jobs(), ns(j), name(j), &DeleteOptions::default());
        }
    }
}

fn update_status(store: &Store, cj: &Value) {
    let Ok(now) = store.get(resources::cronjobs(), ns(cj), name(cj)) else {
        return;
    };
    let (jobs, _) = store.list(resources::jobs(), Some(ns(cj)));
    let mine: Vec<&Value> = jobs
        .iter()
        .filter(|j| controller_uid(j) == Some(uid(cj)))
        .collect();
    let active: Vec<Value> = mine
        .iter()
        .filter(|j| job_finished(j).is_none())
        .map(|j| json!({"apiVersion": "batch/v1", "kind": "Job", "name": name(j), "namespace": ns(j), "uid": uid(j)}))
        .collect();
    let mut status = now["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    if active.is_empty() {
        if let Some(m) = status.as_object_mut() {
            m.remove("active");
        }
    } else {
        status["active"] = json!(active);
    }
    if let Some(t) = mine
        .iter()
        .filter(|j| job_finished(j) == Some("Complete"))
        .filter_map(|j| j["status"]["completionTime"].as_str())
        .max()
    {
        status["lastSuccessfulTime"] = json!(t);
    }
    write_status(store, resources::cronjobs(), &now, status);
}
