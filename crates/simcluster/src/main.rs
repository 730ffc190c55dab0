use anyhow::Context;
use clap::Parser;
use simcluster::{Catalog, Clock, Cluster, apiserver, write_kubeconfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A Kubernetes-API-compatible simulated cluster: API server, scheduler, controllers and a kubelet with realistic
/// failures, served over plain HTTP for kubectl, kube-rs and kube-reflexion.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
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
    /// Image catalog (YAML: repositories -> tags). Defaults to a built-in catalog of common images.
    #[arg(long, env = "SIMCLUSTER_IMAGE_CATALOG")]
    image_catalog: Option<PathBuf>,
    /// Speed up every simulated delay (image pulls, back-offs) by this factor.
    #[arg(long, env = "SIMCLUSTER_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "SIMCLUSTER_LOG_JSON")]
    log_json: bool,
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
    let cluster = Cluster::new(catalog, Clock::new(args.time_scale));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    write_kubeconfig(&args.kubeconfig_out, addr)
        .with_context(|| format!("writing {}", args.kubeconfig_out.display()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    cluster.spawn_controllers(stop_rx);
    tracing::info!(%addr, kubeconfig = %args.kubeconfig_out.display(), time_scale = args.time_scale, "simcluster serving");
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
