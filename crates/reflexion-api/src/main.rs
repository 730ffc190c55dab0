use anyhow::Context;
use clap::Parser;
use reflexion_api::cluster::{Cluster, Fleet, Member, throttle};
use reflexion_api::config::{Args, Settings};
use reflexion_api::db::Db;
use reflexion_api::engine::Engine;
use reflexion_api::http::{self, AppState};
use reflexion_api::registry::Registry;
use std::sync::Arc;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("reflexion-api: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    // Every flag is checked before anything is opened, bound or logged as serving.
    let settings = Settings::try_from(&args)?;
    let traces = init_tracing(args.log_json, args.otlp_endpoint.as_deref()).await?;
    let db = Db::connect(&args.database_url).await.with_context(|| {
        format!(
            "opening database {}",
            reflexion_api::db::redacted_url(&args.database_url)
        )
    })?;
    let fleet = fleet(&settings).await?;
    let http_client = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let engine = Engine::new(
        db,
        fleet,
        Registry::new(http_client, settings.registry_url.clone()),
        settings.engine,
    );
    if let Some((name, _)) = engine.fleet().only() {
        let adopted = engine
            .db()
            .adopt_unnamed(name)
            .await
            .context("naming stored incidents' cluster")?;
        if adopted > 0 {
            tracing::info!(
                cluster = name,
                adopted,
                "incidents stored before clusters were named belong to this cluster"
            );
        }
    }
    let resumed = engine.resume().await.context("resuming incidents")?;
    // Notifications read what the engine stored, on their own tasks: a slow receiver never holds a fix back.
    let notifier = match settings.notify {
        Some(n) => {
            let targets: Vec<String> = n.targets.iter().map(|t| t.redacted()).collect();
            tracing::info!(?targets, "notifying");
            reflexion_notify::Notifier::new(engine.db().clone(), n)
                .context("building the notifications' HTTP client")?
                .spawn()
        }
        None => Vec::new(),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let clusters = engine.fleet().names().collect::<Vec<_>>().join(",");
    tracing::info!(addr = %listener.local_addr()?, database = %reflexion_api::db::redacted_url(&args.database_url), resumed, %clusters, auth = settings.api_token.is_some(),
        llm = args.llm_base_url.as_deref().unwrap_or(if args.openai_api_key.is_some() { "openai" } else { "none" }),
        "reflexion-api serving");
    let retiring = engine.clone();
    let state = AppState {
        engine,
        token: settings.api_token.map(Arc::new),
        auth_reads: settings.auth_reads,
    };
    // Answers are not held back by Nagle's algorithm waiting for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    for task in notifier {
        task.abort();
    }
    retiring.retire().await;
    tracing::info!("reflexion-api stopped");
    if let Some(p) = traces
        && let Err(e) = tokio::task::spawn_blocking(move || p.shutdown()).await
    {
        eprintln!("reflexion-api: flushing traces: {e}");
    }
    Ok(())
}

/// The clusters to serve, each with its own client (and its own rate limit: one cluster's storm does not slow the
/// others' API servers' share).
async fn fleet(settings: &Settings) -> anyhow::Result<Fleet> {
    let (qps, burst) = settings.kube_rate;
    let client = |config: kube::Config| {
        Ok::<_, anyhow::Error>(
            reflexion_k8s::client::builder(config)
                .context("building the Kubernetes client")?
                .with_layer(&throttle::Layer(throttle::Throttle::new(
                    qps,
                    burst,
                    settings.engine.kube_share.clone(),
                )))
                .build(),
        )
    };
    if settings.clusters.is_empty() {
        let config = kube::Config::infer()
            .await
            .context("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
        let name = reflexion_k8s::kubeconfig::default_cluster_name();
        return Ok(Fleet::single(
            &name,
            Cluster::new(client(config)?),
            settings.engine.policy.clone(),
        ));
    }
    let mut members = std::collections::BTreeMap::new();
    for spec in &settings.clusters {
        let config =
            reflexion_k8s::kubeconfig::cluster_config(&spec.name, spec.kubeconfig.as_deref())
                .await
                .with_context(|| match &spec.kubeconfig {
                    Some(p) => format!("--cluster {}: kubeconfig {}", spec.name, p.display()),
                    None => format!("--cluster {}: no such context in the kubeconfig", spec.name),
                })?;
        members.insert(
            spec.name.clone(),
            Member {
                cluster: Cluster::new(client(config)?).named(&spec.name),
                policy: Arc::new(spec.policy.clone()),
            },
        );
    }
    Fleet::new(members).context("no cluster to serve")
}

/// Logs to stderr (text or JSON lines) and, with an OTLP endpoint, spans to a collector. The returned provider
/// flushes on shutdown.
async fn init_tracing(
    json: bool,
    otlp: Option<&str>,
) -> anyhow::Result<Option<opentelemetry_sdk::trace::SdkTracerProvider>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let provider = match otlp {
        None => None,
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            reqwest::Url::parse(&url)
                .with_context(|| format!("--otlp-endpoint {endpoint:?} is not a URL"))?;
            // The exporter's blocking HTTP client must be built off the async runtime.
            let provider = tokio::task::spawn_blocking(move || {
                use opentelemetry_otlp::{SpanExporter, WithExportConfig};
                let exporter = SpanExporter::builder()
                    .with_http()
                    .with_endpoint(url)
                    .build()?;
                Ok::<_, anyhow::Error>(
                    opentelemetry_sdk::trace::SdkTracerProvider::builder()
                        .with_batch_exporter(exporter)
                        .with_resource(
                            opentelemetry_sdk::Resource::builder()
                                .with_service_name("reflexion-api")
                                .build(),
                        )
                        .build(),
                )
            })
            .await??;
            Some(provider)
        }
    };
    let otel = provider.as_ref().map(|p| {
        use opentelemetry::trace::TracerProvider;
        tracing_opentelemetry::layer().with_tracer(p.tracer("reflexion-api"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    Ok(provider)
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
