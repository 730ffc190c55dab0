//! The REST API. Errors have one shape everywhere: `{"error": {"code", "message", "details"}}`.

use crate::engine::Engine;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use reflexion_core::owner::fix_target;
use reflexion_core::report::FailureReport;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

pub const MAX_BODY: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub token: Option<Arc<String>>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Value::Null,
        }
    }
    fn details(mut self, d: Value) -> Self {
        self.details = d;
        self
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message, "details": self.details}}))).into_response()
    }
}

pub fn router(state: AppState) -> Router {
    let mutating = Router::new()
        .route("/api/v1/reflexion/process-with-k8s-data", post(report))
        .route("/api/v1/reflexion/process", post(process))
        .route("/api/v1/reflexion/incidents/{id}/approve", post(approve))
        .route("/api/v1/reflexion/incidents/{id}/reject", post(reject))
        .route("/api/v1/memory/clear", delete(clear_all))
        .route("/api/v1/memory/strategies", delete(clear_strategies))
        .route("/api/v1/memory/episodes", delete(clear_episodes))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/reflexion/incidents", get(incidents))
        .route("/api/v1/reflexion/incidents/{id}", get(incident))
        .route("/api/v1/reflexion/strategies", get(strategies))
        .route("/api/v1/memory/strategies", get(strategies))
        .route("/api/v1/reflexion/memory/episodic", get(episodes))
        .route("/api/v1/memory/episodes", get(episodes))
        .merge(mutating)
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn require_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(want) = &state.token {
        let got = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !got.is_some_and(|g| constant_time_eq(g.as_bytes(), want.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
            .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff));
    }
    diff == 0
}

/// Read a bounded JSON body: 415 without a JSON content type, 413 over the limit, 400 for bad JSON, 422 for JSON
/// of the wrong shape.
async fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {MAX_BODY} bytes"),
        )
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        )
    })
}

async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut report: FailureReport = json_body(&headers, body).await?;
    if report.idempotency_key.is_none() {
        report.idempotency_key = headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
    }
    accept(&state, report).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessRequest {
    pod_name: String,
    namespace: String,
    error_type: String,
}

/// Ask for an incident on a named pod: the same path as a watcher report, with the evidence read from the cluster.
async fn process(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let r: ProcessRequest = json_body(&headers, body).await?;
    let report = FailureReport {
        pod_name: r.pod_name,
        namespace: r.namespace,
        error_type: r.error_type,
        idempotency_key: None,
        real_k8s_data: Default::default(),
    };
    accept(&state, report).await
}

async fn accept(state: &AppState, report: FailureReport) -> Result<Response, ApiError> {
    report.validate().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_report",
            e.to_string(),
        )
        .details(json!({"field": e.field}))
    })?;
    // The workload comes from the report's owner chain only to group duplicate reports; the engine re-reads it live.
    let target = fix_target(&report.namespace, &report.real_k8s_data.owner_chain);
    let (kind, name) = target
        .map(|t| (t.kind.to_string(), t.name))
        .unwrap_or(("Pod".into(), report.pod_name.clone()));
    let signature = report
        .real_k8s_data
        .signature
        .clone()
        .unwrap_or_else(|| report.error_type.clone());
    let report_json = serde_json::to_value(&report).map_err(ApiError::internal)?;
    let (id, created) = state
        .engine
        .db()
        .open_incident(&crate::db::NewIncident {
            namespace: &report.namespace,
            pod_name: &report.pod_name,
            workload_kind: &kind,
            workload_name: &name,
            error_type: &report.error_type,
            signature: &signature,
            idempotency_key: report.idempotency_key.as_deref(),
            report: &report_json,
        })
        .await
        .map_err(ApiError::internal)?;
    if created {
        state.engine.spawn(id.clone());
    }
    let body = json!({"incident_id": id, "status": if created { "accepted" } else { "duplicate" }, "duplicate": !created,
                      "workload": {"kind": kind, "name": name, "namespace": report.namespace}});
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    error_type: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(100),
            Some(l) if (1..=1000).contains(&l) => Ok(l),
            Some(l) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("limit must be between 1 and 1000, got {l}"),
            )),
        }
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339()
}

/// The list shape the original system answered with: `{"<what>": [...], "total_count", "timestamp"}`.
fn listing(what: &str, list: Vec<Value>) -> Json<Value> {
    let mut body = json!({"total_count": list.len(), "timestamp": timestamp()});
    body[what] = Value::Array(list);
    Json(body)
}

async fn strategies(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let list = state
        .engine
        .db()
        .strategies_json(q.error_type.as_deref(), q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(listing("strategies", list))
}

async fn episodes(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let list = state
        .engine
        .db()
        .episodes_json(q.error_type.as_deref(), None, q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(listing("episodes", list))
}

async fn incidents(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let list = state
        .engine
        .db()
        .incidents_json(q.state.as_deref(), q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(listing("incidents", list))
}

async fn incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "incident ids are at most 64 characters",
        ));
    }
    match state
        .engine
        .db()
        .incident_json(&id)
        .await
        .map_err(ApiError::internal)?
    {
        Some(v) => Ok(Json(v)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("incident {id} not found"),
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decision {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// An optional JSON body `{"by": "...", "reason": "..."}`, each at most 256 characters.
async fn decision(headers: &HeaderMap, body: Body) -> Result<Decision, ApiError> {
    if headers.get(header::CONTENT_TYPE).is_none() {
        return Ok(Decision::default());
    }
    let d: Decision = json_body(headers, body).await?;
    for (field, v) in [("by", &d.by), ("reason", &d.reason)] {
        if v.as_ref().is_some_and(|v| v.chars().count() > 256) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("{field} is longer than 256 characters"),
            ));
        }
    }
    Ok(d)
}

async fn ensure_incident(state: &AppState, id: &str) -> Result<(), ApiError> {
    match state
        .engine
        .db()
        .incident(id)
        .await
        .map_err(ApiError::internal)?
    {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("incident {id} not found"),
        )),
    }
}

fn not_awaiting(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_awaiting_approval",
        format!("incident {id} is not awaiting approval"),
    )
}

async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let d = decision(&headers, body).await?;
    ensure_incident(&state, &id).await?;
    let by = d.by.unwrap_or_else(|| "an operator".into());
    if !state
        .engine
        .approve(&id, &by)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(not_awaiting(&id));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"incident_id": id, "status": "approved"})),
    )
        .into_response())
}

async fn reject(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let d = decision(&headers, body).await?;
    ensure_incident(&state, &id).await?;
    let by = d.by.unwrap_or_else(|| "an operator".into());
    let reason = d.reason.unwrap_or_else(|| "no reason given".into());
    if !state
        .engine
        .reject(&id, &by, &reason)
        .await
        .map_err(ApiError::internal)?
    {
        return Err(not_awaiting(&id));
    }
    Ok((
        StatusCode::OK,
        Json(json!({"incident_id": id, "status": "rejected"})),
    )
        .into_response())
}

async fn clear(
    state: &AppState,
    episodes: bool,
    strategies: bool,
) -> Result<Json<Value>, ApiError> {
    let deleted = state
        .engine
        .db()
        .clear(episodes, strategies)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({"status": "cleared", "deleted": deleted, "timestamp": timestamp()}),
    ))
}

async fn clear_all(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    clear(&state, true, true).await
}
async fn clear_strategies(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    clear(&state, false, true).await
}
async fn clear_episodes(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    clear(&state, true, false).await
}

async fn health(State(state): State<AppState>) -> Response {
    let db = state.engine.db().ping().await;
    let cluster =
        tokio::time::timeout(Duration::from_secs(2), state.engine.cluster().reachable()).await;
    let cluster = match cluster {
        Ok(Ok(version)) => json!({"status": "ok", "version": version}),
        Ok(Err(e)) => json!({"status": "unreachable", "error": e.to_string()}),
        Err(_) => json!({"status": "unreachable", "error": "timed out after 2s"}),
    };
    let healthy = db.is_ok();
    let body = json!({
        "status": if healthy && cluster["status"] == "ok" { "healthy" } else if healthy { "degraded" } else { "unhealthy" },
        "database": if healthy { "ok".to_string() } else { format!("error: {}", db.err().map(|e| e.to_string()).unwrap_or_default()) },
        "cluster": cluster,
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": timestamp(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret-longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
