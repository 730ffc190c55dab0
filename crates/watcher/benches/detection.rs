//! The watcher benchmark: prints numbers, asserts nothing. It starts the real binaries (release builds) on loopback:
//!
//! (a) detection latency: a pod's failing status is written to simcluster at T0; the latency is the time until
//!     reflexion-api has stored the report (the incident's `created_at`), over N failures (p50/p95/p99/max);
//! (b) storm: D Deployments of R replicas each fail together; reports stored, duplicates dropped by the watcher,
//!     and the time until the last report;
//! (c) memory: the watcher's RSS while it watches P pods, next to its RSS watching none;
//! (d) outage: the storm again with reflexion-api killed for BENCH_OUTAGE_SECS (60) in the middle.
//!
//! `cargo bench -p watcher --bench detection` (it builds simcluster and reflexion-api in release first).
//! Sizes: BENCH_FAILURES (1000), BENCH_STORM_DEPLOYMENTS (10), BENCH_STORM_REPLICAS (100), BENCH_PODS (10000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_watcher"))
        .parent()
        .unwrap()
        .join(name)
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

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Stack {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    api_url: String,
    api_port: u16,
    admin: u16,
    procs: Vec<Proc>,
    watcher_pid: u32,
}

fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Proc(
        cmd.env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}")),
    )
}

async fn wait_http(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
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

/// reflexion-api in suggest mode (it records every report and changes nothing), on a database in `dir`.
fn start_api(dir: &Path, kubeconfig: &Path, port: u16) -> Proc {
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"default_mode": "suggest"}"#).unwrap();
    spawn(
        dir,
        "reflexion-api",
        Command::new(bin("reflexion-api"))
            .env("KUBECONFIG", kubeconfig)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(format!("sqlite://{}", dir.join("r.db").display()))
            .arg("--policy-file")
            .arg(&policy),
    )
}

impl Stack {
    /// simcluster (with or without its kubelet and scheduler), reflexion-api in suggest mode (it records and changes
    /// nothing), and optionally the watcher.
    async fn start(kubelet: bool, watcher: bool) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("sim.kubeconfig");
        let (sim_port, api_port, admin) = (free_port(), free_port(), free_port());
        let mut procs = Vec::new();
        let mut sim = Command::new(bin("simcluster"));
        sim.arg("--listen")
            .arg(format!("127.0.0.1:{sim_port}"))
            .arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .arg("--time-scale")
            .arg("10");
        if !kubelet {
            sim.arg("--no-kubelet").arg("--no-scheduler");
        }
        procs.push(spawn(dir.path(), "simcluster", &mut sim));
        wait_http(&format!("http://127.0.0.1:{sim_port}/version")).await;
        let api_url = format!("http://127.0.0.1:{api_port}");
        procs.push(start_api(dir.path(), &kubeconfig, api_port));
        wait_http(&format!("{api_url}/health")).await;
        let mut stack = Stack {
            dir,
            kubeconfig,
            api_url,
            api_port,
            admin,
            procs,
            watcher_pid: 0,
        };
        if watcher {
            stack.start_watcher().await;
        }
        stack
    }

    async fn start_watcher(&mut self) {
        let p = spawn(
            self.dir.path(),
            "watcher",
            Command::new(bin("watcher"))
                .env("KUBECONFIG", &self.kubeconfig)
                .arg("--api-url")
                .arg(&self.api_url)
                .arg("--spool-dir")
                .arg(self.dir.path().join("spool"))
                .arg("--admin-listen")
                .arg(format!("127.0.0.1:{}", self.admin)),
        );
        self.watcher_pid = p.0.id();
        self.procs.push(p);
        wait_http(&format!("http://127.0.0.1:{}/health", self.admin)).await;
    }

    async fn kube(&self) -> kube::Client {
        let yaml = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    async fn incidents(&self) -> Vec<Value> {
        // The API pages at 1000; the benchmark's sizes stay within one page.
        let resp = reqwest::get(format!(
            "{}/api/v1/reflexion/incidents?limit=1000",
            self.api_url
        ))
        .await
        .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        let v: Value = resp.json().await.unwrap();
        v["incidents"].as_array().cloned().unwrap_or_default()
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// (current RSS, peak RSS) of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

fn bare_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"bench": "true"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:no-such-tag"}]}
    }))
    .unwrap()
}

async fn create_pods(pods: &Api<Pod>, names: &[String]) {
    stream::iter(names)
        .for_each_concurrent(16, |n| async move {
            pods.create(&PostParams::default(), &bare_pod(n))
                .await
                .unwrap();
        })
        .await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn latency() {
    let n = env_usize("BENCH_FAILURES", 1000).min(1000);
    let stack = Stack::start(false, true).await;
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let names: Vec<String> = (0..n).map(|i| format!("lat-{i:05}")).collect();
    create_pods(&pods, &names).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // One failure every 10 ms: each is measured on its own, not behind a queue of others.
    let mut t0: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    for name in &names {
        let status = json!({"status": {"phase": "Pending", "containerStatuses": [{
            "name": "app", "image": "nginx:no-such-tag", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ErrImagePull",
                "message": "Failed to pull image \"nginx:no-such-tag\": rpc error: code = NotFound desc = not found"}}}]}});
        t0.insert(name.clone(), chrono::Utc::now());
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let incidents = loop {
        let i = stack.incidents().await;
        if i.len() >= n || Instant::now() > deadline {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Per failure: status written -> watcher saw it (the report's detected_at) -> reflexion-api stored it.
    let mut total = Vec::new();
    let mut detect = Vec::new();
    for i in &incidents {
        let (Some(pod), Some(id)) = (i["pod_name"].as_str(), i["id"].as_str()) else {
            continue;
        };
        let Some(start) = t0.get(pod) else { continue };
        let detail: Value =
            reqwest::get(format!("{}/api/v1/reflexion/incidents/{id}", stack.api_url))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        let at = |v: &Value| {
            chrono::DateTime::parse_from_rfc3339(v.as_str()?)
                .ok()
                .map(|t| {
                    (t.with_timezone(&chrono::Utc) - *start)
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1000.0
                })
        };
        if let Some(stored) = at(&i["created_at"]) {
            total.push(stored);
        }
        if let Some(seen) = at(&detail["report"]["real_k8s_data"]["detected_at"]) {
            detect.push(seen);
        }
    }
    total.sort_by(f64::total_cmp);
    detect.sort_by(f64::total_cmp);
    let show = |v: &[f64]| {
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(v, 50.0),
            percentile(v, 95.0),
            percentile(v, 99.0),
            v.last().copied().unwrap_or(f64::NAN)
        )
    };
    println!(
        "(a) detection latency over {} of {n} failures, status written -> report stored: {}",
        total.len(),
        show(&total)
    );
    println!(
        "    of which status written -> watcher saw it: {}",
        show(&detect)
    );
}

async fn storm() {
    let (d, r) = (
        env_usize("BENCH_STORM_DEPLOYMENTS", 10),
        env_usize("BENCH_STORM_REPLICAS", 100),
    );
    let stack = Stack::start(true, true).await;
    let api: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let start = Instant::now();
    for i in 0..d {
        let name = format!("storm-{i}");
        let dep: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"replicas": r, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:no-such-tag"}]}}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &dep).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last_report = None;
    while Instant::now() < deadline {
        let n = stack.incidents().await.len();
        if n >= d && last_report.is_none() {
            last_report = Some(start.elapsed());
        }
        // Keep watching a while after the last expected report: a duplicate would show up here.
        if last_report.is_some_and(|t| start.elapsed() > t + Duration::from_secs(10)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let failing = pods
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| {
            serde_json::to_string(&p.status)
                .unwrap_or_default()
                .contains("ImagePull")
        })
        .count();
    println!(
        "(b) storm, {d} Deployments x {r} replicas: {failing} pods failing, {} incidents stored, {} reports sent by the watcher, {} pod updates dropped as duplicates, last report after {:.2} s",
        stack.incidents().await.len(),
        stack.metric("watcher_reports_sent_total").await,
        stack
            .metric("watcher_reports_dropped_duplicate_total")
            .await,
        last_report.map(|t| t.as_secs_f64()).unwrap_or(f64::NAN)
    );
}

/// A storm with reflexion-api down for a while in the middle: every failure must still arrive, once.
async fn outage() {
    let (d, r) = (
        env_usize("BENCH_STORM_DEPLOYMENTS", 10),
        env_usize("BENCH_STORM_REPLICAS", 100),
    );
    let down = Duration::from_secs(env_usize("BENCH_OUTAGE_SECS", 60) as u64);
    let mut stack = Stack::start(true, true).await;
    let api: Api<Deployment> = Api::namespaced(stack.kube().await, "default");
    let create = async |range: std::ops::Range<usize>| {
        for i in range {
            let name = format!("outage-{i}");
            let dep: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"replicas": r, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": {"app": name}},
                                      "spec": {"containers": [{"name": "app", "image": "nginx:no-such-tag"}]}}}
            }))
            .unwrap();
            api.create(&PostParams::default(), &dep).await.unwrap();
        }
    };
    create(0..d / 2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The API goes away (SIGKILL) while the first half fails and the second half is created.
    drop(stack.procs.remove(1));
    let killed = Instant::now();
    create(d / 2..d).await;
    tokio::time::sleep(down.saturating_sub(killed.elapsed())).await;
    let spooled = stack.metric("watcher_reports_spooled").await;
    stack.procs.push(start_api(
        stack.dir.path(),
        &stack.kubeconfig,
        stack.api_port,
    ));
    wait_http(&format!("{}/health", stack.api_url)).await;
    let back = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut all_in = None;
    while Instant::now() < deadline {
        if stack.incidents().await.len() >= d && all_in.is_none() {
            all_in = Some(back.elapsed());
        }
        if all_in.is_some_and(|t| back.elapsed() > t + Duration::from_secs(10)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "(d) storm with reflexion-api down for {}s: {spooled} reports waiting in the spool during the outage; {} incidents stored for {d} failing Deployments, {} reports sent, all in {:.2} s after the API came back",
        down.as_secs(),
        stack.incidents().await.len(),
        stack.metric("watcher_reports_sent_total").await,
        all_in.map(|t| t.as_secs_f64()).unwrap_or(f64::NAN)
    );
}

async fn memory() {
    let p = env_usize("BENCH_PODS", 10_000);
    let mut stack = Stack::start(false, false).await;
    stack.start_watcher().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = rss_mib(stack.watcher_pid);
    let pods: Api<Pod> = Api::namespaced(stack.kube().await, "default");
    let names: Vec<String> = (0..p).map(|i| format!("mem-{i:05}")).collect();
    let created = Instant::now();
    create_pods(&pods, &names).await;
    let create_secs = created.elapsed().as_secs_f64();
    // Restart the watcher so it lists all pods at once (the worst case), then let it settle.
    stack.procs.pop();
    stack.start_watcher().await;
    let mut peak = 0.0f64;
    let mut rss = 0.0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (now, hwm) = rss_mib(stack.watcher_pid);
        rss = now;
        peak = peak.max(hwm);
    }
    println!(
        "(c) watcher memory: {idle:.1} MiB RSS watching no pods; {rss:.1} MiB RSS (peak {peak:.1} MiB) watching {p} pods ({:.2}x); creating them took {create_secs:.1} s",
        rss / idle.max(0.1)
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument picks one part.
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "simcluster",
            "-p",
            "reflexion-api",
            "--bins",
        ])
        .status()
        .expect("cargo build");
    assert!(
        status.success(),
        "building simcluster and reflexion-api failed"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = |part: &str| only.as_deref().is_none_or(|o| part.contains(o));
    rt.block_on(async {
        if run("latency") {
            latency().await;
        }
        if run("storm") {
            storm().await;
        }
        if run("outage") {
            outage().await;
        }
        if run("memory") {
            memory().await;
        }
    });
}
