//! `simcluster node` joins another API server (here a `simcluster --no-kubelet` control plane) as a fake node:
//! the control plane schedules onto it, and the fake kubelet's statuses and events appear there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn eventually<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_node_runs_pods_of_another_control_plane() {
    let cp = common::start_with(&["--no-kubelet"]).await;
    let kubeconfig = cp.kubeconfig();
    let client = cp.client.clone();
    let bin = env!("CARGO_BIN_EXE_simcluster");
    let mut procs = Procs(Vec::new());
    let nodes: Api<Node> = Api::all(client.clone());
    assert!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "--no-kubelet starts without a node"
    );

    let node = Command::new(bin)
        .args([
            "node",
            "--node-name",
            "fake-1",
            "--time-scale",
            "20",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(node);
    eventually("the fake node registers Ready", async || {
        let n = nodes.get_opt("fake-1").await.ok()??;
        n.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, image) in [("bad", "nginx:bu-tag-yok"), ("good", "nginx:1.27")] {
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": [{"name": name, "image": image}]}})).unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    let bad = eventually("bad in ImagePullBackOff on the control plane", async || {
        let p = pods.get("bad").await.ok()?;
        let reason = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .state
            .as_ref()?
            .waiting
            .as_ref()?
            .reason
            .clone()?;
        (reason == "ImagePullBackOff").then_some(p)
    })
    .await;
    assert_eq!(bad.spec.unwrap().node_name.as_deref(), Some("fake-1"));
    eventually("good Running and Ready", async || {
        let p = pods.get("good").await.ok()?;
        p.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let uid = bad.metadata.uid.unwrap();
    eventually(
        "the fake kubelet's events on the control plane",
        async || {
            let list = events
                .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
                .await
                .ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("Failed")
                        && e.message
                            .as_deref()
                            .is_some_and(|m| m.contains("bu-tag-yok: not found"))
                })
                .then_some(())
        },
    )
    .await;

    // Deleting a pod on a fake node: it is Terminating on the control plane until the fake kubelet has stopped it
    // and sent the final delete.
    pods.delete("good", &Default::default()).await.unwrap();
    eventually("good gone from the control plane", async || {
        pods.get_opt("good").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_node_is_tainted_until_ready_and_renews_its_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    let cp = common::start_with(&["--no-kubelet"]).await;
    let client = cp.client.clone();
    let mut procs = Procs(Vec::new());
    procs.0.push(
        Command::new(env!("CARGO_BIN_EXE_simcluster"))
            .args(["node", "--node-name", "fake-3", "--kubeconfig"])
            .arg(cp.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let taints = |n: &Node| -> Vec<String> {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .iter()
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect()
    };
    // Registered: the admission plugin's taint until the node lifecycle controller sees it Ready.
    let first = eventually("fake-3 registered", async || {
        nodes.get_opt("fake-3").await.ok()?
    })
    .await;
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    assert!(
        ready(&first)
            || taints(&first).contains(&"node.kubernetes.io/not-ready:NoSchedule".to_string()),
        "{:?}",
        taints(&first)
    );
    eventually("fake-3 Ready and untainted", async || {
        let n = nodes.get("fake-3").await.ok()?;
        (ready(&n) && taints(&n).is_empty()).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let renewed = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.renew_time.clone())
            .map(|t| t.0)
    };
    let lease = eventually("fake-3's Lease", async || {
        leases.get_opt("fake-3").await.ok()?
    })
    .await;
    let spec = lease.spec.clone().unwrap();
    assert_eq!(
        (spec.holder_identity.as_deref(), spec.lease_duration_seconds),
        (Some("fake-3"), Some(40))
    );
    assert_eq!(
        lease.metadata.owner_references.clone().unwrap()[0].kind,
        "Node",
        "the Lease goes with its Node"
    );
    let before = renewed(&lease);
    // A kubelet renews every 10 s (real seconds, whatever the time scale).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = renewed(&leases.get("fake-3").await.unwrap());
    assert!(after > before, "{before:?} -> {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_schedule_the_fake_node_binds_pods_an_api_server_without_scheduler_leaves_pending() {
    let cp = common::start_with(&["--no-kubelet", "--no-scheduler"]).await;
    let kubeconfig = cp.kubeconfig();
    let client = cp.client.clone();
    let bin = env!("CARGO_BIN_EXE_simcluster");
    let mut procs = Procs(Vec::new());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pods.get("web").await.unwrap().spec.unwrap().node_name,
        None,
        "no scheduler: the pod stays unbound"
    );

    let node = Command::new(bin)
        .args([
            "node",
            "--node-name",
            "fake-2",
            "--schedule",
            "--time-scale",
            "20",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    procs.0.push(node);
    let p = eventually("web bound to fake-2 and Ready", async || {
        let p = pods.get("web").await.ok()?;
        let ready = p
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(p)
    })
    .await;
    assert_eq!(p.spec.unwrap().node_name.as_deref(), Some("fake-2"));
}
