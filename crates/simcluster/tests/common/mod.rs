//! The real simcluster binary on a free loopback port, with a kube-rs client for it; stopped when dropped.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pods;

/// Every scenario runs on simcluster's built-in kubelet and in the split topology (`simcluster node` in its own
/// process, its statuses, events and logs reaching the control plane over HTTP).
#[allow(unused_macros)]
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

use kube::Client;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sim {
    children: Vec<Child>,
    pub dir: tempfile::TempDir,
    pub client: Client,
    pub url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Sim {
    pub fn kubeconfig(&self) -> std::path::PathBuf {
        self.dir.path().join("k.cfg")
    }
}

/// Start simcluster at `--time-scale 20`.
pub async fn start() -> Sim {
    start_with(&[]).await
}

/// Start simcluster at `--time-scale 20` with more flags (`--no-kubelet`, ...).
pub async fn start_with(extra: &[&str]) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let kubeconfig = dir.path().join("k.cfg");
    let child = Command::new(env!("CARGO_BIN_EXE_simcluster"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--time-scale",
            "20",
            "--kubeconfig-out",
        ])
        .arg(&kubeconfig)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !kubeconfig.exists() {
        assert!(
            Instant::now() < deadline,
            "simcluster did not write its kubeconfig"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Sim {
        children: vec![child],
        dir,
        client: Client::try_from(config).unwrap(),
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// The split topology a real cluster has: a control plane (`--no-kubelet`) and `simcluster node` in another process,
/// started once the node is Ready and untainted.
pub async fn start_split() -> Sim {
    start_split_with(&[]).await
}

/// The split topology with more flags for the node's kubelet (`--kubelet-timeline`, `--cgroup`).
pub async fn start_split_with(node_flags: &[&str]) -> Sim {
    let mut sim = start_with(&["--no-kubelet"]).await;
    let node = Command::new(env!("CARGO_BIN_EXE_simcluster"))
        .args(["node", "--node-name", "sim-node-1", "--time-scale", "20"])
        .args(node_flags)
        .arg("--kubeconfig")
        .arg(sim.kubeconfig())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sim.children.push(node);
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(sim.client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(n)) = nodes.get_opt("sim-node-1").await {
            let ready = n
                .status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && n.spec.and_then(|s| s.taints).is_none_or(|t| t.is_empty()) {
                return sim;
            }
        }
        assert!(Instant::now() < deadline, "the node did not become Ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port no other test of this process got: the kernel may hand the same just-released port to two tests
/// running in parallel.
fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if !taken.contains(&port) {
            taken.push(port);
            return port;
        }
    }
}
