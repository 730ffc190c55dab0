//! Conformance: each scenario manifest in k8s/scenarios, applied to the real simcluster binary through kube-rs,
//! reaches the state a real cluster reaches, with the same reason strings, exit codes, events and logs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use std::time::{Duration, Instant};

#[macro_use]
mod common;

use common::pods::*;
use common::{start, start_split, start_split_with, start_with};

async fn bad_image_pod_and_deployment_back_off_pulling(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "bad-image-pod.yaml").await;
    apply(&sim.client, "bad-image-deployment.yaml").await;
    let p = pod_where(&sim.client, "run=test-nginx", "ImagePullBackOff", |p| {
        reason_is(p, "ImagePullBackOff")
    })
    .await;
    assert_eq!(
        waiting(&p).unwrap().1,
        "Back-off pulling image \"nginx:bu-tag-yok\""
    );
    let ev = events_of(&sim.client, &p).await;
    assert!(
        has_event(
            &ev,
            "Warning",
            "Failed",
            "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nginx:bu-tag-yok\""
        ),
        "{ev:?}"
    );
    assert!(
        has_event(&ev, "Warning", "Failed", "Error: ErrImagePull"),
        "{ev:?}"
    );
    assert!(
        has_event(
            &ev,
            "Normal",
            "BackOff",
            "Back-off pulling image \"nginx:bu-tag-yok\""
        ),
        "{ev:?}"
    );
    pod_where(&sim.client, "app=web", "ImagePullBackOff", |p| {
        reason_is(p, "ImagePullBackOff")
    })
    .await;
}

/// Every state the pod's first container showed, as (waiting reason or state, restartCount), until `until` holds.
async fn timeline_of(
    client: &Client,
    selector: &str,
    until: impl Fn(&Pod) -> bool,
) -> Vec<(String, i32)> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let stream = watcher(pods, watcher::Config::default().labels(selector)).applied_objects();
    futures::pin_mut!(stream);
    let mut seen = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(40));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => panic!("{selector} never reached the end of its timeline; saw {seen:?}"),
            Some(Ok(p)) = stream.next() => {
                let cs = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first());
                if let Some(cs) = cs {
                    let state = cs.state.as_ref();
                    let shown = match (state.and_then(|s| s.waiting.as_ref()), state.and_then(|s| s.terminated.as_ref())) {
                        (Some(w), _) => w.reason.clone().unwrap_or_default(),
                        (None, Some(t)) => format!("terminated:{}", t.exit_code),
                        (None, None) => "running".into(),
                    };
                    if seen.last() != Some(&(shown.clone(), cs.restart_count)) {
                        seen.push((shown, cs.restart_count));
                    }
                }
                if until(&p) {
                    return seen;
                }
            }
        }
    }
}

/// simcluster with a kubelet flavor's flags, in either topology.
async fn start_flavored(split: bool, flags: &[&str]) -> common::Sim {
    if split {
        start_split_with(flags).await
    } else {
        start_with(flags).await
    }
}

async fn the_first_restart_is_immediate_and_crash_loop_back_off_comes_after_it(split: bool) {
    for timeline in ["classic", "current"] {
        let sim = start_flavored(split, &["--kubelet-timeline", timeline]).await;
        apply(&sim.client, "crash-pod.yaml").await;
        let seen = timeline_of(&sim.client, "run=crash-app", |p| {
            last_terminated(p).is_some_and(|_| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .is_some_and(|c| c.restart_count >= 3)
            })
        })
        .await;
        // A real kubelet restarts a container at once after its first exit; its back-off comes after the second,
        // so `kubectl logs --previous` always has the last run's lines.
        assert!(
            !seen
                .iter()
                .any(|(state, restarts)| state == "CrashLoopBackOff" && *restarts == 0),
            "{timeline}: {seen:?}"
        );
        assert_eq!(
            seen.first().map(|(s, r)| (s.as_str(), *r)),
            Some(("ContainerCreating", 0)),
            "{timeline}: {seen:?}"
        );
        assert!(
            seen.contains(&("terminated:1".into(), 0)),
            "{timeline}: {seen:?}"
        );
        let first_restart = seen.iter().position(|(s, r)| s == "running" && *r == 1);
        let first_back_off = seen.iter().position(|(s, _)| s == "CrashLoopBackOff");
        match timeline {
            // CrashLoopBackOff one second after the second exit, and after each one from then on.
            "classic" => assert!(
                first_restart.is_some()
                    && first_back_off.is_some()
                    && first_restart < first_back_off,
                "{timeline}: {seen:?}"
            ),
            // The exit stays shown (`Error`, RESTARTS n) through the back-off; CrashLoopBackOff, if at all, only
            // once a periodic resync lands inside one.
            _ => {
                assert!(
                    seen.contains(&("terminated:1".into(), 1)),
                    "{timeline}: {seen:?}"
                );
                if let Some(b) = first_back_off {
                    assert!(
                        seen[..b]
                            .iter()
                            .any(|(s, r)| s == "terminated:1" && *r >= 1),
                        "{timeline}: {seen:?}"
                    );
                }
            }
        }
    }
}

/// In the current timeline the exit shown between restarts is attempt n, and `lastState` attempt n-1.
async fn between_restarts_a_current_kubelet_shows_the_last_exit_and_the_one_before(split: bool) {
    let sim = start_flavored(split, &["--kubelet-timeline", "current"]).await;
    apply(&sim.client, "crash-pod.yaml").await;
    let p = pod_where(
        &sim.client,
        "run=crash-app",
        "an exit shown in back-off",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| {
                    c.restart_count >= 2
                        && c.state.as_ref().is_some_and(|s| s.terminated.is_some())
                        && c.last_state
                            .as_ref()
                            .is_some_and(|s| s.terminated.is_some())
                })
        },
    )
    .await;
    let cs = &p
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    let now = cs.state.as_ref().unwrap().terminated.as_ref().unwrap();
    let before = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((now.exit_code, now.reason.as_deref()), (1, Some("Error")));
    assert_eq!(
        (before.exit_code, before.reason.as_deref()),
        (1, Some("Error"))
    );
    assert_ne!(now.container_id, before.container_id, "two attempts");
    assert!(
        before.finished_at <= now.started_at,
        "{before:?} then {now:?}"
    );
}

async fn crashing_containers_loop_with_back_off_and_keep_previous_logs(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "crash-pod.yaml").await;
    apply(&sim.client, "crash-deployment.yaml").await;
    for selector in ["run=crash-app", "app=crash-app"] {
        let p = pod_where(
            &sim.client,
            selector,
            "CrashLoopBackOff after a restart",
            |p| reason_is(p, "CrashLoopBackOff") && last_terminated(p).is_some(),
        )
        .await;
        assert_eq!(
            last_terminated(&p),
            Some((1, "Error".to_string())),
            "{selector}"
        );
        let (_, message) = waiting(&p).unwrap();
        assert!(
            message.starts_with("back-off ")
                && message.contains("restarting failed container=crash-app"),
            "{message}"
        );
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));
        assert_eq!(previous_logs(&sim.client, &p).await, "Başladım\n");
        let ev = events_of(&sim.client, &p).await;
        assert!(
            has_event(
                &ev,
                "Warning",
                "BackOff",
                "Back-off restarting failed container crash-app in pod "
            ),
            "{ev:?}"
        );
    }
}

async fn memory_above_the_limit_is_oom_killed_137_on_cgroup_v2_and_1_on_v1(split: bool) {
    // cgroup v1: the container's PID 1 survives the kill of its largest process and exits 1, still `OOMKilled`.
    let sim = start_flavored(split, &["--cgroup", "v1"]).await;
    apply(&sim.client, "oom-pod.yaml").await;
    let p = pod_where(
        &sim.client,
        "run=memory-app",
        "OOM-killed and restarted",
        |p| last_terminated(p).is_some(),
    )
    .await;
    assert_eq!(last_terminated(&p), Some((1, "OOMKilled".to_string())));
    drop(sim);
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "oom-pod.yaml").await;
    apply(&sim.client, "oom-deployment.yaml").await;
    apply(&sim.client, "oom-tmpfile.yaml").await;
    for selector in ["run=memory-app", "app=memory-app", "app=cache-warmer"] {
        let p = pod_where(&sim.client, selector, "OOM-killed and restarted", |p| {
            last_terminated(p).is_some()
        })
        .await;
        assert_eq!(
            last_terminated(&p),
            Some((137, "OOMKilled".to_string())),
            "{selector}"
        );
    }
    // The 300Mi written to /tmp by busybox's dd is what the 256Mi limit could not hold.
    let p = pod_where(&sim.client, "app=cache-warmer", "restarted", |p| {
        last_terminated(p).is_some()
    })
    .await;
    assert!(
        previous_logs(&sim.client, &p)
            .await
            .starts_with("300+0 records in\n300+0 records out\n314572800 bytes"),
    );
}

async fn unschedulable_pods_say_why(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "pending-memory.yaml").await;
    apply(&sim.client, "pending-selector.yaml").await;
    let p = pod_where(&sim.client, "app=hungry", "Unschedulable", |p| {
        unschedulable(p).is_some()
    })
    .await;
    assert_eq!(
        unschedulable(&p).unwrap(),
        "0/1 nodes are available: 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    let ev = events_of(&sim.client, &p).await;
    assert!(
        has_event(&ev, "Warning", "FailedScheduling", "1 Insufficient memory"),
        "{ev:?}"
    );
    let p = pod_where(&sim.client, "app=picky", "Unschedulable", |p| {
        unschedulable(p).is_some()
    })
    .await;
    assert!(unschedulable(&p).unwrap().starts_with(
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    ));
}

async fn configuration_failures_name_what_is_missing(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "missing-secret.yaml").await;
    apply(&sim.client, "missing-env.yaml").await;
    let p = pod_where(&sim.client, "app=api", "CreateContainerConfigError", |p| {
        reason_is(p, "CreateContainerConfigError")
    })
    .await;
    assert_eq!(
        waiting(&p).unwrap().1,
        "secret \"db-credentials\" not found"
    );
    let ev = events_of(&sim.client, &p).await;
    assert!(
        has_event(
            &ev,
            "Warning",
            "Failed",
            "Error: secret \"db-credentials\" not found"
        ),
        "{ev:?}"
    );

    let p = pod_where(&sim.client, "app=demo-app", "crash-looping", |p| {
        last_terminated(p).is_some()
    })
    .await;
    assert_eq!(last_terminated(&p), Some((1, "Error".to_string())));
    assert_eq!(
        previous_logs(&sim.client, &p).await,
        "fatal: required environment variable DATABASE_URL is not set\n"
    );
}

async fn a_liveness_probe_on_the_wrong_port_restarts_the_container(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "bad-liveness.yaml").await;
    let p = pod_where(
        &sim.client,
        "app=probed",
        "restarted by its liveness probe",
        |p| last_terminated(p).is_some(),
    )
    .await;
    assert_eq!(last_terminated(&p), Some((137, "Error".to_string())));
    let ev = events_of(&sim.client, &p).await;
    assert!(
        has_event(&ev, "Warning", "Unhealthy", ":8080/healthz\": dial tcp "),
        "{ev:?}"
    );
    assert!(
        has_event(
            &ev,
            "Warning",
            "Unhealthy",
            "Liveness probe failed: Get \"http://"
        ),
        "{ev:?}"
    );
    assert!(
        has_event(
            &ev,
            "Normal",
            "Killing",
            "Container web failed liveness probe, will be restarted"
        ),
        "{ev:?}"
    );
}

async fn a_readiness_probe_on_an_unserved_path_keeps_the_pod_running_and_not_ready(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "bad-readiness.yaml").await;
    let p = pod_where(
        &sim.client,
        "app=gateway",
        "running with failed readiness probes",
        |p| {
            let status = p.status.as_ref();
            status.and_then(|s| s.phase.as_deref()) == Some("Running")
                && status
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|cs| cs.iter().all(|c| !c.ready && c.restart_count == 0))
        },
    )
    .await;
    let failed = "Readiness probe failed: HTTP probe failed with statuscode: 404";
    let mut ev = events_of(&sim.client, &p).await;
    for _ in 0..100 {
        if has_event(&ev, "Warning", "Unhealthy", failed) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ev = events_of(&sim.client, &p).await;
    }
    assert!(has_event(&ev, "Warning", "Unhealthy", failed), "{ev:?}");
    assert!(
        !has_event(&ev, "Normal", "Killing", ""),
        "a failing readiness probe never restarts the container: {ev:?}"
    );
}

async fn create_pod(client: &Client, spec: serde_json::Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(spec).unwrap(),
    )
    .await
    .unwrap();
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

async fn readiness_failures_leave_the_pod_running_but_not_ready(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    create_pod(&sim.client, serde_json::json!({"metadata": {"name": "unready", "labels": {"t": "unready"}}, "spec": {"containers": [{
        "name": "web", "image": "nginx:1.27", "readinessProbe": {"httpGet": {"path": "/ready", "port": 80}, "periodSeconds": 2}}]}})).await;
    let p = pod_where(
        &sim.client,
        "t=unready",
        "Running with a failing readiness probe",
        |p| {
            phase(p) == "Running"
                && p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .is_some_and(|c| c[0].started == Some(true))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let p2 = pods.get("unready").await.unwrap();
    assert!(
        !ready(&p2),
        "a failing readiness probe must keep the pod unready"
    );
    assert_eq!(
        p2.status
            .as_ref()
            .unwrap()
            .container_statuses
            .as_ref()
            .unwrap()[0]
            .restart_count,
        0,
        "readiness never restarts"
    );
    let ev = events_of(&sim.client, &p).await;
    assert!(
        has_event(
            &ev,
            "Warning",
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 404"
        ),
        "{ev:?}"
    );
}

async fn restart_policies_and_init_containers(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    let pod = |name: &str, policy: &str, script: &str| {
        serde_json::json!({"metadata": {"name": name, "labels": {"t": name}}, "spec": {"restartPolicy": policy,
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}]}})
    };
    create_pod(&sim.client, pod("never-fails", "Never", "echo bye; exit 3")).await;
    create_pod(&sim.client, pod("never-ok", "Never", "echo done")).await;
    create_pod(&sim.client, pod("onfailure-ok", "OnFailure", "exit 0")).await;
    create_pod(&sim.client, serde_json::json!({"metadata": {"name": "init-fails", "labels": {"t": "init-fails"}}, "spec": {
        "initContainers": [{"name": "wait", "image": "busybox", "command": ["sh", "-c", "echo waiting for db; exit 1"]}],
        "containers": [{"name": "app", "image": "nginx:1.27"}]}})).await;
    create_pod(&sim.client, serde_json::json!({"metadata": {"name": "init-ok", "labels": {"t": "init-ok"}}, "spec": {
        "initContainers": [{"name": "setup", "image": "busybox", "command": ["sh", "-c", "echo setup; sleep 1"]}],
        "containers": [{"name": "app", "image": "nginx:1.27"}]}})).await;

    let p = pod_where(&sim.client, "t=never-fails", "Failed", |p| {
        phase(p) == "Failed"
    })
    .await;
    let t = p.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    pod_where(&sim.client, "t=never-ok", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    let p = pod_where(&sim.client, "t=onfailure-ok", "Succeeded", |p| {
        phase(p) == "Succeeded"
    })
    .await;
    assert_eq!(
        p.status.unwrap().container_statuses.unwrap()[0].restart_count,
        0
    );

    let p = pod_where(
        &sim.client,
        "t=init-fails",
        "init container crash-looping",
        |p| {
            p.status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref())
                .is_some_and(|c| {
                    c[0].restart_count >= 1
                        && c[0]
                            .state
                            .as_ref()
                            .and_then(|s| s.waiting.as_ref())
                            .and_then(|w| w.reason.as_deref())
                            == Some("CrashLoopBackOff")
                })
        },
    )
    .await;
    let st = p.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let init_cond = st
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(
        (init_cond.status.as_str(), init_cond.reason.as_deref()),
        ("False", Some("ContainersNotInitialized"))
    );
    let app = &st.container_statuses.unwrap()[0];
    assert_eq!(
        app.state
            .as_ref()
            .unwrap()
            .waiting
            .as_ref()
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    pod_where(
        &sim.client,
        "t=init-ok",
        "Ready after its init container",
        ready,
    )
    .await;
}

async fn evicted_pods_fail_with_the_kubelets_reason_and_are_replaced(split: bool) {
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    apply(&sim.client, "evicted-deployment.yaml").await;
    let p = pod_where(&sim.client, "app=evicted", "Evicted", |p| {
        p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
    })
    .await;
    let st = p.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Failed"));
    assert!(
        st.message
            .unwrap()
            .starts_with("The node was low on resource: memory.")
    );
    let ev = events_of(&sim.client, &p).await;
    assert!(
        has_event(
            &ev,
            "Warning",
            "Evicted",
            "The node was low on resource: memory."
        ),
        "{ev:?}"
    );
    let evicted = p.metadata.name.clone().unwrap();
    pod_where(&sim.client, "app=evicted", "a replacement pod", |q| {
        q.metadata.name.as_deref() != Some(evicted.as_str()) && phase(q) != "Failed"
    })
    .await;
}

async fn jobs_run_to_completion_or_fail_at_their_backoff_limit(split: bool) {
    use k8s_openapi::api::batch::v1::Job;
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    let jobs: Api<Job> = Api::namespaced(sim.client.clone(), "default");
    let job = |name: &str, script: &str, backoff: i32| -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"backoffLimit": backoff, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "task", "image": "busybox:1.36", "command": ["sh", "-c", script]}]}}}
        }))
        .unwrap()
    };
    jobs.create(&PostParams::default(), &job("ok", "echo done", 6))
        .await
        .unwrap();
    jobs.create(&PostParams::default(), &job("broken", "echo no; exit 3", 1))
        .await
        .unwrap();
    let condition = async |name: &str| -> Option<(String, String)> {
        let j = jobs.get(name).await.ok()?;
        let c = j
            .status?
            .conditions?
            .into_iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
        Some((c.type_, c.reason.unwrap_or_default()))
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let (mut ok, mut broken) = (None, None);
    while (ok.is_none() || broken.is_none()) && Instant::now() < deadline {
        ok = condition("ok").await;
        broken = condition("broken").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ok, Some(("Complete".into(), "CompletionsReached".into())));
    assert_eq!(
        broken,
        Some(("Failed".into(), "BackoffLimitExceeded".into()))
    );
    let status = jobs.get("broken").await.unwrap().status.unwrap();
    assert_eq!(
        (status.failed, status.succeeded),
        (Some(2), None),
        "backoffLimit 1: two pods fail"
    );
    // A Job's pods carry its selector's labels and stay after it ends.
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let of_ok = pods
        .list(&ListParams::default().labels("job-name=ok"))
        .await
        .unwrap();
    assert_eq!(of_ok.items.len(), 1);
    assert_eq!(
        of_ok.items[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Succeeded")
    );
    assert!(
        of_ok.items[0]
            .metadata
            .finalizers
            .as_ref()
            .is_none_or(|f| f.is_empty()),
        "counted, released"
    );
    let refused = jobs
        .create(&PostParams::default(), &serde_json::from_value(serde_json::json!({
            "metadata": {"name": "always"},
            "spec": {"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "t", "image": "busybox:1.36"}]}}}
        })).unwrap())
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\""),
        "{refused}"
    );
}

async fn services_have_the_ready_pods_they_select_as_endpoints(split: bool) {
    use k8s_openapi::api::core::v1::Endpoints;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let sim = if split {
        start_split().await
    } else {
        start().await
    };
    let client = &sim.client;
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    for (name, path) in [("ready", "/"), ("unready", "/nope")] {
        create_pod(
            client,
            serde_json::json!({"metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"name": "http", "containerPort": 80}],
                                         "readinessProbe": {"httpGet": {"path": path, "port": 80}, "periodSeconds": 1}}]}}),
        )
        .await;
    }
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let deadline = Instant::now() + Duration::from_secs(30);
    let (ready, unready) = loop {
        let ep = endpoints.get_opt("web").await.unwrap();
        let subset = ep
            .and_then(|e| e.subsets)
            .and_then(|s| s.into_iter().next());
        let names = |a: Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| -> Vec<String> {
            a.unwrap_or_default()
                .into_iter()
                .filter_map(|a| a.target_ref.and_then(|r| r.name))
                .collect()
        };
        let (r, u) = subset
            .map(|s| (names(s.addresses), names(s.not_ready_addresses)))
            .unwrap_or_default();
        if r.len() == 1 && u.len() == 1 {
            break (r, u);
        }
        assert!(
            Instant::now() < deadline,
            "endpoints never settled: ready {r:?}, not ready {u:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (ready, unready),
        (vec!["ready".to_string()], vec!["unready".to_string()])
    );
    let ep = endpoints.get("web").await.unwrap();
    assert_eq!(
        ep.subsets.unwrap()[0].ports.as_ref().unwrap()[0].port,
        80,
        "the named targetPort, resolved"
    );
    // The EndpointSlice controller runs apart from the Endpoints one (as in Kubernetes): wait for its slice too.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let list = loop {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .unwrap();
        if list.items.first().is_some_and(|s| s.endpoints.len() == 2) || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].endpoints.len(), 2);
}

both_topologies!(
    bad_image_pod_and_deployment_back_off_pulling,
    the_first_restart_is_immediate_and_crash_loop_back_off_comes_after_it,
    crashing_containers_loop_with_back_off_and_keep_previous_logs,
    memory_above_the_limit_is_oom_killed_137_on_cgroup_v2_and_1_on_v1,
    unschedulable_pods_say_why,
    configuration_failures_name_what_is_missing,
    a_liveness_probe_on_the_wrong_port_restarts_the_container,
    a_readiness_probe_on_an_unserved_path_keeps_the_pod_running_and_not_ready,
    readiness_failures_leave_the_pod_running_but_not_ready,
    restart_policies_and_init_containers,
    evicted_pods_fail_with_the_kubelets_reason_and_are_replaced,
    jobs_run_to_completion_or_fail_at_their_backoff_limit,
    services_have_the_ready_pods_they_select_as_endpoints,
    between_restarts_a_current_kubelet_shows_the_last_exit_and_the_one_before
);
