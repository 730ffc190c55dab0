use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::Notify;
use watcher::delivery;
use watcher::detect::Detector;
use watcher::lease;
use watcher::metrics::Metrics;
use watcher::spool::Spool;

/// Watches pods for failures and reports each one once to reflexion-api.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Base URL of reflexion-api.
    #[arg(
        long,
        env = "REFLEXION_API_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    api_url: String,
    /// Bearer token for reflexion-api, if it requires one.
    #[arg(long, env = "REFLEXION_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// The name of the watched cluster, sent with every report: reflexion-api acts on the cluster of that name
    /// (its `--cluster`). Default: the kubeconfig's current context, or `in-cluster`.
    #[arg(long, env = "REFLEXION_CLUSTER_NAME")]
    cluster_name: Option<String>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Report the same failure of the same workload again only after this many seconds.
    #[arg(long, env = "REPORT_COOLDOWN_SECS", default_value_t = 300)]
    report_cooldown_secs: u64,
    /// Report a Service whose selector matches no pod after it has had no endpoint for this many seconds (a
    /// workload created after its Service is still starting).
    #[arg(long, env = "WATCHER_SERVICE_GRACE_SECS", default_value_t = 30)]
    service_grace_secs: u64,
    /// Directory of the on-disk spool: reports wait here until reflexion-api has stored them.
    #[arg(long, env = "WATCHER_SPOOL_DIR", default_value = "watcher-spool")]
    spool_dir: std::path::PathBuf,
    /// Reports the spool holds at most; beyond that new ones are dropped (and counted).
    #[arg(long, env = "WATCHER_SPOOL_MAX", default_value_t = 10_000)]
    spool_max: usize,
    /// Address of the admin server (/health, /metrics).
    #[arg(long, env = "WATCHER_ADMIN_LISTEN", default_value = "127.0.0.1:9090")]
    admin_listen: std::net::SocketAddr,
    /// Run for leadership on a Lease; only the leader reports (for running several replicas).
    #[arg(long, env = "WATCHER_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the Lease.
    #[arg(
        long,
        env = "WATCHER_LEASE_NAME",
        default_value = "kube-reflexion-watcher"
    )]
    lease_name: String,
    /// Seconds after its last renewal that another replica may take the Lease over.
    #[arg(long, env = "WATCHER_LEASE_DURATION_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    lease_duration_secs: u64,
    /// This replica's identity in the Lease (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "WATCHER_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("watcher: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let url = reqwest::Url::parse(&args.api_url)
        .with_context(|| format!("--api-url {:?} is not a URL", args.api_url))?;
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("--api-url must be http or https, got {}", url.scheme());
    }
    let cluster = args
        .cluster_name
        .clone()
        .unwrap_or_else(reflexion_k8s::kubeconfig::default_cluster_name);
    if !reflexion_core::names::is_cluster_name(&cluster) {
        anyhow::bail!(
            "--cluster-name {cluster:?} is not a cluster name (1-253 ASCII letters, digits and -._:/@)"
        );
    }
    let client = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let client = reflexion_k8s::client::client(client).context("building the Kubernetes client")?;
    let http = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let spool = Arc::new(
        Spool::open(&args.spool_dir, args.spool_max)
            .with_context(|| format!("opening the spool {}", args.spool_dir.display()))?,
    );
    let metrics = Arc::new(Metrics::default());
    let admin = tokio::net::TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("--admin-listen {}", args.admin_listen))?;
    tracing::info!(addr = %admin.local_addr()?, "admin server (/health, /metrics)");
    let metrics_for_admin = metrics.clone();
    tokio::spawn(
        async move { axum::serve(admin, watcher::admin::router(metrics_for_admin)).await },
    );
    let stop_delivery = Arc::new(Notify::new());
    let (sender, delivery) = delivery::start(
        delivery::Config {
            api_url: args.api_url.clone(),
            token: args.api_token.clone(),
        },
        http,
        spool.clone(),
        metrics.clone(),
        stop_delivery.clone(),
    );
    let pending = spool.pending().map(|p| p.len()).unwrap_or(0);
    tracing::info!(api = %args.api_url, %cluster, namespace = args.namespace.as_deref().unwrap_or("<all>"), spool = %args.spool_dir.display(), pending, "watching pods");
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let cooldown = Duration::from_secs(args.report_cooldown_secs);
    let service_grace = Duration::from_secs(args.service_grace_secs);
    if args.leader_election {
        let identity = args.identity.clone().unwrap_or_else(|| {
            format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "watcher".into()),
                std::process::id()
            )
        });
        let mut leading = lease::spawn(
            client.clone(),
            lease::LeaseConfig {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity: identity.clone(),
                duration: Duration::from_secs(args.lease_duration_secs),
                // Renew well within the duration, so one slow renewal does not lose the lease.
                renew: Duration::from_secs(args.lease_duration_secs).div_f64(3.0),
            },
        );
        tracing::info!(%identity, lease = %args.lease_name, "running for leadership");
        loop {
            // Follow until we lead (or are told to stop).
            tokio::select! {
                _ = &mut shutdown => break,
                r = leading.wait_for(|l| *l) => if r.is_err() { break },
            }
            metrics.leader.store(true, Ordering::Relaxed);
            let detector = Detector::new(client.clone(), sender.clone(), cooldown, metrics.clone())
                .cluster(&cluster)
                .service_grace(service_grace);
            let mut lost = leading.clone();
            let mut stopped = false;
            detector
                .run(args.namespace.clone(), async {
                    tokio::select! {
                        _ = &mut shutdown => stopped = true,
                        _ = lost.wait_for(|l| !*l) => {},
                    }
                })
                .await;
            metrics.leader.store(false, Ordering::Relaxed);
            if stopped {
                break;
            }
            tracing::warn!("lost leadership: no longer reporting");
        }
    } else {
        metrics.leader.store(true, Ordering::Relaxed);
        Detector::new(client, sender, cooldown, metrics.clone())
            .cluster(&cluster)
            .service_grace(service_grace)
            .run(args.namespace, &mut shutdown)
            .await;
    }
    tracing::info!(
        "stopping: delivering what is spooled (at most 5 s); the rest stays in the spool"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metrics.spooled.load(Ordering::Relaxed) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_delivery.notify_one();
    if tokio::time::timeout(Duration::from_secs(5), delivery)
        .await
        .is_err()
    {
        tracing::warn!("delivery did not stop in time");
    }
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
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
