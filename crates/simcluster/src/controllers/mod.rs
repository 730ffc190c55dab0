//! The control plane's loops: scheduler, deployment and replicaset controllers, garbage collector. Each pass
//! reads the store and writes through the same admission and resourceVersion rules as any API client.

use crate::Cluster;
use crate::events::{Recorder, Source};
use crate::resources;
use crate::scheduler::Scheduler;
use crate::store::{DeleteOptions, FOREGROUND, Store};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

mod cronjob;
mod endpoints;
pub mod gitops;
mod job;
mod namespace;
pub mod node_lifecycle;
mod replicaset;

const RESYNC: Duration = Duration::from_millis(500);
/// Changes arriving within this window are handled by one pass.
const DEBOUNCE: Duration = Duration::from_millis(20);
const REVISION: &str = "deployment.kubernetes.io/revision";

pub async fn run(cluster: Cluster, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut changes = cluster.store.subscribe();
    let recorder = Recorder::default();
    let mut scheduler = cluster.run_scheduler.then(Scheduler::default);
    let mut progress = Progress::default();
    let mut cursors = cronjob::Cursors::default();
    loop {
        reconcile(
            &cluster.store,
            &recorder,
            scheduler.as_mut(),
            (&mut progress, &mut cursors),
            cluster.clock,
        );
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(RESYNC) => break,
                r = changes.recv() => match r {
                    // Events never change what a controller should do; they would only wake it for nothing.
                    Ok(c) if c.rt.kind == "Event" => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {
                        tokio::time::sleep(DEBOUNCE).await;
                        // Everything queued meanwhile is covered by the next pass.
                        while changes.try_recv().is_ok() {}
                        break;
                    }
                },
            }
        }
    }
}

/// One pass of every controller.
pub fn reconcile(
    store: &Store,
    recorder: &Recorder,
    scheduler: Option<&mut Scheduler>,
    (progress, cursors): (&mut Progress, &mut cronjob::Cursors),
    clock: crate::Clock,
) {
    collect_garbage(store);
    namespace::reconcile(store);
    node_lifecycle::reconcile(store);
    crate::scheduler::bind_claims(store, recorder);
    crate::scheduler::release_claims(store);
    if let Some(s) = scheduler {
        s.pass(store, recorder, clock);
    }
    let (deployments, _) = store.list(resources::deployments(), None);
    for d in &deployments {
        reconcile_deployment(store, recorder, d);
    }
    let (replicasets, _) = store.list(resources::replicasets(), None);
    for rs in &replicasets {
        replicaset::reconcile(store, recorder, rs);
    }
    cronjob::reconcile(store, recorder, cursors, clock);
    job::reconcile(store, recorder, clock);
    endpoints::reconcile(store);
    // The quota controller: each ResourceQuota's usage.
    let (quotas, _) = store.list(resources::resource_quotas(), None);
    for q in &quotas {
        let (pods, _) = store.list_shared(resources::pods(), Some(ns(q)));
        let pods: Vec<&Value> = pods.iter().map(|p| p.as_ref()).collect();
        write_status(
            store,
            resources::resource_quotas(),
            q,
            crate::quota::status(q, &pods),
        );
    }
    progress.retain(|uid, _| {
        deployments
            .iter()
            .any(|d| d["metadata"]["uid"].as_str() == Some(uid))
    });
    for d in &deployments {
        update_deployment_status(store, d, progress, clock);
    }
}

/// Per Deployment uid: what the rollout looked like when it last made progress, and when.
pub type Progress = std::collections::HashMap<String, (Value, std::time::Instant)>;

fn name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or_default()
}
fn ns(o: &Value) -> &str {
    o["metadata"]["namespace"].as_str().unwrap_or("default")
}
fn uid(o: &Value) -> &str {
    o["metadata"]["uid"].as_str().unwrap_or_default()
}
fn controller_uid(o: &Value) -> Option<&str> {
    o["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)?["uid"]
        .as_str()
}
fn is_pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn owner_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": name(owner), "uid": uid(owner),
           "controller": true, "blockOwnerDeletion": true})
}

fn source(component: &str) -> Source<'_> {
    Source {
        component,
        host: None,
    }
}

/// Background cascading deletion: delete objects whose owners are all gone.
fn collect_garbage(store: &Store) {
    let kinds = [
        resources::deployments(),
        resources::replicasets(),
        resources::pods(),
        resources::jobs(),
        resources::cronjobs(),
        // Owners only: without them here, an EndpointSlice's Service would look gone and the slice be collected.
        resources::services(),
        resources::endpoint_slices(),
    ];
    let all: Vec<(&'static resources::ResourceType, std::sync::Arc<Value>)> = kinds
        .iter()
        .flat_map(|rt| {
            store
                .list_shared(rt, None)
                .0
                .into_iter()
                .map(move |o| (*rt, o))
        })
        .collect();
    let live: HashSet<&str> = all.iter().map(|(_, o)| uid(o)).collect();
    let dependents_of =
        |owner: &str| -> Vec<&(&'static resources::ResourceType, std::sync::Arc<Value>)> {
            all.iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|r| r["uid"].as_str() == Some(owner))
                })
                .collect()
        };
    for (rt, o) in &all {
        let refs = o["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Background: every owner is gone.
        if !refs.is_empty()
            && refs
                .iter()
                .all(|r| !live.contains(r["uid"].as_str().unwrap_or_default()))
        {
            let _ = store.delete(rt, ns(o), name(o), &DeleteOptions::default());
            continue;
        }
        // Foreground: delete the dependents (in the foreground too), then release the owner.
        let foreground = o["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == FOREGROUND));
        if foreground && !o["metadata"]["deletionTimestamp"].is_null() {
            let mut waiting = false;
            for (drt, dep) in dependents_of(uid(o)) {
                waiting = true;
                if dep["metadata"]["deletionTimestamp"].is_null() {
                    let _ = store.delete(
                        drt,
                        ns(dep),
                        name(dep),
                        &DeleteOptions {
                            foreground: true,
                            ..Default::default()
                        },
                    );
                }
            }
            if !waiting {
                let _ = store.modify(rt, ns(o), name(o), false, false, |cur| {
                    let mut cur = cur.clone();
                    if let Some(f) = cur["metadata"]["finalizers"].as_array_mut() {
                        f.retain(|x| x != FOREGROUND);
                    }
                    cur["metadata"]["resourceVersion"] = Value::Null;
                    Ok(cur)
                });
            }
        }
    }
}

/// Active objects controlled by `owner`: not being deleted, and (for pods) not finished, as the ReplicaSet
/// controller counts them, so an evicted pod is replaced.
fn owned_by<'a>(items: &'a [Value], owner: &Value) -> Vec<&'a Value> {
    items
        .iter()
        .filter(|o| {
            controller_uid(o) == Some(uid(owner))
                && o["metadata"]["deletionTimestamp"].is_null()
                && !matches!(o["status"]["phase"].as_str(), Some("Failed" | "Succeeded"))
        })
        .collect()
}

fn write_status(store: &Store, rt: &'static resources::ResourceType, obj: &Value, status: Value) {
    if obj["status"] == status {
        return;
    }
    let _ = store.modify(rt, ns(obj), name(obj), true, false, |o| {
        let mut o = o.clone();
        o["status"] = status;
        o["metadata"]["resourceVersion"] = Value::Null;
        Ok(o)
    });
}

/// The pod template without the label the controller adds, for comparing a ReplicaSet with its Deployment.
fn template_without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove("pod-template-hash");
    }
    t
}

/// Kubernetes' safe alphabet over an FNV-1a hash of the canonical template.
pub fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in canonical(template).bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut v = h;
    for _ in 0..10 {
        out.push(alphabet[(v % alphabet.len() as u32) as usize] as char);
        v /= alphabet.len() as u32;
        if v == 0 {
            break;
        }
    }
    out
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn revision(o: &Value) -> i64 {
    o["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn reconcile_deployment(store: &Store, recorder: &Recorder, d: &Value) {
    if !d["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let (all_rs, _) = store.list(resources::replicasets(), Some(ns(d)));
    let owned = owned_by(&all_rs, d);
    let template = &d["spec"]["template"];
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let max_revision = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
    let new_rs = owned
        .iter()
        .find(|rs| template_without_hash(&rs["spec"]["template"]) == *template)
        .map(|rs| (*rs).clone());
    let new_rs = match new_rs {
        Some(rs) if revision(&rs) < max_revision => {
            // A rollback to an older template: that ReplicaSet becomes the newest revision again.
            bump_revision(store, &rs, max_revision + 1)
        }
        Some(rs) => Some(rs),
        None => {
            let hash = template_hash(template);
            let mut rs_template = template.clone();
            rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let rs_name = format!("{}-{hash}", name(d));
            let rs = json!({
                "metadata": {"name": rs_name, "labels": labels, "ownerReferences": [owner_ref(d)],
                             "annotations": {REVISION: (max_revision + 1).to_string(),
                                             "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                                             "deployment.kubernetes.io/max-replicas": desired.to_string()}},
                "spec": {"replicas": 0, "selector": selector, "template": rs_template},
            });
            store
                .create(resources::replicasets(), ns(d), rs, false)
                .ok()
        }
    };
    let Some(new_rs) = new_rs else { return };
    let mut old: Vec<&Value> = owned
        .iter()
        .copied()
        .filter(|rs| uid(rs) != uid(&new_rs))
        .collect();
    old.sort_by_key(|rs| revision(rs));
    roll_out(store, recorder, d, &new_rs, &old, desired);
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    old.retain(|rs| {
        rs["spec"]["replicas"].as_i64() == Some(0)
            && rs["status"]["replicas"].as_i64().unwrap_or(0) == 0
    });
    old.sort_by_key(|rs| revision(rs));
    let excess = old.len().saturating_sub(limit);
    for rs in old.into_iter().take(excess) {
        let _ = store.delete(
            resources::replicasets(),
            ns(rs),
            name(rs),
            &DeleteOptions::default(),
        );
    }
    if d["metadata"]["annotations"][REVISION].as_str()
        != new_rs["metadata"]["annotations"][REVISION].as_str()
    {
        let rev = new_rs["metadata"]["annotations"][REVISION].clone();
        let _ = store.modify(
            resources::deployments(),
            ns(d),
            name(d),
            false,
            false,
            |o| {
                let mut o = o.clone();
                o["metadata"]["annotations"][REVISION] = rev;
                o["metadata"]["resourceVersion"] = Value::Null;
                Ok(o)
            },
        );
    }
}

/// `maxSurge`/`maxUnavailable`: an absolute number, or a percentage of the desired replicas.
fn resolve(v: &Value, desired: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let exact = desired as f64 * pct / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i64
        }
        _ => 0,
    }
}

fn replicas(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap_or(0)
}

fn available(rs: &Value) -> i64 {
    rs["status"]["availableReplicas"].as_i64().unwrap_or(0)
}

/// One step of the deployment controller's rollout, as Kubernetes does it. RollingUpdate: scale the new
/// ReplicaSet up within `desired + maxSurge` pods, and old ones down only as far as `desired - maxUnavailable`
/// available pods allow (unhealthy old pods first), so a broken new template never takes working pods down.
/// Recreate: old ReplicaSets to zero, then the new one up once their pods are gone.
fn roll_out(
    store: &Store,
    recorder: &Recorder,
    d: &Value,
    new_rs: &Value,
    old: &[&Value],
    desired: i64,
) {
    let strategy = &d["spec"]["strategy"];
    if strategy["type"] == "Recreate" {
        for rs in old {
            if replicas(rs) > 0 {
                scale(store, recorder, d, rs, 0);
            }
        }
        // Old pods still running, terminating ones included, hold the new ReplicaSet back (`oldPodsRunning`).
        let (pods, _) = store.list(resources::pods(), Some(ns(d)));
        let old_running = pods.iter().any(|p| {
            old.iter().any(|rs| controller_uid(p) == Some(uid(rs)))
                && !matches!(p["status"]["phase"].as_str(), Some("Failed" | "Succeeded"))
        });
        if !old_running && replicas(new_rs) != desired {
            scale(store, recorder, d, new_rs, desired);
        }
        return;
    }
    let ru = &strategy["rollingUpdate"];
    let surge = resolve(&ru["maxSurge"], desired, true);
    let mut unavailable = resolve(&ru["maxUnavailable"], desired, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    let old_total: i64 = old.iter().map(|rs| replicas(rs)).sum();
    let mut new_replicas = replicas(new_rs);
    if new_replicas > desired {
        new_replicas = desired;
    } else if new_replicas < desired {
        let room = desired + surge - old_total - new_replicas;
        if room > 0 {
            new_replicas = desired.min(new_replicas + room);
        }
    }
    if new_replicas != replicas(new_rs) {
        scale(store, recorder, d, new_rs, new_replicas);
    }
    let min_available = desired - unavailable;
    let new_unavailable = (new_replicas - available(new_rs)).max(0);
    let mut budget = old_total + new_replicas - min_available - new_unavailable;
    let mut targets: Vec<i64> = old.iter().map(|rs| replicas(rs)).collect();
    // Unhealthy old pods first: removing them costs no availability.
    for (i, rs) in old.iter().enumerate() {
        let unhealthy = (targets[i] - available(rs)).max(0).min(budget.max(0));
        targets[i] -= unhealthy;
        budget -= unhealthy;
    }
    let available_total: i64 = old.iter().map(|rs| available(rs)).sum::<i64>() + available(new_rs);
    let mut healthy_budget = budget.min(available_total - min_available);
    for (i, _) in old.iter().enumerate() {
        let take = targets[i].min(healthy_budget.max(0));
        targets[i] -= take;
        healthy_budget -= take;
    }
    for (rs, target) in old.iter().zip(targets) {
        if target != replicas(rs) {
            scale(store, recorder, d, rs, target);
        }
    }
}

fn bump_revision(store: &Store, rs: &Value, rev: i64) -> Option<Value> {
    store
        .modify(
            resources::replicasets(),
            ns(rs),
            name(rs),
            false,
            false,
            |o| {
                let mut o = o.clone();
                o["metadata"]["annotations"][REVISION] = json!(rev.to_string());
                o["metadata"]["resourceVersion"] = Value::Null;
                Ok(o)
            },
        )
        .ok()
}

fn scale(store: &Store, recorder: &Recorder, d: &Value, rs: &Value, to: i64) {
    let from = rs["spec"]["replicas"].as_i64().unwrap_or(0);
    let res = store.modify(
        resources::replicasets(),
        ns(rs),
        name(rs),
        false,
        false,
        |o| {
            let mut o = o.clone();
            o["spec"]["replicas"] = json!(to);
            o["metadata"]["resourceVersion"] = Value::Null;
            Ok(o)
        },
    );
    if res.is_ok() {
        let verb = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {verb} replica set {} from {from} to {to}", name(rs));
        recorder.record(
            store,
            &source("deployment-controller"),
            d,
            None,
            ("Normal", "ScalingReplicaSet", &msg),
        );
    }
}

fn update_deployment_status(
    store: &Store,
    d: &Value,
    progress: &mut Progress,
    clock: crate::Clock,
) {
    let Ok(d) = store.get(resources::deployments(), ns(d), name(d)) else {
        return;
    };
    let (all_rs, _) = store.list(resources::replicasets(), Some(ns(&d)));
    let owned = owned_by(&all_rs, &d);
    let template = &d["spec"]["template"];
    let new_rs = owned
        .iter()
        .find(|rs| template_without_hash(&rs["spec"]["template"]) == *template);
    let sum = |field: &str| {
        owned
            .iter()
            .map(|rs| rs["status"][field].as_i64().unwrap_or(0))
            .sum::<i64>()
    };
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let updated = new_rs
        .map(|rs| rs["status"]["replicas"].as_i64().unwrap_or(0))
        .unwrap_or(0);
    let available = sum("availableReplicas");
    let new_name = new_rs.map(|rs| name(rs).to_string()).unwrap_or_default();
    let complete = new_rs
        .is_some_and(|rs| rs["status"]["availableReplicas"].as_i64().unwrap_or(0) >= desired)
        && sum("replicas") == desired;
    let mut conditions = Vec::new();
    let prev = |t: &str| {
        d["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == t)
            .cloned()
    };
    let mut cond = |t: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let now = crate::store::now();
        let p = prev(t);
        let transition = match &p {
            Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let update = match &p {
            Some(p) if p["status"] == status && p["reason"] == reason => {
                p["lastUpdateTime"].clone()
            }
            _ => json!(now),
        };
        conditions.push(
            json!({"type": t, "status": status, "reason": reason, "message": message,
                               "lastTransitionTime": transition, "lastUpdateTime": update}),
        );
    };
    if available >= desired {
        cond(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
        );
    } else {
        cond(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
        );
    }
    // A rollout that has not moved (new ReplicaSet, updated/ready/available counts) for progressDeadlineSeconds
    // has failed, as the deployment controller reports it.
    let now_state = json!([new_name, updated, sum("readyReplicas"), available]);
    let since = match progress.get(uid(&d)) {
        Some((state, at)) if *state == now_state => *at,
        _ => {
            let at = std::time::Instant::now();
            progress.insert(uid(&d).to_string(), (now_state, at));
            at
        }
    };
    let deadline =
        Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
    if complete {
        cond(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
        );
    } else if since.elapsed() >= clock.real(deadline) {
        cond(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
        );
    } else {
        cond(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
        );
    }
    // A ReplicaSet that cannot create its pods: its ReplicaFailure condition, on the Deployment too.
    let failure = owned.iter().find_map(|rs| {
        rs["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ReplicaFailure" && c["status"] == "True")
            .cloned()
    });
    if let Some(f) = failure {
        cond(
            "ReplicaFailure",
            true,
            f["reason"].as_str().unwrap_or("FailedCreate"),
            f["message"].as_str().unwrap_or_default().to_string(),
        );
    }
    let status = json!({
        "observedGeneration": d["metadata"]["generation"],
        "replicas": sum("replicas"), "updatedReplicas": updated, "readyReplicas": sum("readyReplicas"),
        "availableReplicas": available, "unavailableReplicas": (desired - available).max(0),
        "conditions": conditions,
    });
    write_status(store, resources::deployments(), &d, status);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn template_hash_is_stable_and_sensitive() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "nginx:1", "name": "web"}]}, "metadata": {"labels": {"tier": "x", "app": "web"}}});
        let c = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}});
        assert_eq!(template_hash(&a), template_hash(&b));
        assert_ne!(template_hash(&a), template_hash(&c));
        assert!(
            template_hash(&a)
                .chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
        );
    }
}
