//! simcluster driven by kube-rs, the way the product drives it: the real binary on a free loopback port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use std::time::{Duration, Instant};

mod common;

use common::start;

fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": name, "image": image}]}})).unwrap()
}

async fn wait_for(pods: &Api<Pod>, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(p) = pods.get_opt(name).await.unwrap()
            && check(&p)
        {
            return p;
        }
        assert!(Instant::now() < deadline, "{name} never became {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_in_catalog_runs_and_unknown_tag_backs_off_like_a_kubelet() {
    let sim = start().await;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("good", "nginx:1.27"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("bad", "nginx:bu-tag-yok"))
        .await
        .unwrap();

    let good = wait_for(&pods, "good", "Ready", |p| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    assert_eq!(good.status.unwrap().phase.as_deref(), Some("Running"));

    let bad = wait_for(&pods, "bad", "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(bad.status.unwrap().phase.as_deref(), Some("Pending"));
    let events: Api<Event> = Api::namespaced(sim.client.clone(), "default");
    let uid = bad.metadata.uid.unwrap();
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .unwrap();
    let seen: Vec<(String, String)> = list
        .items
        .iter()
        .map(|e| (e.reason.clone().unwrap(), e.message.clone().unwrap()))
        .collect();
    let has = |reason: &str, msg: &str| seen.iter().any(|(r, m)| r == reason && m.contains(msg));
    assert!(
        has("Failed", "docker.io/library/nginx:bu-tag-yok: not found"),
        "{seen:?}"
    );
    assert!(has("Failed", "Error: ErrImagePull"), "{seen:?}");
    assert!(
        has("BackOff", "Back-off pulling image \"nginx:bu-tag-yok\""),
        "{seen:?}"
    );
    assert!(has("Failed", "Error: ImagePullBackOff"), "{seen:?}");
    assert!(
        has(
            "Scheduled",
            "Successfully assigned default/bad to sim-node-1"
        ),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_spec_is_immutable_except_images_and_watch_delivers_changes() {
    let sim = start().await;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    let stream = watcher(
        pods.clone(),
        watcher::Config::default().fields("metadata.name=p"),
    )
    .applied_objects();
    futures::pin_mut!(stream);
    pods.create(&PostParams::default(), &pod("p", "nginx:1.27"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("p"));

    let pp = PatchParams::default();
    let image = json!({"spec": {"containers": [{"name": "p", "image": "nginx:1.26"}]}});
    pods.patch("p", &pp, &Patch::Strategic(image))
        .await
        .unwrap();
    let resources = json!({"spec": {"containers": [{"name": "p", "resources": {"limits": {"memory": "256Mi"}}}]}});
    let err = pods
        .patch("p", &pp, &Patch::Strategic(resources))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
            assert!(
                s.message
                    .contains("pod updates may not change fields other than"),
                "{}",
                s.message
            );
        }
        other => panic!("expected a 422, got {other}"),
    }
    // dry run changes nothing
    let dry = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    pods.patch(
        "p",
        &dry,
        &Patch::Merge(json!({"spec": {"containers": [{"name": "p", "image": "nginx:1.25"}]}})),
    )
    .await
    .unwrap();
    let now = pods.get("p").await.unwrap();
    assert_eq!(
        now.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx:1.26")
    );

    // The OCI endpoint serves the catalog's tags.
    let tags: serde_json::Value =
        reqwest_get(&format!("{}/v2/library/nginx/tags/list", sim.url)).await;
    assert!(
        tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "1.27.3"),
        "{tags}"
    );
    // And what an image runs: its manifest names a config blob whose digest is the blob's sha256.
    let manifest = reqwest_get(&format!("{}/v2/library/busybox/manifests/1.36", sim.url)).await;
    let digest = manifest["config"]["digest"].as_str().unwrap();
    let raw = raw_get(&format!("{}/v2/library/busybox/blobs/{digest}", sim.url)).await;
    use sha2::Digest;
    assert_eq!(
        format!("sha256:{:x}", sha2::Sha256::digest(raw.as_bytes())),
        digest
    );
    let config: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["sh"]),
        "{config}"
    );
    let nginx = reqwest_get(&format!("{}/v2/library/nginx/manifests/1.27", sim.url)).await;
    let nginx = reqwest_get(&format!(
        "{}/v2/library/nginx/blobs/{}",
        sim.url,
        nginx["config"]["digest"].as_str().unwrap()
    ))
    .await;
    assert_eq!(
        nginx["config"]["Cmd"],
        serde_json::json!(["nginx", "-g", "daemon off;"])
    );
    for missing in ["library/busybox/manifests/9.99", "library/nope/manifests/1"] {
        let e = reqwest_get(&format!("{}/v2/{missing}", sim.url)).await;
        assert_eq!(e["errors"][0]["code"], "MANIFEST_UNKNOWN", "{missing}: {e}");
    }
    let e = reqwest_get(&format!(
        "{}/v2/library/busybox/blobs/sha256:{}",
        sim.url,
        "0".repeat(64)
    ))
    .await;
    assert_eq!(e["errors"][0]["code"], "BLOB_UNKNOWN", "{e}");
}

#[tokio::test]
async fn lists_come_in_pages_in_key_order_at_the_first_pages_resource_version() {
    let sim = start().await;
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    for i in 0..7 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("p-{i}"), "nginx:1.27"),
        )
        .await
        .unwrap();
    }
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    let rv = first.metadata.resource_version.clone().unwrap();
    // A change between pages: the next pages still report the first page's resourceVersion.
    pods.create(&PostParams::default(), &pod("q-late", "nginx:1.27"))
        .await
        .unwrap();
    let mut names: Vec<String> = first
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    let mut token = first.metadata.continue_;
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = pods
            .list(&ListParams::default().limit(3).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv.as_str()));
        names.extend(page.items.iter().map(|p| p.metadata.name.clone().unwrap()));
        token = page.metadata.continue_;
    }
    let mut want: Vec<String> = (0..7).map(|i| format!("p-{i}")).collect();
    want.push("q-late".into());
    assert_eq!(names, want, "key order, every pod once");
    let bad = pods
        .list(&ListParams::default().continue_token("garbage"))
        .await;
    assert!(
        matches!(&bad, Err(kube::Error::Api(e)) if e.code == 400),
        "{bad:?}"
    );
}

async fn reqwest_get(url: &str) -> serde_json::Value {
    serde_json::from_str(&raw_get(url).await).unwrap()
}

async fn raw_get(url: &str) -> String {
    // A bare HTTP/1.1 GET over tokio, to keep simcluster's test dependencies to the Kubernetes client.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf.split_once("\r\n\r\n").unwrap().1.to_string()
}

fn rs_state(list: &[k8s_openapi::api::apps::v1::ReplicaSet]) -> Vec<(String, i32, i32)> {
    let mut v: Vec<(String, i32, i32)> = list
        .iter()
        .map(|rs| {
            let image = rs
                .spec
                .as_ref()
                .unwrap()
                .template
                .as_ref()
                .unwrap()
                .spec
                .as_ref()
                .unwrap()
                .containers[0]
                .image
                .clone()
                .unwrap();
            (
                image,
                rs.spec.as_ref().unwrap().replicas.unwrap_or(0),
                rs.status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0),
            )
        })
        .collect();
    v.sort();
    v
}

async fn settled(
    replicasets: &Api<k8s_openapi::api::apps::v1::ReplicaSet>,
    want: &[(&str, i32, i32)],
) {
    let want: Vec<(String, i32, i32)> = want
        .iter()
        .map(|(i, r, a)| (i.to_string(), *r, *a))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = rs_state(
            &replicasets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items,
        );
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replica sets never reached {want:?}; last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_rollout_keeps_working_pods_and_undo_reuses_the_old_replicaset() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    let sim = start().await;
    let deployments: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(sim.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 4, "progressDeadlineSeconds": 10, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    settled(&replicasets, &[("nginx:1.26", 4, 4)]).await;

    // maxSurge 25% of 4 = 1, maxUnavailable 25% of 4 = 1: one old pod may go, one new may be added, and no more
    // while the new pods never become available.
    let bad = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:nope"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(bad))
        .await
        .unwrap();
    settled(&replicasets, &[("nginx:1.26", 3, 3), ("nginx:nope", 2, 0)]).await;
    let status = deployments.get("web").await.unwrap().status.unwrap();
    assert_eq!(
        (status.available_replicas, status.updated_replicas),
        (Some(3), Some(2))
    );
    // No progress for progressDeadlineSeconds: the rollout is reported failed, as `kubectl rollout status` sees it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deployments.get("web").await.unwrap();
        let progressing = d
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Progressing");
        if let Some(c) =
            progressing.filter(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
        {
            assert_eq!(c.status, "False");
            assert!(
                c.message
                    .unwrap_or_default()
                    .ends_with("has timed out progressing.")
            );
            break;
        }
        assert!(Instant::now() < deadline, "never ProgressDeadlineExceeded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What `kubectl rollout undo` sends: the old template back (kubectl includes creationTimestamp: null).
    let undo = json!({"spec": {"template": {"metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                                            "spec": {"containers": [{"name": "web", "image": "nginx:1.26"}]}}}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(undo))
        .await
        .unwrap();
    settled(&replicasets, &[("nginx:1.26", 4, 4), ("nginx:nope", 0, 0)]).await;
    let list = replicasets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    let revision = |image: &str| {
        list.iter()
            .find(|rs| {
                rs.spec
                    .as_ref()
                    .unwrap()
                    .template
                    .as_ref()
                    .unwrap()
                    .spec
                    .as_ref()
                    .unwrap()
                    .containers[0]
                    .image
                    .as_deref()
                    == Some(image)
            })
            .and_then(|rs| {
                rs.metadata
                    .annotations
                    .as_ref()?
                    .get("deployment.kubernetes.io/revision")
                    .cloned()
            })
    };
    assert_eq!(
        (
            revision("nginx:1.26").as_deref(),
            revision("nginx:nope").as_deref()
        ),
        (Some("3"), Some("2"))
    );
}

/// Poll an async condition until it holds (20 s at most).
macro_rules! wait_until {
    ($what:expr, $cond:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(20);
        while !$cond {
            assert!(Instant::now() < deadline, "never: {}", $what);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

async fn counts(
    rs: &Api<k8s_openapi::api::apps::v1::ReplicaSet>,
    pods: &Api<Pod>,
    app: &str,
) -> (usize, usize) {
    let lp = ListParams::default().labels(&format!("app={app}"));
    (
        rs.list(&lp).await.unwrap().items.len(),
        pods.list(&lp).await.unwrap().items.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_deletion_background_foreground_and_orphan() {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use kube::api::{DeleteParams, PropagationPolicy};
    let sim = start().await;
    let deployments: Api<Deployment> = Api::namespaced(sim.client.clone(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(sim.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(sim.client.clone(), "default");
    for name in ["fg", "bg", "orphan"] {
        let d: Deployment = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}))
        .unwrap();
        deployments
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
    }
    for name in ["fg", "bg", "orphan"] {
        wait_until!(
            format!("{name} has 2 pods"),
            counts(&replicasets, &pods, name).await == (1, 2)
        );
    }

    let fg = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        ..DeleteParams::default()
    };
    deployments.delete("fg", &fg).await.unwrap();
    // Foreground: the owner is still there, marked, until its dependents are gone.
    let d = deployments.get("fg").await.unwrap();
    assert!(d.metadata.deletion_timestamp.is_some());
    assert_eq!(
        d.metadata.finalizers,
        Some(vec!["foregroundDeletion".to_string()])
    );
    wait_until!(
        "fg and its dependents gone",
        deployments.get_opt("fg").await.unwrap().is_none()
            && counts(&replicasets, &pods, "fg").await == (0, 0)
    );

    deployments
        .delete("bg", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        deployments.get_opt("bg").await.unwrap().is_none(),
        "background: the owner goes at once"
    );
    wait_until!(
        "bg dependents collected",
        counts(&replicasets, &pods, "bg").await == (0, 0)
    );

    deployments
        .delete("orphan", &DeleteParams::orphan())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        counts(&replicasets, &pods, "orphan").await,
        (1, 2),
        "orphaned ReplicaSet and pods stay"
    );
    let rs = &replicasets
        .list(&ListParams::default().labels("app=orphan"))
        .await
        .unwrap()
        .items[0];
    assert!(
        rs.metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty())
    );
}
