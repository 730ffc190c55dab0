//! The watcher's promises, with the real binaries on loopback: a report survives an API outage and a watcher crash
//! (the on-disk spool), a failure is reported once, and of two replicas only the Lease holder reports — until it
//! dies and the other takes over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_BIN_EXE_watcher")).parent().unwrap();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    // Tests run in parallel threads: the kernel may hand the same just-released port to two of them, so this
    // process never hands out a port twice.
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}

/// A child process killed (SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("----- {} -----", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

struct World {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    api_port: u16,
    runs: usize,
}

impl World {
    fn spawn(&mut self, name: &str, cmd: &mut Command) -> Proc {
        self.runs += 1;
        let log = self.dir.path().join(format!("{name}-{}.log", self.runs));
        let f = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc {
            name: name.into(),
            child,
            log,
        }
    }

    /// simcluster with its built-in kubelet, or (`split`) a control plane and a `simcluster node` in another
    /// process, as a real cluster has them.
    async fn start(split: bool) -> (World, Vec<Proc>) {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("sim.kubeconfig");
        let sim_port = free_port();
        let mut w = World {
            kubeconfig: kubeconfig.clone(),
            api_port: free_port(),
            dir,
            runs: 0,
        };
        let sim = w.spawn(
            "simcluster",
            Command::new(bin("simcluster"))
                .arg("--listen")
                .arg(format!("127.0.0.1:{sim_port}"))
                .arg("--kubeconfig-out")
                .arg(&kubeconfig)
                .arg("--time-scale")
                .arg("10")
                .args(if split { &["--no-kubelet"][..] } else { &[] }),
        );
        wait_http(&format!("http://127.0.0.1:{sim_port}/version")).await;
        let mut procs = vec![sim];
        if split {
            procs.push(
                w.spawn(
                    "simcluster-node",
                    Command::new(bin("simcluster"))
                        .args([
                            "node",
                            "--node-name",
                            "sim-node-1",
                            "--time-scale",
                            "10",
                            "--kubeconfig",
                        ])
                        .arg(&kubeconfig),
                ),
            );
            let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(w.kube().await);
            eventually(
                "the node Ready and untainted",
                Duration::from_secs(30),
                async || {
                    let n = nodes.get_opt("sim-node-1").await.ok()??;
                    let ready = n
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    (ready && n.spec?.taints.is_none_or(|t| t.is_empty())).then_some(())
                },
            )
            .await;
        }
        (w, procs)
    }

    fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// reflexion-api in suggest mode: it records every report and changes nothing. The first start moves to another
    /// port if the picked one was taken before the API could bind it; restarts reuse the port.
    async fn api(&mut self) -> Proc {
        self.api_with(&[]).await
    }

    /// reflexion-api with more flags.
    async fn api_with(&mut self, extra: &[&str]) -> Proc {
        let policy = self.dir.path().join("policy.json");
        std::fs::write(&policy, r#"{"default_mode": "suggest"}"#).unwrap();
        let db = self.dir.path().join("reflexion.db");
        let first = !db.exists();
        for _ in 0..5 {
            let kubeconfig = self.kubeconfig.clone();
            let mut p = self.spawn(
                "reflexion-api",
                Command::new(bin("reflexion-api"))
                    .env("KUBECONFIG", kubeconfig)
                    .arg("--listen")
                    .arg(format!("127.0.0.1:{}", self.api_port))
                    .arg("--database-url")
                    .arg(format!("sqlite://{}", db.display()))
                    .arg("--policy-file")
                    .arg(&policy)
                    .args(extra),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if p.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if let Ok(r) = reqwest::get(format!("{}/health", self.api_url())).await
                    && r.text().await.unwrap_or_default().contains("\"database\"")
                {
                    return p;
                }
                assert!(Instant::now() < deadline, "reflexion-api did not come up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(first, "reflexion-api could not bind its port again");
            self.api_port = free_port();
        }
        panic!("reflexion-api could not bind a free port in 5 tries");
    }

    /// A watcher with its admin server on `admin`, its spool in `spool`, and more flags.
    fn watcher(&mut self, admin: u16, spool: &str, extra: &[&str]) -> Proc {
        let spool = self.dir.path().join(spool);
        let kubeconfig = self.kubeconfig.clone();
        let api = self.api_url();
        self.spawn(
            "watcher",
            Command::new(bin("watcher"))
                .env("KUBECONFIG", kubeconfig)
                .arg("--api-url")
                .arg(api)
                .arg("--spool-dir")
                .arg(spool)
                .arg("--admin-listen")
                .arg(format!("127.0.0.1:{admin}"))
                .args(extra),
        )
    }

    async fn kube(&self) -> kube::Client {
        let yaml = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Deployments whose pods cannot pull their image: one failure each, however many replicas.
    async fn failing_deployments(&self, names: &[&str], replicas: i32) {
        let api: Api<Deployment> = Api::namespaced(self.kube().await, "default");
        for name in names {
            let d: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "app", "image": "nginx:no-such-tag"}]}}}
            }))
            .unwrap();
            api.create(&PostParams::default(), &d).await.unwrap();
        }
    }

    async fn incidents(&self) -> Vec<Value> {
        let v: Value = reqwest::get(format!(
            "{}/api/v1/reflexion/incidents?limit=1000",
            self.api_url()
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        v["incidents"].as_array().cloned().unwrap_or_default()
    }
}

async fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// One metric of a watcher's /metrics (0 when it cannot be read).
async fn metric(admin: u16, name: &str) -> f64 {
    let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{admin}/metrics")).await else {
        return 0.0;
    };
    let text = resp.text().await.unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn eventually<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Distinct workloads among the incidents.
fn workloads(incidents: &[Value]) -> Vec<String> {
    let mut w: Vec<String> = incidents
        .iter()
        .map(|i| {
            i["workload"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    w.sort();
    w
}

async fn reports_survive_an_api_outage_and_a_watcher_crash_and_arrive_once(split: bool) {
    let (mut w, _sim) = World::start(split).await;
    let mut api = w.api().await;
    api.kill();
    let admin = free_port();
    let mut watcher = w.watcher(admin, "spool", &[]);
    wait_http(&format!("http://127.0.0.1:{admin}/health")).await;
    let names = ["a", "b", "c", "d", "e"];
    w.failing_deployments(&names, 3).await;
    // The API is down: each failure is detected once and waits on disk.
    eventually("5 reports spooled", Duration::from_secs(60), async || {
        (metric(admin, "watcher_reports_spooled").await == 5.0).then_some(())
    })
    .await;
    assert_eq!(metric(admin, "watcher_failures_detected_total").await, 5.0);
    assert!(
        metric(admin, "watcher_reports_dropped_duplicate_total").await > 0.0,
        "3 pods and many updates per failure"
    );
    let spooled = std::fs::read_dir(w.dir.path().join("spool"))
        .unwrap()
        .count();
    assert_eq!(spooled, 5);
    // The watcher crashes (SIGKILL: no chance to flush), restarts, and the API comes back.
    watcher.kill();
    let _watcher = w.watcher(admin, "spool", &[]);
    let _api = w.api().await;
    eventually(
        "5 incidents and an empty spool",
        Duration::from_secs(60),
        async || {
            (w.incidents().await.len() >= 5
                && metric(admin, "watcher_reports_spooled").await == 0.0)
                .then_some(())
        },
    )
    .await;
    // Give any straggling duplicate the time to arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let incidents = w.incidents().await;
    assert_eq!(
        workloads(&incidents),
        names,
        "one incident per failure: {incidents:?}"
    );
    assert_eq!(
        std::fs::read_dir(w.dir.path().join("spool"))
            .unwrap()
            .count(),
        0
    );
}

async fn of_two_replicas_only_the_lease_holder_reports_and_the_other_takes_over(split: bool) {
    let (mut w, _sim) = World::start(split).await;
    let _api = w.api().await;
    let (admin_a, admin_b) = (free_port(), free_port());
    let flags = ["--leader-election", "--lease-duration-secs", "3"];
    let mut a = w.watcher(
        admin_a,
        "spool-a",
        &[&flags[..], &["--identity", "replica-a"]].concat(),
    );
    wait_http(&format!("http://127.0.0.1:{admin_a}/health")).await;
    eventually("replica a to lead", Duration::from_secs(20), async || {
        (metric(admin_a, "watcher_leader").await == 1.0).then_some(())
    })
    .await;
    let _b = w.watcher(
        admin_b,
        "spool-b",
        &[&flags[..], &["--identity", "replica-b"]].concat(),
    );
    wait_http(&format!("http://127.0.0.1:{admin_b}/health")).await;
    w.failing_deployments(&["one", "two", "three"], 2).await;
    eventually("3 incidents", Duration::from_secs(60), async || {
        (w.incidents().await.len() == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(admin_a, "watcher_reports_sent_total").await, 3.0);
    assert_eq!(
        metric(admin_b, "watcher_reports_sent_total").await,
        0.0,
        "the follower reports nothing"
    );
    assert_eq!(metric(admin_b, "watcher_leader").await, 0.0);
    // The leader dies; the follower takes the lease once it expires and reports the next failure.
    a.kill();
    eventually("replica b to lead", Duration::from_secs(30), async || {
        (metric(admin_b, "watcher_leader").await == 1.0).then_some(())
    })
    .await;
    w.failing_deployments(&["four"], 1).await;
    let incidents = eventually("the fourth incident", Duration::from_secs(60), async || {
        let i = w.incidents().await;
        (i.len() >= 4).then_some(i)
    })
    .await;
    assert_eq!(workloads(&incidents), ["four", "one", "three", "two"]);
}

async fn a_pod_that_dies_because_it_was_deleted_opens_no_incident(split: bool) {
    let (mut w, _sim) = World::start(split).await;
    let _api = w.api().await;
    let admin = free_port();
    let _watcher = w.watcher(admin, "spool", &[]);
    wait_http(&format!("http://127.0.0.1:{admin}/health")).await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(w.kube().await, "default");
    // PID 1 `sleep` ignores SIGTERM: deleted, it is killed at the end of its grace period (exit 137, phase
    // Failed) — a death that is no failure of the workload.
    let sleeper: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "sleeper"},
        "spec": {"terminationGracePeriodSeconds": 20,
                 "containers": [{"name": "sleeper", "image": "busybox:1.36", "command": ["sleep", "100000"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &sleeper).await.unwrap();
    eventually("sleeper running", Duration::from_secs(30), async || {
        let p = pods.get("sleeper").await.ok()?;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    pods.delete("sleeper", &Default::default()).await.unwrap();
    eventually("sleeper gone", Duration::from_secs(30), async || {
        pods.get_opt("sleeper").await.ok()?.is_none().then_some(())
    })
    .await;
    // A real failure meanwhile is reported, so the watcher was watching.
    w.failing_deployments(&["control"], 1).await;
    eventually(
        "the control incident",
        Duration::from_secs(30),
        async || (!w.incidents().await.is_empty()).then_some(()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(workloads(&w.incidents().await), ["control"]);
}

/// An answer that may change (a token being rotated: 401) keeps the report in the spool, retried, never dropped;
/// once the watcher has the right token, each arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_keeps_reports_in_the_spool_until_they_can_be_delivered() {
    let (mut w, _sim) = World::start(false).await;
    let _api = w.api_with(&["--api-token", "the-new-token"]).await;
    let admin = free_port();
    let mut watcher = w.watcher(admin, "spool", &["--api-token", "the-old-token"]);
    wait_http(&format!("http://127.0.0.1:{admin}/health")).await;
    w.failing_deployments(&["a", "b"], 1).await;
    eventually(
        "both reports refused, retried and kept",
        Duration::from_secs(60),
        async || {
            (metric(admin, "watcher_failures_detected_total").await == 2.0
                && metric(admin, "watcher_reports_retried_total").await >= 3.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        metric(admin, "watcher_reports_dropped_invalid_total").await,
        0.0
    );
    assert_eq!(metric(admin, "watcher_reports_spooled").await, 2.0);
    assert_eq!(
        std::fs::read_dir(w.dir.path().join("spool"))
            .unwrap()
            .count(),
        2
    );
    assert!(w.incidents().await.is_empty());
    watcher.kill();
    let _watcher = w.watcher(admin, "spool", &["--api-token", "the-new-token"]);
    eventually(
        "2 incidents and an empty spool",
        Duration::from_secs(60),
        async || {
            (w.incidents().await.len() == 2
                && metric(admin, "watcher_reports_spooled").await == 0.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(workloads(&w.incidents().await), ["a", "b"]);
}

/// Every test runs with simcluster's built-in kubelet and in the split topology (`simcluster node` in its own process).
macro_rules! both_topologies {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn builtin_kubelet() {
                super::$name(false).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn split_node() {
                super::$name(true).await
            }
        }
    )*};
}

both_topologies!(
    reports_survive_an_api_outage_and_a_watcher_crash_and_arrive_once,
    of_two_replicas_only_the_lease_holder_reports_and_the_other_takes_over,
    a_pod_that_dies_because_it_was_deleted_opens_no_incident
);
