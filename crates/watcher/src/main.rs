use anyhow::Context;
use clap::Parser;
use std::time::Duration;
use watcher::delivery;
use watcher::detect::Detector;

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
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Report the same failure of the same workload again only after this many seconds.
    #[arg(long, env = "REPORT_COOLDOWN_SECS", default_value_t = 300)]
    report_cooldown_secs: u64,
    /// Reports waiting for delivery, at most.
    #[arg(long, env = "REPORT_QUEUE", default_value_t = 10_000)]
    report_queue: usize,
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
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let http = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let (sender, delivery) = delivery::start(
        delivery::Config {
            api_url: args.api_url.clone(),
            token: args.api_token.clone(),
            queue: args.report_queue,
        },
        http,
    );
    tracing::info!(api = %args.api_url, namespace = args.namespace.as_deref().unwrap_or("<all>"), "watching pods");
    let detector = Detector::new(
        client,
        sender,
        Duration::from_secs(args.report_cooldown_secs),
    );
    detector.run(args.namespace, shutdown_signal()).await;
    tracing::info!("stopping: delivering queued reports (at most 5 s)");
    if tokio::time::timeout(Duration::from_secs(5), delivery)
        .await
        .is_err()
    {
        tracing::warn!("some queued reports were not delivered before shutdown");
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
