use anyhow::Context;
use clap::{Parser, Subcommand};
use simcluster::{Catalog, Clock, Cluster, apiserver, node, write_kubeconfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A Kubernetes-API-compatible simulated cluster: API server, scheduler, controllers and a kubelet with realistic
/// failures, served over plain HTTP for kubectl, kube-rs and kube-reflexion.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to serve the Kubernetes API (and the OCI tag registry under /v2/) on.
    #[arg(long, env = "SIMCLUSTER_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Write a kubeconfig for this cluster here once it is listening.
    #[arg(
        long,
        env = "SIMCLUSTER_KUBECONFIG_OUT",
        default_value = "simcluster.kubeconfig"
    )]
    kubeconfig_out: PathBuf,
    /// Run only the control plane (API server, scheduler, controllers): no node until `simcluster node` joins.
    #[arg(long, env = "SIMCLUSTER_NO_KUBELET")]
    no_kubelet: bool,
    /// Run no scheduler either (pods stay unbound unless something else binds them, e.g. `simcluster node --schedule`).
    #[arg(long, env = "SIMCLUSTER_NO_SCHEDULER")]
    no_scheduler: bool,
    /// Image catalog (YAML: repositories -> tags and behaviour). Defaults to a built-in catalog of common images.
    #[arg(long, env = "SIMCLUSTER_IMAGE_CATALOG", global = true)]
    image_catalog: Option<PathBuf>,
    /// Speed up every simulated delay (image pulls, back-offs, probes) by this factor.
    #[arg(
        long,
        env = "SIMCLUSTER_TIME_SCALE",
        default_value_t = 1.0,
        global = true
    )]
    time_scale: f64,
    /// How often (simulated seconds) the Argo CD controller compares each Application with its source: Argo CD's
    /// `timeout.reconciliation`.
    #[arg(long, env = "SIMCLUSTER_ARGOCD_RECONCILE_SECS", default_value_t = 180)]
    argocd_reconcile_secs: u64,
    /// How crash-looping containers show between restarts: `current` (a v1.36 kubelet with containerd 2: the last
    /// exit, `Error`, until a periodic resync lands inside a back-off) or `classic` (`CrashLoopBackOff` from the
    /// first back-off on).
    #[arg(
        long,
        env = "SIMCLUSTER_KUBELET_TIMELINE",
        value_enum,
        default_value = "current",
        global = true
    )]
    kubelet_timeline: simcluster::kubelet::CrashTimeline,
    /// The node's cgroup version, which decides what an OOM kill shows: `v2` (exit 137) or `v1` (the container's
    /// PID 1 survives the kill of its largest process and exits 1). Both say `OOMKilled`.
    #[arg(
        long,
        env = "SIMCLUSTER_CGROUP",
        value_enum,
        default_value = "v2",
        global = true
    )]
    cgroup: simcluster::kubelet::Cgroup,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SIMCLUSTER_LOG_JSON", global = true)]
    log_json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Join any API server (a real control plane, or `simcluster --no-kubelet`) as a fake node whose kubelet
    /// produces simcluster's failures there.
    Node {
        /// Kubeconfig of the API server to join.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// Name of the Node to register.
        #[arg(long, env = "SIMCLUSTER_NODE_NAME", default_value = "simcluster-node")]
        node_name: String,
        /// Also bind unscheduled pods to this node, for an API server that runs no scheduler.
        #[arg(long, env = "SIMCLUSTER_NODE_SCHEDULE")]
        schedule: bool,
        /// Where the node's kubelet API (HTTPS, self-signed: container logs for `kubectl logs`) listens; port 0
        /// picks a free one, which the node reports.
        #[arg(long, env = "SIMCLUSTER_KUBELET_LISTEN", default_value = "127.0.0.1:0")]
        kubelet_listen: SocketAddr,
        /// The address the node reports as its InternalIP, where the control plane reaches its kubelet API
        /// (default: the --kubelet-listen address, or 127.0.0.1 when that is unspecified).
        #[arg(long, env = "SIMCLUSTER_NODE_ADDRESS")]
        address: Option<std::net::IpAddr>,
    },
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("simcluster: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    if !(args.time_scale.is_finite() && args.time_scale > 0.0) {
        anyhow::bail!(
            "--time-scale must be a positive number, got {}",
            args.time_scale
        );
    }
    let catalog = match &args.image_catalog {
        Some(p) => Catalog::load(p)?,
        None => Catalog::builtin(),
    };
    let clock = Clock::new(args.time_scale);
    let flavor = simcluster::kubelet::Flavor {
        crash: args.kubelet_timeline,
        cgroup: args.cgroup,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if let Some(Command::Node {
        kubeconfig,
        node_name,
        schedule,
        kubelet_listen,
        address,
    }) = &args.command
    {
        let listener = tokio::net::TcpListener::bind(kubelet_listen)
            .await
            .with_context(|| format!("listening on {kubelet_listen} for the kubelet API"))?;
        let ip = address.unwrap_or(if kubelet_listen.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            kubelet_listen.ip()
        });
        let kubelet_api = node::KubeletApi {
            listener,
            address: ip.to_string(),
        };
        let kc = kube::config::Kubeconfig::read_from(kubeconfig)
            .with_context(|| format!("reading {}", kubeconfig.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .context("loading the kubeconfig")?;
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        let mut cluster = Cluster::empty(catalog, clock, node_name);
        cluster.kubelet = flavor;
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        node::run(client, cluster, *schedule, kubelet_api, stop_rx).await?;
        tracing::info!("node stopped");
        return Ok(());
    }
    let mut cluster = if args.no_kubelet {
        Cluster::control_plane(catalog, clock)
    } else {
        Cluster::new(catalog, clock)
    };
    cluster.run_scheduler = !args.no_scheduler;
    cluster.kubelet = flavor;
    cluster.argocd_reconcile = std::time::Duration::from_secs(args.argocd_reconcile_secs.max(1));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    write_kubeconfig(&args.kubeconfig_out, addr)
        .with_context(|| format!("writing {}", args.kubeconfig_out.display()))?;
    cluster.spawn_controllers(stop_rx.clone());
    if !args.no_kubelet {
        cluster.spawn_kubelet(stop_rx);
    }
    tracing::info!(%addr, kubeconfig = %args.kubeconfig_out.display(), time_scale = args.time_scale, kubelet = !args.no_kubelet, timeline = ?args.kubelet_timeline, cgroup = ?args.cgroup, "simcluster serving");
    // As Go's net/http does for the real API server: a watch event or a response is not held back by Nagle's
    // algorithm waiting for the client's delayed ACK (every other event of a stream arrived up to 40 ms late).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, apiserver::router(cluster))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
        .await?;
    tracing::info!("simcluster stopped");
    Ok(())
}

fn init_tracing(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init()
    } else {
        builder.init()
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
