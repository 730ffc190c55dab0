//! simcluster: a Kubernetes-API-compatible simulated cluster for running and testing kube-reflexion without
//! Kubernetes. It serves the API over plain HTTP on loopback; a scheduler, deployment/replicaset/GC controllers
//! and a kubelet drive objects the way a small real cluster does, including the failures an SRE meets.

pub mod access;
pub mod admission;
pub mod apiserver;
pub mod apply;
pub mod catalog;
pub mod clock;
pub mod controllers;
pub mod cron;
pub mod defaults;
pub mod error;
pub mod events;
pub mod faults;
pub mod git;
pub mod kubelet;
pub mod kustomize;
pub mod network;
pub mod node;
pub mod paging;
pub mod patch;
pub mod podsecurity;
pub mod process;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod rbac;
pub mod registry;
pub mod resources;
pub mod rootfs;
pub mod scheduler;
pub mod selector;
pub mod shell;
pub mod store;
pub mod table;
pub mod tokens;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

pub use catalog::Catalog;
pub use clock::Clock;
pub use store::Store;

/// The name of the one simulated node.
pub const NODE_NAME: &str = "sim-node-1";

/// Everything a running simcluster shares between its API server and its controllers.
#[derive(Clone)]
pub struct Cluster {
    pub store: Arc<Store>,
    pub catalog: Arc<Catalog>,
    pub clock: Clock,
    pub logs: Arc<kubelet::Logs>,
    /// The node this process's kubelet plays.
    pub node_name: String,
    /// Whether the controller loop includes the scheduler (off to stand in for an API server without one).
    pub run_scheduler: bool,
    /// In fake-node mode, the API server this node belongs to: the kubelet's final delete of a pod goes there.
    pub upstream: Option<kube::Client>,
    /// Whether this process's kubelet runs the pods bound to `node_name` (its logs are here, not behind a node).
    pub local_kubelet: bool,
    /// Errors the API server is told to answer with (`/simcluster/faults`).
    pub faults: Arc<faults::Faults>,
    /// How often (simulated) Argo CD compares an Application with its source (`timeout.reconciliation`).
    pub argocd_reconcile: std::time::Duration,
    /// Signs and checks ServiceAccount tokens.
    pub tokens: Arc<tokens::Issuer>,
    /// Which kubelet (crash timeline) and node (cgroup version) the kubelet behaves as.
    pub kubelet: kubelet::Flavor,
}

impl Cluster {
    /// A cluster with the standard namespaces and one Ready node, `NODE_NAME`.
    pub fn new(catalog: Catalog, clock: Clock) -> Self {
        let cluster = Self::empty(catalog, clock, NODE_NAME);
        store::bootstrap(&cluster.store);
        store::register_node(&cluster.store, NODE_NAME);
        cluster
    }

    /// A control plane with the standard namespaces and no node (nodes join with `simcluster node`).
    pub fn control_plane(catalog: Catalog, clock: Clock) -> Self {
        let mut cluster = Self::empty(catalog, clock, NODE_NAME);
        cluster.local_kubelet = false;
        store::bootstrap(&cluster.store);
        cluster
    }

    /// Nothing at all: the local mirror of a fake node.
    pub fn empty(catalog: Catalog, clock: Clock, node_name: &str) -> Self {
        Self {
            store: Arc::new(Store::new()),
            catalog: Arc::new(catalog),
            clock,
            logs: Arc::new(kubelet::Logs::default()),
            node_name: node_name.to_string(),
            run_scheduler: true,
            upstream: None,
            local_kubelet: true,
            faults: Arc::default(),
            argocd_reconcile: std::time::Duration::from_secs(180),
            tokens: Arc::default(),
            kubelet: kubelet::Flavor::default(),
        }
    }

    /// Start the scheduler and controllers as background tasks; they stop when `shutdown` fires.
    pub fn spawn_controllers(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        tokio::spawn(controllers::gitops::run(self.clone(), shutdown.clone()));
        tokio::spawn(controllers::run(self.clone(), shutdown));
    }

    pub fn spawn_kubelet(&self, shutdown: tokio::sync::watch::Receiver<bool>) {
        tokio::spawn(kubelet::run(self.clone(), shutdown));
    }
}

/// A kubeconfig for a simcluster at `addr` (plain HTTP, no credentials: it only listens on loopback by default).
pub fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: simcluster\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: simcluster\n  context:\n    cluster: simcluster\n    user: simcluster\n    namespace: default\n\
         current-context: simcluster\nusers:\n- name: simcluster\n  user: {{}}\npreferences: {{}}\n"
    )
}

pub fn write_kubeconfig(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, kubeconfig(addr))?;
    std::fs::rename(tmp, path)
}
