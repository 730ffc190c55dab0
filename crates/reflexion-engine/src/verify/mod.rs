//! Verification by watching, not sleeping: the workload must become Ready and stay Ready for a stability window
//! with no container restarting and no new Warning event on its current pods. Anything else, including no data
//! before the deadline, is "not verified".

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event as K8sEvent, Pod};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use reflexion_core::owner::{WorkloadKind, WorkloadRef};
use reflexion_core::revision;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

mod cronjob;
mod service;

#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    pub verified: bool,
    pub detail: String,
    /// Time from the start of verification until the workload first became healthy.
    pub ready_after_ms: Option<u64>,
    pub stable_for_secs: f64,
}

/// What one observation says about the workload.
#[derive(Debug, PartialEq)]
enum Health {
    Healthy {
        restarts: i32,
    },
    Unhealthy(String),
    /// Not healthy, and this is how many times its containers have restarted so far.
    Down {
        why: String,
        restarts: i32,
    },
    /// A container died (OOM-killed, exited): the fix did not hold.
    Crashed(String),
    /// The rollout will not complete by waiting (its progress deadline passed).
    Stuck(String),
}

/// Failed readiness probes on the pods that can prove a fix before verification ends the trial, as the kubelet
/// counts them (the `count` of its aggregated `Unhealthy` events).
const READINESS_FAILURES_TO_FAIL: i32 = 3;

fn is_readiness_failure(ev: &K8sEvent) -> bool {
    ev.reason.as_deref() == Some("Unhealthy")
        && ev
            .message
            .as_deref()
            .is_some_and(|m| m.starts_with("Readiness probe failed"))
}

/// Readiness failures seen since verification began, per event: an aggregated event that began earlier counts only
/// what it added since.
#[derive(Default)]
struct ReadinessFailures {
    baseline: std::collections::HashMap<String, i32>,
    latest: std::collections::HashMap<String, i32>,
}

impl ReadinessFailures {
    fn count(&mut self, ev: &K8sEvent, since: k8s_openapi::jiff::Timestamp) -> i32 {
        let key = ev.metadata.name.clone().unwrap_or_default();
        let count = ev.count.unwrap_or(1);
        let began_before = ev.first_timestamp.as_ref().is_some_and(|t| t.0 < since);
        let base =
            *self
                .baseline
                .entry(key.clone())
                .or_insert(if began_before { count - 1 } else { 0 });
        self.latest.insert(key, (count - base).max(0));
        self.latest.values().sum()
    }
}

/// What proves the change besides the workload's state: the recreated pod's (or bare Job's) uid, or the CronJob run
/// started for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    pub pod_uid: Option<&'a str>,
    pub run: Option<&'a str>,
}

pub async fn verify(
    client: &Client,
    target: &WorkloadRef,
    expected: Expected<'_>,
    window: Duration,
    timeout: Duration,
) -> Verification {
    let expected_pod_uid = expected.pod_uid;
    match target.kind {
        WorkloadKind::Service => {
            return service::verify_service(client, target, window, timeout).await;
        }
        WorkloadKind::CronJob => {
            return cronjob::verify_cronjob(client, target, timeout, expected.run).await;
        }
        WorkloadKind::Job => {
            return cronjob::verify_job(client, target, timeout, expected.pod_uid).await;
        }
        _ => {}
    }
    let start = Instant::now();
    let deadline = start + timeout;
    let fields = format!("metadata.name={}", target.name);
    let cfg = watcher::Config::default().fields(&fields);
    let mut stream = match target.kind {
        WorkloadKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &target.namespace);
            watcher::watcher(api, cfg)
                .map(|e| e.map(|ev| map_event(ev, deployment_health)))
                .boxed()
        }
        _ => {
            let api: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
            let uid = expected_pod_uid.map(String::from);
            watcher::watcher(api, cfg)
                .map(move |e| e.map(|ev| map_event(ev, |p: &Pod| pod_health(p, uid.as_deref()))))
                .boxed()
        }
    };
    let started_at = k8s_openapi::jiff::Timestamp::now();
    let events_api: Api<K8sEvent> = Api::namespaced(client.clone(), &target.namespace);
    let mut warnings = watcher::watcher(events_api, watcher::Config::default())
        .filter_map(|e| async move {
            match e {
                Ok(Event::Apply(ev) | Event::InitApply(ev))
                    if ev.type_.as_deref() == Some("Warning") =>
                {
                    Some(ev)
                }
                _ => None,
            }
        })
        .boxed();
    let mut readiness_failures = ReadinessFailures::default();
    // A Deployment's status does not count restarts: while it looks Ready, its current pods' restart counts are
    // read every second, so that a container that dies and comes back between two status updates is seen.
    let mut restart_check = tokio::time::interval(Duration::from_secs(1));
    let mut pod_restarts: std::collections::HashMap<String, i32> = Default::default();
    let mut ready_since: Option<Instant> = None;
    let mut first_ready: Option<Instant> = None;
    let mut baseline_restarts: Option<i32> = None;
    let mut last = "no observation of the workload yet".to_string();
    loop {
        let stable_at = ready_since.map(|t| t + window);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let stable = ready_since.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0);
                return Verification {
                    verified: false,
                    detail: format!("not Ready and stable for {}s within {}s: {last}", window.as_secs_f64(), timeout.as_secs()),
                    ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
                    stable_for_secs: stable,
                };
            }
            _ = sleep_until_opt(stable_at) => {
                return Verification {
                    verified: true,
                    detail: format!("Ready and stable for {}s with no restarts", window.as_secs_f64()),
                    ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
                    stable_for_secs: window.as_secs_f64(),
                };
            }
            _ = restart_check.tick(), if ready_since.is_some() && target.kind == WorkloadKind::Deployment => {
                let pods = crate::cluster::Cluster::new(client.clone())
                    .current_pods(target)
                    .await
                    .unwrap_or_default();
                for p in &pods {
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    let now = container_restarts(p);
                    let base = *pod_restarts.entry(uid).or_insert(now);
                    if now > base {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        return restarted(start, first_ready, base, now, &format!("pod {name} of the current revision"));
                    }
                }
            }
            Some(ev) = warnings.next() => {
                // New pods that run and keep failing readiness will not become Ready by waiting: end the trial now,
                // so that the next one starts from what was seen.
                if ready_since.is_none()
                    && is_readiness_failure(&ev)
                    && new_warning(client, target, expected_pod_uid, &ev, started_at).await.is_some()
                {
                    let seen = readiness_failures.count(&ev, started_at);
                    if seen >= READINESS_FAILURES_TO_FAIL {
                        return Verification {
                            verified: false,
                            detail: format!(
                                "the new pods run but failed their readiness probe {seen} times: {}",
                                ev.message.as_deref().unwrap_or_default()
                            ),
                            ready_after_ms: None,
                            stable_for_secs: 0.0,
                        };
                    }
                    continue;
                }
                // Any warning once Ready; before that only those that say a container cannot start or keeps dying
                // (a readiness probe failing during start-up is expected).
                if (ready_since.is_some() || fatal_before_ready(ev.reason.as_deref()))
                    && let Some(why) = new_warning(client, target, expected_pod_uid, &ev, started_at).await
                {
                    return Verification {
                        verified: false,
                        detail: format!("a new Warning event on the workload's pods: {why}"),
                        ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
                        stable_for_secs: ready_since.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0),
                    };
                }
            }
            next = stream.next() => match next {
                Some(Ok(Some(Health::Healthy { restarts }))) => {
                    let base = *baseline_restarts.get_or_insert(restarts);
                    if restarts > base {
                        return restarted(start, first_ready, base, restarts, "after becoming Ready");
                    }
                    if ready_since.is_none() {
                        ready_since = Some(Instant::now());
                        first_ready.get_or_insert_with(Instant::now);
                        last = "Ready".into();
                    }
                }
                Some(Ok(Some(Health::Down { why, restarts }))) => {
                    // A container that restarts (or dies) during verification is a failed fix: no need to wait out
                    // the timeout, and never a success.
                    let base = *baseline_restarts.get_or_insert(restarts);
                    if restarts > base {
                        return restarted(start, first_ready, base, restarts, &why);
                    }
                    last = why;
                    ready_since = None;
                }
                Some(Ok(Some(Health::Crashed(why)))) => return restarted(start, first_ready, 0, 0, &why),
                Some(Ok(Some(Health::Stuck(why)))) => {
                    return Verification {
                        verified: false,
                        detail: why,
                        ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
                        stable_for_secs: 0.0,
                    };
                }
                Some(Ok(Some(Health::Unhealthy(why)))) => {
                    last = why;
                    ready_since = None;
                }
                Some(Ok(None)) => {}
                Some(Err(e)) => {
                    // Unobserved time is not stable time: the window starts again when the watch is back.
                    last = format!("watch error: {e}");
                    ready_since = None;
                }
                None => {
                    last = "watch ended".into();
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// Warning reasons that mean the new pods will not become healthy by waiting.
fn fatal_before_ready(reason: Option<&str>) -> bool {
    matches!(
        reason,
        Some(
            "BackOff"
                | "Failed"
                | "FailedCreatePodContainer"
                | "InspectFailed"
                | "ErrImageNeverPull"
        )
    )
}

/// Whether a Warning event is new (after verification began) and about one of the pods that can prove the fix: the
/// expected pod of a bare-pod target, or a live pod of the Deployment's current ReplicaSet. `Some` is the event's
/// `reason: message`.
async fn new_warning(
    client: &Client,
    target: &WorkloadRef,
    expected_pod_uid: Option<&str>,
    ev: &K8sEvent,
    since: k8s_openapi::jiff::Timestamp,
) -> Option<String> {
    let at = ev
        .last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or(ev.event_time.as_ref().map(|t| t.0))
        .or(ev.metadata.creation_timestamp.as_ref().map(|t| t.0))?;
    if at < since {
        return None;
    }
    let obj = &ev.involved_object;
    if obj.kind.as_deref() != Some("Pod") {
        return None;
    }
    let name = obj.name.as_deref()?;
    let describe = || {
        format!(
            "{} on pod {name}: {}",
            ev.reason.as_deref().unwrap_or("unknown"),
            ev.message.as_deref().unwrap_or_default()
        )
    };
    let pod = Api::<Pod>::namespaced(client.clone(), &target.namespace)
        .get_opt(name)
        .await
        .ok()??;
    if obj.uid.is_some() && obj.uid != pod.metadata.uid {
        return None;
    }
    let current = match target.kind {
        // Only a live pod of the Deployment's current ReplicaSet speaks for the fix: not one of an older revision
        // on its way out, and never one that merely has a similar name.
        WorkloadKind::Deployment => Some(
            reflexion_k8s::current_replicaset(client, target)
                .await
                .ok()??,
        ),
        _ => {
            let expected = expected_pod_uid.is_none_or(|u| obj.uid.as_deref() == Some(u));
            if name != target.name || !expected {
                return None;
            }
            None
        }
    };
    revision::proves(&pod, current.as_ref()).then(describe)
}

fn restarted(
    start: Instant,
    first_ready: Option<Instant>,
    base: i32,
    now: i32,
    context: &str,
) -> Verification {
    Verification {
        verified: false,
        detail: if now > base {
            format!(
                "a container restarted during verification ({base} -> {now} restarts; {context})"
            )
        } else {
            format!("a container died during verification: {context}")
        },
        ready_after_ms: first_ready.map(|t| (t - start).as_millis() as u64),
        stable_for_secs: 0.0,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn map_event<K>(ev: Event<K>, health: impl Fn(&K) -> Health) -> Option<Health> {
    match ev {
        Event::Apply(o) | Event::InitApply(o) => Some(health(&o)),
        Event::Delete(_) => Some(Health::Unhealthy("the object was deleted".into())),
        Event::Init | Event::InitDone => None,
    }
}

fn container_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

fn pod_health(p: &Pod, expected_uid: Option<&str>) -> Health {
    if expected_uid.is_some_and(|u| p.metadata.uid.as_deref() != Some(u)) {
        return Health::Unhealthy("the pod was replaced by another object".into());
    }
    if p.metadata.deletion_timestamp.is_some() {
        return Health::Unhealthy("the pod is being deleted".into());
    }
    let Some(status) = &p.status else {
        return Health::Unhealthy("the pod has no status yet".into());
    };
    let statuses = status.container_statuses.as_deref().unwrap_or_default();
    let restarts = statuses.iter().map(|c| c.restart_count).sum();
    if let Some(w) = statuses
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref())
    {
        let why = format!(
            "container waiting: {}",
            w.reason.as_deref().unwrap_or("unknown")
        );
        return Health::Down { why, restarts };
    }
    if let Some(t) = statuses
        .iter()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref())
    {
        return Health::Crashed(format!(
            "container terminated: {} (exit code {})",
            t.reason.as_deref().unwrap_or("unknown"),
            t.exit_code
        ));
    }
    if !reflexion_core::classify::is_ready(p) {
        return Health::Unhealthy(format!(
            "pod phase {} and not Ready",
            status.phase.as_deref().unwrap_or("unknown")
        ));
    }
    Health::Healthy { restarts }
}

/// The same test as `kubectl rollout status`: the controller has seen the latest spec, every replica is updated
/// and available, and no old replica remains.
fn deployment_health(d: &Deployment) -> Health {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = &d.status else {
        return Health::Unhealthy("the deployment has no status yet".into());
    };
    let generation = d.metadata.generation.unwrap_or(0);
    if st.observed_generation.unwrap_or(0) < generation {
        return Health::Unhealthy(
            "the deployment controller has not observed the change yet".into(),
        );
    }
    let (updated, available, total) = (
        st.updated_replicas.unwrap_or(0),
        st.available_replicas.unwrap_or(0),
        st.replicas.unwrap_or(0),
    );
    let deadline_passed = st.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline_passed {
        return Health::Stuck(format!(
            "the rollout exceeded its progress deadline ({updated}/{want} updated, {available}/{want} available)"
        ));
    }
    if updated < want || available < want || total > want {
        return Health::Unhealthy(format!(
            "rollout in progress: {updated}/{want} updated, {available}/{want} available, {total} total"
        ));
    }
    Health::Healthy { restarts: 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn pod_health_table() {
        let ready = json!({"metadata": {"name": "p", "uid": "new"}, "status": {"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": true, "restartCount": 2, "state": {"running": {}}}]}});
        assert_eq!(
            pod_health(&pod(ready.clone()), Some("new")),
            Health::Healthy { restarts: 2 }
        );
        assert!(matches!(
            pod_health(&pod(ready.clone()), Some("old")),
            Health::Unhealthy(_)
        ));
        let mut waiting = ready.clone();
        waiting["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "ImagePullBackOff"}});
        assert_eq!(
            pod_health(&pod(waiting), None),
            Health::Down {
                why: "container waiting: ImagePullBackOff".into(),
                restarts: 2
            }
        );
        let mut oom = ready.clone();
        oom["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"reason": "OOMKilled", "exitCode": 137}});
        assert_eq!(
            pod_health(&pod(oom), None),
            Health::Crashed("container terminated: OOMKilled (exit code 137)".into())
        );
        let mut unready = ready;
        unready["status"]["conditions"][0]["status"] = json!("False");
        assert!(matches!(
            pod_health(&pod(unready), None),
            Health::Unhealthy(_)
        ));
        assert!(matches!(
            pod_health(&pod(json!({"metadata": {"name": "p"}})), None),
            Health::Unhealthy(_)
        ));
    }

    #[test]
    fn deployment_health_table() {
        let d = |generation: i64,
                 observed: i64,
                 updated: i32,
                 available: i32,
                 total: i32|
         -> Deployment {
            serde_json::from_value(json!({"metadata": {"name": "web", "generation": generation}, "spec": {"replicas": 2,
                "selector": {}, "template": {}},
                "status": {"observedGeneration": observed, "updatedReplicas": updated, "availableReplicas": available, "replicas": total}}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        assert_eq!(
            deployment_health(&d(2, 2, 2, 2, 2)),
            Health::Healthy { restarts: 0 }
        );
        let mut stuck = d(2, 2, 1, 1, 2);
        if let Some(st) = stuck.status.as_mut() {
            st.conditions = serde_json::from_value(json!([{"type": "Progressing", "status": "False",
                "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"web-1\" has timed out progressing."}]))
            .ok();
        }
        assert!(matches!(deployment_health(&stuck), Health::Stuck(_)));
        for (g, o, u, a, t) in [
            (2, 1, 2, 2, 2),
            (2, 2, 1, 2, 2),
            (2, 2, 2, 1, 2),
            (2, 2, 2, 2, 4),
        ] {
            assert!(
                matches!(deployment_health(&d(g, o, u, a, t)), Health::Unhealthy(_)),
                "{g} {o} {u} {a} {t}"
            );
        }
    }

    #[test]
    fn readiness_failures_count_only_what_happened_since_verification_began() {
        let since: k8s_openapi::jiff::Timestamp = "2026-11-30T12:00:00Z"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let ev = |name: &str, first: &str, count: i32| -> K8sEvent {
            serde_json::from_value(json!({"metadata": {"name": name}, "involvedObject": {},
                "reason": "Unhealthy", "message": "Readiness probe failed: HTTP probe failed with statuscode: 404",
                "firstTimestamp": first, "count": count}))
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let mut seen = ReadinessFailures::default();
        // A new pod's event, updated twice.
        assert_eq!(seen.count(&ev("a", "2026-11-30T12:00:05Z", 1), since), 1);
        assert_eq!(seen.count(&ev("a", "2026-11-30T12:00:05Z", 2), since), 2);
        // An older event of the same pod that had 7 failures before: only the new one counts.
        assert_eq!(seen.count(&ev("b", "2026-11-30T11:50:00Z", 8), since), 3);
        assert_eq!(seen.count(&ev("b", "2026-11-30T11:50:00Z", 9), since), 4);
        assert!(is_readiness_failure(&ev("a", "2026-11-30T12:00:05Z", 1)));
    }
}
