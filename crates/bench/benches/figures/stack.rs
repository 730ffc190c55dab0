//! The real binaries on loopback: simcluster (with or without its kubelet and scheduler), reflexion-api (in
//! `suggest` mode unless told otherwise: it records every report and changes nothing), and the watcher.

use serde_json::Value;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A size: `BENCH_SMALL=1` (CI's smoke run) takes `small`, else the environment variable or `full`.
pub fn size(name: &str, full: usize, small: usize) -> usize {
    if std::env::var("BENCH_SMALL").is_ok_and(|v| v == "1") {
        return env_usize(name, small);
    }
    env_usize(name, full)
}

/// Where the binaries are: next to this bench's `deps/` directory, in the profile it was built with.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join(name)
}

pub fn free_port() -> u16 {
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

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(dir: &Path, name: &str, cmd: &mut Command) -> Proc {
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

pub async fn wait_http(url: &str) {
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

/// (current RSS, peak RSS) of a process, in MiB.
pub fn rss_mib(pid: u32) -> (f64, f64) {
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

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Which policy reflexion-api runs with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Record and propose, never act.
    Suggest,
    /// The shipped default policy: low-risk fixes run, high-risk ones wait for approval.
    Default,
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub api_url: String,
    pub api_port: u16,
    pub admin: u16,
    pub procs: Vec<Proc>,
    pub watcher_pid: u32,
    pub api_pid: u32,
    mode: Mode,
    /// The API's store; None is SQLite in the stack's directory.
    database_url: Option<String>,
}

impl Stack {
    pub async fn start(kubelet: bool, watcher: bool, mode: Mode) -> Stack {
        Self::start_on(kubelet, watcher, mode, None).await
    }

    /// The same, with the API on the store at `database_url` (None: SQLite in the stack's directory).
    pub async fn start_on(
        kubelet: bool,
        watcher: bool,
        mode: Mode,
        database_url: Option<String>,
    ) -> Stack {
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
        let mut stack = Stack {
            api_url: format!("http://127.0.0.1:{api_port}"),
            dir,
            kubeconfig,
            api_port,
            admin,
            procs,
            watcher_pid: 0,
            api_pid: 0,
            mode,
            database_url,
        };
        stack.start_api();
        wait_http(&format!("{}/health", stack.api_url)).await;
        if watcher {
            stack.start_watcher().await;
        }
        stack
    }

    /// reflexion-api on a database in the stack's directory (kept across restarts).
    pub fn start_api(&mut self) {
        let mut cmd = self.api_command(self.api_port);
        let p = spawn(self.dir.path(), "reflexion-api", &mut cmd);
        self.api_pid = p.0.id();
        self.procs.insert(1.min(self.procs.len()), p);
    }

    /// Another reflexion-api process on the same store, named `replica`; its URL once it answers.
    pub async fn start_replica(&mut self, replica: &str) -> String {
        let port = free_port();
        let mut cmd = self.api_command(port);
        cmd.arg("--replica-id").arg(replica);
        let p = spawn(self.dir.path(), replica, &mut cmd);
        self.procs.push(p);
        let url = format!("http://127.0.0.1:{port}");
        wait_http(&format!("{url}/health")).await;
        url
    }

    fn api_command(&self, port: u16) -> Command {
        let mut cmd = Command::new(bin("reflexion-api"));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--database-url")
            .arg(
                self.database_url.clone().unwrap_or_else(|| {
                    format!("sqlite://{}", self.dir.path().join("r.db").display())
                }),
            )
            .arg("--registry-url")
            .arg(self.sim_url());
        match self.mode {
            Mode::Suggest => {
                let policy = self.dir.path().join("policy.json");
                std::fs::write(&policy, r#"{"default_mode": "suggest"}"#).unwrap();
                cmd.arg("--policy-file").arg(&policy);
            }
            // A short window: the recovery figures report the window apart from the product's own time.
            Mode::Default => {
                cmd.arg("--verify-window-secs").arg("5");
            }
        }
        cmd
    }

    pub fn sim_url(&self) -> String {
        let yaml = std::fs::read_to_string(&self.kubeconfig).unwrap_or_default();
        yaml.lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub async fn start_watcher(&mut self) {
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

    pub async fn kube(&self) -> kube::Client {
        let yaml = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        // With TCP_NODELAY, as the kubelet's (Go) client writes statuses.
        reflexion_k8s::client::client(config).unwrap()
    }

    pub async fn incidents(&self) -> Vec<Value> {
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

    pub async fn incident(&self, id: &str) -> Value {
        reqwest::get(format!("{}/api/v1/reflexion/incidents/{id}", self.api_url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metric(&self, name: &str) -> f64 {
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
