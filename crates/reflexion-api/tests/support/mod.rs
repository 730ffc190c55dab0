//! Starts the real binaries (simcluster, reflexion-api, watcher) on free loopback ports with a temporary
//! database, and stops them when dropped. Their logs are printed if a test fails.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../reflexion-gitops/tests/support/github.rs"]
pub mod github;
pub mod gitops;
pub mod postgres;
#[path = "../../../reflexion-gitops/tests/support/repo.rs"]
pub mod repo;
pub mod storm;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn api_command(kubeconfig: &Path, port: u16, args: &[String]) -> Command {
    let mut c = Command::new(bin("reflexion-api"));
    c.env("KUBECONFIG", kubeconfig)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    c
}

/// A simcluster on `port` writing its kubeconfig to `kubeconfig`, at ten times real time.
fn simcluster_command(port: u16, kubeconfig: &Path) -> Command {
    let mut c = Command::new(bin("simcluster"));
    c.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--kubeconfig-out")
        .arg(kubeconfig)
        .arg("--time-scale")
        .arg("10");
    c
}

pub fn bin(name: &str) -> PathBuf {
    // Cargo builds every binary of the workspace for `cargo test --workspace`; they sit next to this package's.
    let dir = Path::new(env!("CARGO_BIN_EXE_reflexion-api"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
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

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub sim_url: String,
    pub api_url: String,
    pub kubeconfig: PathBuf,
    children: Vec<(String, Child)>,
    api_args: Vec<String>,
    /// With `Options::clusters`: each cluster's name and kubeconfig, the first being `kubeconfig`'s.
    pub clusters: Vec<(String, PathBuf)>,
    /// With `Options::replicas` > 1: every API process's name and URL, `api_url` being the first's.
    pub replicas: Vec<(String, String)>,
}

/// Where pods run: simcluster's built-in kubelet, or the split topology a real cluster has — a control plane
/// (`simcluster --no-kubelet`) and a node (`simcluster node`) in another process, reached over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Builtin,
    Split,
}

tokio::task_local! {
    /// The topology of the test running on this task (set by `e2e_test!`).
    pub static TOPOLOGY: Topology;
}

/// An end-to-end test, run twice: with the built-in kubelet, and in the split topology.
#[macro_export]
macro_rules! e2e_test {
    ($(#[$meta:meta])* async fn $name:ident() $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn builtin_kubelet() {
                support::TOPOLOGY.scope(support::Topology::Builtin, async $body).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn split_node() {
                support::TOPOLOGY.scope(support::Topology::Split, async $body).await
            }
        }
    };
}

/// A Deployment `web` whose image tag does not exist (`nginx:1.27.O`), for `Stack::create_deployment`.
#[allow(dead_code)]
pub const BAD_TAG_WEB: &str = "metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27.O}]}";

pub struct Options {
    pub watcher: bool,
    pub verify_window_secs: f64,
    /// A policy file's JSON, if any.
    pub policy: Option<&'static str>,
    /// More reflexion-api flags.
    pub api_args: &'static [&'static str],
    /// More reflexion-api flags, built at run time (a stub server's URL).
    pub extra_args: Vec<String>,
    /// The per-workload cooldown; 0 (off) unless a test is about it, since many tests fix one workload twice.
    pub workload_cooldown_secs: f64,
    /// Several clusters by name: one simcluster and one watcher (`--cluster-name`) each, one API serving them all
    /// (`--cluster NAME=KUBECONFIG`). Empty: one cluster, named by neither.
    pub clusters: &'static [&'static str],
    /// The API's store: None is a SQLite file in the stack's directory.
    pub database_url: Option<String>,
    /// API processes on the one store (`replica-1`, `replica-2`, ...); the watcher of the i-th cluster reports to
    /// the (i mod replicas)-th.
    pub replicas: usize,
    /// More simcluster flags.
    pub sim_args: &'static [&'static str],
    /// Flags of the kubelet, wherever it runs (`--kubelet-timeline`, `--cgroup`): simcluster's own, or the split
    /// topology's node.
    pub kubelet_args: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            watcher: true,
            verify_window_secs: 2.0,
            policy: None,
            api_args: &[],
            workload_cooldown_secs: 0.0,
            extra_args: Vec::new(),
            clusters: &[],
            database_url: None,
            replicas: 1,
            sim_args: &[],
            kubelet_args: Vec::new(),
        }
    }
}

impl Stack {
    pub async fn start(opts: Options) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("simcluster.kubeconfig");
        let mut stack = Stack {
            sim_url: String::new(),
            api_url: String::new(),
            kubeconfig: kubeconfig.clone(),
            children: Vec::new(),
            api_args: Vec::new(),
            clusters: Vec::new(),
            replicas: Vec::new(),
            dir,
        };
        let split = TOPOLOGY.try_with(|t| *t) == Ok(Topology::Split);
        let sim_port = stack
            .start_server("simcluster", "/version", "gitVersion", |port| {
                let mut c = simcluster_command(port, &kubeconfig);
                if split {
                    c.arg("--no-kubelet");
                } else {
                    c.args(&opts.kubelet_args);
                }
                c.args(opts.sim_args);
                c
            })
            .await;
        stack.sim_url = format!("http://127.0.0.1:{sim_port}");
        if split {
            stack.spawn(
                "simcluster-node",
                Command::new(bin("simcluster"))
                    .args(["node", "--node-name", "sim-node-1", "--time-scale", "10"])
                    .args(&opts.kubelet_args)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig),
            );
            stack.wait_node_ready("sim-node-1").await;
        }
        for (i, name) in opts.clusters.iter().enumerate() {
            let path = if i == 0 {
                kubeconfig.clone()
            } else {
                let path = stack.dir.path().join(format!("{name}.kubeconfig"));
                let out = path.clone();
                stack
                    .start_server(
                        &format!("simcluster-{name}"),
                        "/version",
                        "gitVersion",
                        |port| simcluster_command(port, &out),
                    )
                    .await;
                path
            };
            stack.clusters.push((name.to_string(), path));
        }
        let policy = stack.dir.path().join("policy.json");
        std::fs::write(&policy, opts.policy.unwrap_or("{}")).expect("policy file");
        let db = stack.dir.path().join("reflexion.db");
        stack.api_args = [
            "--database-url".to_string(),
            opts.database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", db.display())),
            "--registry-url".into(),
            stack.sim_url.clone(),
            "--verify-window-secs".into(),
            opts.verify_window_secs.to_string(),
            "--verify-timeout-secs".into(),
            "40".into(),
            "--policy-file".into(),
            policy.display().to_string(),
            "--workload-cooldown-secs".into(),
            opts.workload_cooldown_secs.to_string(),
            "--gitops-workdir".into(),
            stack.dir.path().join("gitops").display().to_string(),
        ]
        .into_iter()
        .chain(opts.api_args.iter().map(|a| a.to_string()))
        .chain(opts.extra_args.iter().cloned())
        .chain(stack.clusters.iter().flat_map(|(name, path)| {
            [
                "--cluster".to_string(),
                format!("{name}={}", path.display()),
            ]
        }))
        .collect();
        let mut args = stack.api_args.clone();
        if opts.replicas > 1 {
            args.extend(["--replica-id".to_string(), "replica-1".to_string()]);
        }
        let api_port = stack
            .start_server("reflexion-api", "/health", "\"database\"", |port| {
                api_command(&kubeconfig, port, &args)
            })
            .await;
        stack.api_url = format!("http://127.0.0.1:{api_port}");
        if opts.replicas > 1 {
            stack
                .replicas
                .push(("reflexion-api".into(), stack.api_url.clone()));
            for i in 2..=opts.replicas {
                let mut args = stack.api_args.clone();
                args.extend(["--replica-id".to_string(), format!("replica-{i}")]);
                let name = format!("reflexion-api-{i}");
                let port = stack
                    .start_server(&name, "/health", "\"database\"", |port| {
                        api_command(&kubeconfig, port, &args)
                    })
                    .await;
                stack
                    .replicas
                    .push((name, format!("http://127.0.0.1:{port}")));
            }
        }
        if opts.watcher {
            // The API's token, when it has one, is the watcher's too.
            let token = opts
                .api_args
                .windows(2)
                .find(|w| w[0] == "--api-token")
                .map(|w| w[1]);
            let watched = match stack.clusters.is_empty() {
                true => vec![(None, kubeconfig.clone())],
                false => stack
                    .clusters
                    .iter()
                    .map(|(n, p)| (Some(n.clone()), p.clone()))
                    .collect(),
            };
            for (i, (name, config)) in watched.into_iter().enumerate() {
                let api_url = match stack.replicas.is_empty() {
                    true => stack.api_url.clone(),
                    false => stack.replicas[i % stack.replicas.len()].1.clone(),
                };
                let mut watcher = Command::new(bin("watcher"));
                if let Some(t) = token {
                    watcher.env("REFLEXION_API_TOKEN", t);
                }
                let label = name.as_deref().map(|n| format!("-{n}")).unwrap_or_default();
                if let Some(n) = &name {
                    watcher.arg("--cluster-name").arg(n);
                }
                stack.spawn(
                    &format!("watcher{label}"),
                    watcher
                        .env("KUBECONFIG", &config)
                        // A Service selecting no pod is reported after 3 s here, not 30.
                        .env("WATCHER_SERVICE_GRACE_SECS", "3")
                        .arg("--api-url")
                        .arg(&api_url)
                        .arg("--spool-dir")
                        .arg(stack.dir.path().join(format!("spool{label}")))
                        .arg("--admin-listen")
                        .arg("127.0.0.1:0"),
                );
            }
        }
        stack
    }

    /// Start a server on a port picked free; pick another if it could not bind it (another test's connection can
    /// take a free port before the server binds it) — until the server itself answers `probe` with `marker`.
    async fn start_server(
        &mut self,
        name: &str,
        probe: &str,
        marker: &str,
        mut build: impl FnMut(u16) -> Command,
    ) -> u16 {
        for _ in 0..5 {
            let port = free_port();
            self.spawn(name, &mut build(port));
            let url = format!("http://127.0.0.1:{port}{probe}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let exited = self
                    .children
                    .last_mut()
                    .is_some_and(|(_, c)| c.try_wait().ok().flatten().is_some());
                if exited {
                    self.children.pop();
                    break;
                }
                if let Ok(r) = reqwest::get(&url).await
                    && r.status().is_success()
                    && r.text().await.unwrap_or_default().contains(marker)
                {
                    return port;
                }
                assert!(Instant::now() < deadline, "{name} did not come up on {url}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("{name} could not bind a free port in 5 tries");
    }

    /// Wait until a node is Ready and carries no taint (the node lifecycle controller removed `not-ready`).
    async fn wait_node_ready(&self, node: &str) {
        let url = format!("{}/api/v1/nodes/{node}", self.sim_url);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && let Ok(n) = r.json::<serde_json::Value>().await
            {
                let ready = n["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if ready && n["spec"]["taints"].as_array().is_none_or(|t| t.is_empty()) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "node {node} did not become Ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL one API process of several, for good; reads go to the next one from now on.
    pub fn kill_replica(&mut self, name: &str) {
        self.end_replica(name, "-KILL");
    }

    /// SIGTERM one API process of several (it shuts down gracefully) and wait for it to exit.
    pub fn stop_replica(&mut self, name: &str) {
        self.end_replica(name, "-TERM");
    }

    fn end_replica(&mut self, name: &str, signal: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(i);
            let sent = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
            assert!(sent.is_ok_and(|s| s.success()), "kill {signal} {name}");
            let _ = child.wait();
        }
        self.replicas.retain(|(n, _)| n != name);
        self.api_url = self.replicas.first().expect("a replica left").1.clone();
    }

    /// SIGKILL reflexion-api (no chance to clean up), then start it again on the same port and database.
    pub async fn kill_and_restart_api(&mut self) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == "reflexion-api") {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
        let port: u16 = self
            .api_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("api port");
        let cmd = api_command(&self.kubeconfig, port, &self.api_args);
        self.spawn("reflexion-api", &mut { cmd });
        wait_http(&format!("{}/health", self.api_url)).await;
    }

    fn spawn(&mut self, name: &str, cmd: &mut Command) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file");
        let child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.children.push((name.to_string(), child));
    }

    /// Create a Deployment from a manifest (one of `k8s/scenarios`); its API handle in `default`.
    pub async fn create_deployment(
        &self,
        yaml: &str,
    ) -> kube::Api<k8s_openapi::api::apps::v1::Deployment> {
        let api = kube::Api::namespaced(self.kube().await, "default");
        let d: k8s_openapi::api::apps::v1::Deployment =
            serde_yaml::from_str(yaml).expect("a Deployment manifest");
        api.create(&kube::api::PostParams::default(), &d)
            .await
            .expect("create the Deployment");
        api
    }

    /// Create every object of a multi-document manifest (workloads, Services, claims, accounts and their RBAC) in
    /// `default`, in order.
    pub async fn create_all(&self, yaml: &str) {
        use k8s_openapi::api::apps::v1::Deployment;
        use k8s_openapi::api::core::v1::{
            ConfigMap, PersistentVolumeClaim, Pod, Service, ServiceAccount,
        };
        use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
        use serde::Deserialize;
        let client = self.kube().await;
        for doc in serde_yaml::Deserializer::from_str(yaml) {
            let v = serde_json::Value::deserialize(doc).expect("a YAML document");
            match v["kind"].as_str().unwrap_or_default() {
                "Deployment" => create::<Deployment>(&client, v).await,
                "Service" => create::<Service>(&client, v).await,
                "ConfigMap" => create::<ConfigMap>(&client, v).await,
                "Pod" => create::<Pod>(&client, v).await,
                "PersistentVolumeClaim" => create::<PersistentVolumeClaim>(&client, v).await,
                "ServiceAccount" => create::<ServiceAccount>(&client, v).await,
                "Role" => create::<Role>(&client, v).await,
                "RoleBinding" => create::<RoleBinding>(&client, v).await,
                other => panic!("create_all does not create {other}"),
            }
        }
    }

    /// Approve the incident's pending plan as an operator would.
    pub async fn approve(&self, incident: &serde_json::Value) {
        let id = incident["id"].as_str().expect("an incident id");
        let (status, body) = self
            .post(
                &format!("/api/v1/reflexion/incidents/{id}/approve"),
                serde_json::json!({"by": "sre"}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }

    pub async fn kube(&self) -> kube::Client {
        kube_client(&self.kubeconfig).await
    }

    /// A client of one of `Options::clusters`.
    pub async fn kube_of(&self, cluster: &str) -> kube::Client {
        let (_, path) = self
            .clusters
            .iter()
            .find(|(n, _)| n == cluster)
            .unwrap_or_else(|| panic!("no cluster {cluster}"));
        kube_client(path).await
    }
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let yaml = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let kc = kube::config::Kubeconfig::from_yaml(&yaml).expect("parse kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("kube config");
    kube::Client::try_from(config).expect("kube client")
}

impl Stack {
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let resp = reqwest::get(format!("{}{path}", self.api_url))
            .await
            .expect("GET");
        assert!(resp.status().is_success(), "GET {path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    /// POST a JSON body; (status, body).
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.api_url))
            .json(&body)
            .send()
            .await
            .expect("POST");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub async fn delete(&self, path: &str) -> serde_json::Value {
        let resp = reqwest::Client::new()
            .delete(format!("{}{path}", self.api_url))
            .send()
            .await
            .expect("DELETE");
        assert!(
            resp.status().is_success(),
            "DELETE {path}: {}",
            resp.status()
        );
        resp.json().await.expect("json")
    }

    /// Poll the API until `check` returns Some, or fail after `timeout` with the last value seen.
    pub async fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl AsyncFnMut() -> (Option<T>, String),
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let (found, last) = check().await;
            if let Some(v) = found {
                return v;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (name, _) in &self.children {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{name}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("----- {name} log (last 40 lines) -----");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

async fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(url).await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not come up within 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first container of a Deployment's pod template, as it is now.
pub async fn template_container(
    api: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
    name: &str,
) -> k8s_openapi::api::core::v1::Container {
    let d = api.get(name).await.expect("get the Deployment");
    d.spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].clone())
        .expect("a pod template with a container")
}

/// How long a test waits for the product to fix (or hand over) a scenario.
pub const FIX_TIMEOUT: Duration = Duration::from_secs(90);

/// The verbs of an incident's audit log, in order.
pub fn audit_verbs(detail: &serde_json::Value) -> Vec<String> {
    detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["verb"].as_str().unwrap().to_string())
        .collect()
}

/// The commands an incident's audit log records, in order.
pub fn audit_commands(detail: &serde_json::Value) -> Vec<&str> {
    detail["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["detail"]["command"].as_str())
        .collect()
}

pub fn is_ready(p: &k8s_openapi::api::core::v1::Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Wait until the single incident reaches a final state; return it in full.
pub async fn finished_incident(stack: &Stack) -> serde_json::Value {
    let summary = stack
        .eventually("the incident to finish", FIX_TIMEOUT, async || {
            let list = stack.get("/api/v1/reflexion/incidents").await;
            let done = list["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| {
                    ["resolved", "escalated", "failed", "dismissed"]
                        .contains(&i["state"].as_str().unwrap_or(""))
                })
                .cloned();
            (done, list.to_string())
        })
        .await;
    incident_detail(stack, &summary).await
}

/// Assert an incident was handed over with `signature` on the workload `(kind, name)`; its outcome.
pub fn escalated<'a>(
    detail: &'a serde_json::Value,
    signature: &str,
    workload: (&str, &str),
) -> &'a str {
    assert_eq!(detail["state"], "escalated", "{detail}");
    assert_eq!(detail["signature"], signature, "{detail}");
    assert_eq!(
        (
            detail["workload"]["kind"].as_str(),
            detail["workload"]["name"].as_str()
        ),
        (Some(workload.0), Some(workload.1)),
        "{detail}"
    );
    detail["outcome"].as_str().unwrap_or_default()
}

/// The name of one pod labelled `app=<app>` in `default`.
#[allow(dead_code)]
pub async fn a_pod_of(stack: &Stack, app: &str) -> String {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(stack.kube().await, "default");
    let list = pods
        .list(&kube::api::ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods");
    list.items
        .first()
        .and_then(|p| p.metadata.name.clone())
        .unwrap_or_else(|| panic!("no pod labelled app={app}"))
}

/// Wait until the single incident awaits approval; return it in full.
pub async fn awaiting_approval(stack: &Stack) -> serde_json::Value {
    let summary = stack
        .eventually("the incident to await approval", FIX_TIMEOUT, async || {
            let list = stack
                .get("/api/v1/reflexion/incidents?state=awaiting_approval")
                .await;
            (
                list["incidents"].as_array().unwrap().first().cloned(),
                list.to_string(),
            )
        })
        .await;
    incident_detail(stack, &summary).await
}

/// An incident in full (episodes, audit, LLM calls), from its summary.
pub async fn incident_detail(stack: &Stack, summary: &serde_json::Value) -> serde_json::Value {
    stack
        .get(&format!(
            "/api/v1/reflexion/incidents/{}",
            summary["id"].as_str().unwrap()
        ))
        .await
}

/// Create one namespaced object in `default`.
async fn create<K>(client: &kube::Client, v: serde_json::Value)
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let o: K = serde_json::from_value(v).expect("an object of its kind");
    kube::Api::<K>::namespaced(client.clone(), "default")
        .create(&kube::api::PostParams::default(), &o)
        .await
        .expect("create the object");
}
