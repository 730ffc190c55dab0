//! Memory and learning, read: strategies, episodes, statistics, the learning curve, the seed's metrics and the
//! Prometheus exposition.

use super::{ApiError, AppState, ErrorBody, ListQuery, timestamp};
use crate::db::{Day, Episode, LearnedValue, Statistics, Strategy};
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The list shape the original system answered with: `{"<what>": [...], "total_count", "timestamp"}`.
#[derive(Serialize, ToSchema)]
pub(super) struct StrategyList {
    strategies: Vec<Strategy>,
    total_count: usize,
    timestamp: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct EpisodeList {
    episodes: Vec<Episode>,
    total_count: usize,
    timestamp: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct Progression {
    /// Oldest first.
    days: Vec<Day>,
    total_count: usize,
    timestamp: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct StatisticsBody {
    #[serde(flatten)]
    statistics: Statistics,
    timestamp: String,
}

/// The original system's metrics, with the engine's real numbers.
#[derive(Serialize, ToSchema)]
pub(super) struct ReflexionMetrics {
    total_incidents: i64,
    resolved: i64,
    escalated: i64,
    success_rate: Option<f64>,
    first_trial_fix_rate: Option<f64>,
    mean_trials_to_fix: Option<f64>,
    cluster_writes: i64,
    reverts: i64,
    strategies: i64,
    lessons: i64,
    llm_calls: i64,
    llm_tokens: i64,
    timestamp: String,
}

#[utoipa::path(get, path = "/api/v1/reflexion/strategies", tag = "memory",
    params(("error_type" = Option<String>, Query, description = "Only this kubelet reason or signature"), ("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "Learned strategies with counts and confidence", body = StrategyList), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn strategies(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<StrategyList>, ApiError> {
    let strategies = state
        .engine
        .db()
        .strategies(q.error_type.as_deref(), q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(StrategyList {
        total_count: strategies.len(),
        strategies,
        timestamp: timestamp(),
    }))
}

#[utoipa::path(get, path = "/api/v1/reflexion/memory/episodic", tag = "memory",
    params(("error_type" = Option<String>, Query, description = "Only this kubelet reason or signature"), ("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "Episodes (one per trial) with reflections and lessons", body = EpisodeList), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn episodes(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<EpisodeList>, ApiError> {
    let episodes = state
        .engine
        .db()
        .episodes(q.error_type.as_deref(), None, q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(EpisodeList {
        total_count: episodes.len(),
        episodes,
        timestamp: timestamp(),
    }))
}

#[utoipa::path(get, path = "/api/v1/memory/strategies", tag = "memory",
    params(("error_type" = Option<String>, Query, description = "Only this kubelet reason or signature"), ("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "Learned strategies (alias of /api/v1/reflexion/strategies)", body = StrategyList), (status = 400, description = "Bad query", body = ErrorBody)))]
pub(super) async fn memory_strategies(
    state: State<AppState>,
    q: Query<ListQuery>,
) -> Result<Json<StrategyList>, ApiError> {
    strategies(state, q).await
}

#[utoipa::path(get, path = "/api/v1/memory/episodes", tag = "memory",
    params(("error_type" = Option<String>, Query, description = "Only this kubelet reason or signature"), ("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "Episodes (alias of /api/v1/reflexion/memory/episodic)", body = EpisodeList), (status = 400, description = "Bad query", body = ErrorBody)))]
pub(super) async fn memory_episodes(
    state: State<AppState>,
    q: Query<ListQuery>,
) -> Result<Json<EpisodeList>, ApiError> {
    episodes(state, q).await
}

#[utoipa::path(get, path = "/api/v1/memory/statistics", tag = "memory",
    responses((status = 200, description = "Incidents by state and error type, success rate, trials to fix, episodes, strategies, lessons, writes, reverts, LLM use", body = StatisticsBody)))]
pub(super) async fn statistics(
    State(state): State<AppState>,
) -> Result<Json<StatisticsBody>, ApiError> {
    let statistics = state
        .engine
        .db()
        .statistics()
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(StatisticsBody {
        statistics,
        timestamp: timestamp(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProgressionQuery {
    days: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/memory/learning-progression", tag = "memory",
    params(("days" = Option<i64>, Query, description = "1-366, default 30")),
    responses((status = 200, description = "Per day: incidents, success rate, mean trials to fix, LLM calls per incident, LLM-free share", body = Progression),
        (status = 400, description = "Bad query", body = ErrorBody)))]
pub(super) async fn learning_progression(
    State(state): State<AppState>,
    Query(q): Query<ProgressionQuery>,
) -> Result<Json<Progression>, ApiError> {
    let days = q.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("days must be between 1 and 366, got {days}"),
        ));
    }
    let days = state
        .engine
        .db()
        .learning_progression(days)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Progression {
        total_count: days.len(),
        days,
        timestamp: timestamp(),
    }))
}

#[utoipa::path(get, path = "/api/v1/reflexion/metrics", tag = "memory",
    responses((status = 200, description = "The engine's real numbers: success rate, first-trial fix rate, trials to fix, reverts, LLM calls and tokens", body = ReflexionMetrics)))]
pub(super) async fn reflexion_metrics(
    State(state): State<AppState>,
) -> Result<Json<ReflexionMetrics>, ApiError> {
    let s = state
        .engine
        .db()
        .statistics()
        .await
        .map_err(ApiError::internal)?;
    let state_count = |k: &str| s.incidents.by_state.get(k).copied().unwrap_or(0);
    Ok(Json(ReflexionMetrics {
        total_incidents: s.incidents.total,
        resolved: state_count("resolved"),
        escalated: state_count("escalated"),
        success_rate: s.success_rate,
        first_trial_fix_rate: s.first_trial_fix_rate,
        mean_trials_to_fix: s.mean_trials_to_fix,
        cluster_writes: s.cluster_writes,
        reverts: s.reverts,
        strategies: s.strategies,
        lessons: s.lessons,
        llm_calls: s.llm.calls,
        llm_tokens: s.llm.tokens,
        timestamp: timestamp(),
    }))
}

#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub(super) async fn prometheus(State(state): State<AppState>) -> Result<Response, ApiError> {
    let s = state
        .engine
        .db()
        .statistics()
        .await
        .map_err(ApiError::internal)?;
    let by_cluster = state
        .engine
        .db()
        .incidents_by_cluster()
        .await
        .map_err(ApiError::internal)?;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    // Counters count what this process did (they never go down); gauges read the memory as it is.
    let c = state.engine.db().counters();
    let counter = |n: &std::sync::atomic::AtomicU64| {
        vec![(String::new(), crate::metrics::Counters::get(n) as f64)]
    };
    let states = s
        .incidents
        .by_state
        .iter()
        .map(|(k, n)| (format!("{{state=\"{k}\"}}"), *n as f64))
        .collect();
    metric(
        "reflexion_incidents",
        "gauge",
        "Incidents by state.",
        states,
    );
    // Cluster names are checked (letters, digits, -._:/@): nothing in them needs escaping in a label value.
    let by_cluster = by_cluster
        .into_iter()
        .map(|(c, st, n)| (format!("{{cluster=\"{c}\",state=\"{st}\"}}"), n as f64))
        .collect();
    metric(
        "reflexion_cluster_incidents",
        "gauge",
        "Incidents by cluster and state.",
        by_cluster,
    );
    metric(
        "reflexion_episodes_total",
        "counter",
        "Trials run.",
        counter(&c.episodes),
    );
    metric(
        "reflexion_episodes_successful_total",
        "counter",
        "Trials whose fix was verified.",
        counter(&c.episodes_successful),
    );
    metric(
        "reflexion_cluster_writes_total",
        "counter",
        "Writes to the cluster (reverts excluded).",
        counter(&c.cluster_writes),
    );
    metric(
        "reflexion_reverts_total",
        "counter",
        "Reverts run (done, skipped or failed).",
        counter(&c.reverts),
    );
    metric(
        "reflexion_strategies",
        "gauge",
        "Learned strategies.",
        vec![(String::new(), s.strategies as f64)],
    );
    metric(
        "reflexion_lessons",
        "gauge",
        "Lessons in memory.",
        vec![(String::new(), s.lessons as f64)],
    );
    metric(
        "reflexion_llm_calls_total",
        "counter",
        "LLM calls.",
        counter(&c.llm_calls),
    );
    metric(
        "reflexion_llm_tokens_total",
        "counter",
        "LLM tokens, prompt and completion.",
        counter(&c.llm_tokens),
    );
    metric(
        "reflexion_replicas",
        "gauge",
        "Replicas alive sharing the Kubernetes request budget, this one included (as last announced).",
        vec![(
            String::new(),
            f64::from(state.engine.config().kube_share.get()),
        )],
    );
    let seconds = |n: &std::sync::atomic::AtomicU64| crate::metrics::Counters::get(n) as f64 / 1e6;
    metric(
        "reflexion_store_write_transactions_total",
        "counter",
        "Write transactions begun on the store.",
        counter(&c.write_txs),
    );
    metric(
        "reflexion_store_write_wait_seconds_total",
        "counter",
        "Time spent getting write transactions: a connection, BEGIN and the writer lock.",
        vec![(String::new(), seconds(&c.write_wait_us))],
    );
    metric(
        "reflexion_store_ingest_batches_total",
        "counter",
        "Batches of reports stored together.",
        counter(&c.ingest_batches),
    );
    metric(
        "reflexion_store_ingest_reports_total",
        "counter",
        "Reports stored in batches.",
        counter(&c.ingest_reports),
    );
    metric(
        "reflexion_store_ingest_seconds_total",
        "counter",
        "Time storing report batches, by phase. SQLite: wait (the writer lock), lookup (BEGIN with the read), insert (the inserts with the COMMIT), commit (a COMMIT alone, when nothing was new). PostgreSQL, a batch in one call: wait (a connection) and insert (the locks, lookup and commit included).",
        [
            ("wait", &c.ingest_wait_us),
            ("lookup", &c.ingest_lookup_us),
            ("insert", &c.ingest_insert_us),
            ("commit", &c.ingest_commit_us),
        ]
        .into_iter()
        .map(|(phase, n)| (format!("{{phase=\"{phase}\"}}"), seconds(n)))
        .collect(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub(super) struct LearnedValueList {
    learned_values: Vec<LearnedValue>,
    total_count: usize,
    timestamp: String,
}

#[utoipa::path(get, path = "/api/v1/memory/learned-values", tag = "memory",
    params(("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "Values verified fixes used per workload (where the next fix there starts)", body = LearnedValueList),
        (status = 400, description = "Bad query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn learned_values(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<LearnedValueList>, ApiError> {
    let learned_values = state
        .engine
        .db()
        .learned_values(q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(LearnedValueList {
        total_count: learned_values.len(),
        learned_values,
        timestamp: timestamp(),
    }))
}
