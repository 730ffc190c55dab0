use anyhow::Context;
use clap::Parser;
use reflexion_api::cluster::Cluster;
use reflexion_api::db::Db;
use reflexion_api::engine::{Engine, EngineConfig, PlannerMode};
use reflexion_api::http::{self, AppState};
use reflexion_api::llm::{Llm, LlmConfig, LlmMemory};
use reflexion_api::registry::Registry;
use reflexion_core::policy::Policy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The kube-reflexion API: receives failure reports, fixes them at the owning workload, verifies, reverts what did
/// not work, and learns from every outcome.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "REFLEXION_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// SQLite database (created if missing).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://reflexion.db")]
    database_url: String,
    /// Ask this registry (or mirror) for image tags instead of each image's own registry.
    #[arg(long, env = "REFLEXION_REGISTRY_URL")]
    registry_url: Option<String>,
    /// Trials per incident before escalating.
    #[arg(long, env = "REFLEXION_MAX_TRIALS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    max_trials: u32,
    /// Seconds a fixed workload must stay Ready to count as verified.
    #[arg(long, env = "REFLEXION_VERIFY_WINDOW_SECS", default_value_t = 30.0)]
    verify_window_secs: f64,
    /// Seconds to wait for a fix to verify before reverting it.
    #[arg(long, env = "REFLEXION_VERIFY_TIMEOUT_SECS", default_value_t = 180.0)]
    verify_timeout_secs: f64,
    /// The highest memory limit the OOM rule sets automatically.
    #[arg(long, env = "REFLEXION_MEMORY_CEILING", default_value = "2Gi")]
    memory_ceiling: String,
    /// Share of choices between candidate strategies made at random (exploration), 0 to 1.
    #[arg(long, env = "REFLEXION_EXPLORATION_RATE", default_value_t = 0.2)]
    exploration_rate: f64,
    /// Circuit breaker: at most this many writes to the cluster per hour, all workloads together.
    #[arg(long, env = "REFLEXION_MAX_ACTIONS_PER_HOUR", default_value_t = 30)]
    max_actions_per_hour: u32,
    /// At most this many writes to one workload per hour.
    #[arg(
        long,
        env = "REFLEXION_MAX_WORKLOAD_ACTIONS_PER_HOUR",
        default_value_t = 6
    )]
    max_workload_actions_per_hour: u32,
    /// Policy file (JSON): modes per namespace, protected namespaces, automatic risk limit.
    #[arg(long, env = "REFLEXION_POLICY_FILE")]
    policy_file: Option<PathBuf>,
    /// Require `Authorization: Bearer <token>` on mutating endpoints.
    #[arg(long, env = "REFLEXION_API_TOKEN", hide_env_values = true)]
    api_token: Option<String>,
    /// Seconds between an action of one incident and an action of another on the same workload; a workload that
    /// fails again sooner is handed to a human instead of being changed again.
    #[arg(
        long,
        env = "REFLEXION_WORKLOAD_COOLDOWN_SECS",
        default_value_t = 120.0
    )]
    workload_cooldown_secs: f64,
    /// Who plans first: `rules` (the LLM only where they find no fix) or `llm` (the model first, rules as fallback).
    #[arg(long, env = "REFLEXION_PLANNER", value_enum, default_value = "rules")]
    planner: PlannerMode,
    /// API key of an OpenAI-compatible endpoint; without it (and without --llm-base-url) no LLM is used.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    openai_api_key: Option<String>,
    /// Base URL of the OpenAI-compatible API (OpenAI, Ollama, vLLM, llama.cpp), e.g. http://127.0.0.1:8080/v1.
    #[arg(long, env = "OPENAI_BASE_URL")]
    llm_base_url: Option<String>,
    /// Model name sent to the endpoint.
    #[arg(long, env = "REFLEXION_LLM_MODEL", default_value = "gpt-4o-mini")]
    llm_model: String,
    /// Seconds to wait for one LLM answer before falling back to the rules.
    #[arg(long, env = "REFLEXION_LLM_TIMEOUT_SECS", default_value_t = 30.0)]
    llm_timeout_secs: f64,
    /// Most tokens an answer may use.
    #[arg(long, env = "REFLEXION_LLM_MAX_TOKENS", default_value_t = 400, value_parser = clap::value_parser!(u32).range(16..=8192))]
    llm_max_tokens: u32,
    /// Sampling temperature.
    #[arg(long, env = "REFLEXION_LLM_TEMPERATURE", default_value_t = 0.0)]
    llm_temperature: f32,
    /// Do not send `response_format: json_schema` (for servers that reject it).
    #[arg(long, env = "REFLEXION_LLM_NO_JSON_SCHEMA")]
    llm_no_json_schema: bool,
    /// Send real namespace, workload, pod, node and registry names instead of placeholders.
    #[arg(long, env = "REFLEXION_LLM_NO_REDACT")]
    llm_no_redact: bool,
    /// What LLM prompts may recall: `full` (lessons, learned strategies, this incident's failed attempts and
    /// reflections), `incident` (only the latter) or `none`. For experiments; production uses `full`.
    #[arg(long, env = "REFLEXION_LLM_MEMORY", value_enum, default_value = "full")]
    llm_memory: LlmMemory,
    /// Most LLM tokens one incident may use.
    #[arg(long, env = "REFLEXION_LLM_INCIDENT_TOKENS", default_value_t = 20_000)]
    llm_incident_tokens: u64,
    /// Most LLM tokens all incidents together may use per UTC day.
    #[arg(long, env = "REFLEXION_LLM_DAILY_TOKENS", default_value_t = 1_000_000)]
    llm_daily_tokens: u64,
    /// Require the bearer token on read endpoints too (/health and /metrics stay open for probes and scrapers).
    #[arg(long, env = "REFLEXION_AUTH_READS")]
    auth_reads: bool,
    /// Export traces (a span per incident trial and per LLM call) over OTLP/HTTP to this collector, e.g.
    /// http://127.0.0.1:4318 (Jaeger, Tempo, the OpenTelemetry Collector, LangSmith's OTLP endpoint).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "REFLEXION_LOG_JSON")]
    log_json: bool,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("reflexion-api: {e:#}");
        std::process::exit(1);
    }
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        anyhow::bail!("{name} must be between 0 and 86400 seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading policy file {}", path.display()))?;
    if meta.len() > 1024 * 1024 {
        anyhow::bail!("policy file {} is larger than 1 MiB", path.display());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("policy file {} is not a valid policy", path.display()))
}

/// The LLM client, when an endpoint is configured (a key, or a base URL for local servers that need none).
fn llm(args: &Args) -> anyhow::Result<Option<Llm>> {
    if args.openai_api_key.is_none() && args.llm_base_url.is_none() {
        return Ok(None);
    }
    if args.openai_api_key.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!("OPENAI_API_KEY is set but empty");
    }
    let base_url = args
        .llm_base_url
        .clone()
        .unwrap_or_else(|| "https://api.openai.com/v1".into());
    reqwest::Url::parse(&base_url)
        .with_context(|| format!("--llm-base-url {base_url:?} is not a URL"))?;
    if !(0.0..=2.0).contains(&args.llm_temperature) {
        anyhow::bail!(
            "--llm-temperature must be between 0 and 2, got {}",
            args.llm_temperature
        );
    }
    let config = LlmConfig {
        base_url,
        api_key: args.openai_api_key.clone().unwrap_or_else(|| "none".into()),
        model: args.llm_model.clone(),
        timeout: seconds("--llm-timeout-secs", args.llm_timeout_secs)?,
        max_tokens: args.llm_max_tokens,
        temperature: args.llm_temperature,
        json_schema: !args.llm_no_json_schema,
        redact: !args.llm_no_redact,
        incident_token_budget: args.llm_incident_tokens,
        daily_token_budget: args.llm_daily_tokens,
        memory: args.llm_memory,
    };
    Ok(Some(Llm::new(config).context("building the LLM client")?))
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let traces = init_tracing(args.log_json, args.otlp_endpoint.as_deref()).await?;
    let config = EngineConfig {
        workload_cooldown: if args.workload_cooldown_secs == 0.0 {
            Duration::ZERO
        } else {
            seconds("--workload-cooldown-secs", args.workload_cooldown_secs)?
        },
        llm: llm(&args)?,
        planner: args.planner,
        max_trials: args.max_trials,
        verify_window: seconds("--verify-window-secs", args.verify_window_secs)?,
        verify_timeout: seconds("--verify-timeout-secs", args.verify_timeout_secs)?,
        policy: load_policy(args.policy_file.as_ref())?,
        exploration_rate: if (0.0..=1.0).contains(&args.exploration_rate) {
            args.exploration_rate
        } else {
            anyhow::bail!(
                "--exploration-rate must be between 0 and 1, got {}",
                args.exploration_rate
            )
        },
        budget: reflexion_core::policy::Budget {
            actions_per_hour: args.max_actions_per_hour,
            workload_actions_per_hour: args.max_workload_actions_per_hour,
        },
        memory_ceiling: reflexion_core::quantity::parse_bytes(&args.memory_ceiling)
            .filter(|b| *b > 0)
            .with_context(|| {
                format!(
                    "--memory-ceiling {:?} is not a memory quantity such as 2Gi",
                    args.memory_ceiling
                )
            })?,
    };
    if let Some(u) = &args.registry_url {
        reqwest::Url::parse(u).with_context(|| format!("--registry-url {u:?} is not a URL"))?;
    }
    if args.api_token.as_deref().is_some_and(str::is_empty) {
        anyhow::bail!("REFLEXION_API_TOKEN is set but empty");
    }
    let db = Db::connect(&args.database_url)
        .await
        .with_context(|| format!("opening database {}", args.database_url))?;
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster)")?;
    let http_client = reqwest::Client::builder()
        .build()
        .context("building the HTTP client")?;
    let engine = Engine::new(
        db,
        Cluster::new(client),
        Registry::new(http_client, args.registry_url.clone()),
        config,
    );
    let resumed = engine.resume().await.context("resuming incidents")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, database = %args.database_url, resumed, auth = args.api_token.is_some(),
        llm = args.llm_base_url.as_deref().unwrap_or(if args.openai_api_key.is_some() { "openai" } else { "none" }),
        "reflexion-api serving");
    if args.auth_reads && args.api_token.is_none() {
        anyhow::bail!("--auth-reads needs REFLEXION_API_TOKEN");
    }
    let state = AppState {
        engine,
        token: args.api_token.map(Arc::new),
        auth_reads: args.auth_reads,
    };
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("reflexion-api stopped");
    if let Some(p) = traces
        && let Err(e) = tokio::task::spawn_blocking(move || p.shutdown()).await
    {
        eprintln!("reflexion-api: flushing traces: {e}");
    }
    Ok(())
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
