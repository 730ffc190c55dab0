//! The REST API. Errors have one shape everywhere: `{"error": {"code", "message", "details"}}`.

mod alerts;
mod console;
mod health;
mod memory;

// The layers below, by the names the handlers use.
pub(crate) use reflexion_engine::{cluster, engine};
pub(crate) use reflexion_store as db;
pub(crate) use reflexion_store::metrics;

use crate::db::{IncidentDetail, IncidentSummary};
use crate::engine::Engine;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use memory::*;
use reflexion_core::owner::fix_target;
use reflexion_core::report::FailureReport;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const MAX_BODY: usize = 1024 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub token: Option<Arc<String>>,
    /// Require the token on reads too (health and metrics stay open).
    pub auth_reads: bool,
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

/// The routes and their OpenAPI document, built together: a route exists only through `routes!`, so it cannot be
/// missing from the document.
fn api(state: &AppState) -> OpenApiRouter<AppState> {
    let mutating = OpenApiRouter::new()
        .routes(routes!(report))
        .routes(routes!(process))
        .routes(routes!(alerts::alertmanager))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(clear_all))
        .routes(routes!(clear_strategies))
        .routes(routes!(clear_episodes))
        .routes(routes!(console::token))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let mut reads = OpenApiRouter::new()
        .routes(routes!(incidents))
        .routes(routes!(incident))
        .routes(routes!(strategies))
        .routes(routes!(memory_strategies))
        .routes(routes!(episodes))
        .routes(routes!(memory_episodes))
        .routes(routes!(statistics))
        .routes(routes!(learned_values))
        .routes(routes!(learning_progression))
        .routes(routes!(reflexion_metrics))
        .routes(routes!(console::events))
        .routes(routes!(console::incident_events))
        .routes(routes!(console::settings))
        .routes(routes!(alerts::received))
        .routes(routes!(openapi_document));
    if state.auth_reads {
        reads = reads.route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    }
    // Probes and scrapers need no token.
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::livez))
        .routes(routes!(health::readyz))
        .routes(routes!(prometheus))
        .routes(routes!(console::index))
        .routes(routes!(console::app_js))
        .routes(routes!(console::app_css))
        .merge(reads)
        .merge(mutating)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kube-reflexion API",
        description = "Failure reports in; diagnosis, typed fixes at the owning workload, verification, reflections and learned strategies out. Errors always have the shape {\"error\": {\"code\", \"message\", \"details\"}}. When a token is configured, mutating endpoints need `Authorization: Bearer <token>`."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The one error shape.
#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(utoipa::ToSchema, serde::Serialize)]
#[allow(dead_code)]
struct ErrorDetail {
    code: String,
    message: String,
    details: Option<Value>,
}

/// The OpenAPI document of this server, generated from the code.
pub fn openapi(state: &AppState) -> utoipa::openapi::OpenApi {
    api(state).into_openapi()
}

pub fn router(state: AppState) -> Router {
    let (router, doc) = api(&state).split_for_parts();
    let doc = Arc::new(doc);
    router
        .layer(axum::Extension(doc))
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
        .layer(middleware::from_fn(|req: Request, next: Next| {
            answer_within(REQUEST_TIMEOUT, req, next)
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // A bug must still answer in the one error shape, not drop the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::internal("a handler panicked").into_response()
            },
        ))
        .with_state(state)
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This document", body = Value)))]
async fn openapi_document(
    axum::Extension(doc): axum::Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json((*doc).clone())
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

/// A request not answered within `limit` gets 408 in the one error shape (the live feed's stream is not limited:
/// only the time to its first byte is).
async fn answer_within(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request was not answered within {} s",
                limit.as_secs_f64()
            ),
        )
        .into_response(),
    }
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
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(
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

#[utoipa::path(post, path = "/api/v1/reflexion/process-with-k8s-data", tag = "reports", security(("bearer" = [])),
    request_body(content = Value, description = "A failure report: pod_name, namespace, error_type, idempotency_key, real_k8s_data", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "Identical for every re-send of the same report")),
    responses((status = 202, description = "Incident opened, or the open incident the report joins", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "Invalid report", body = ErrorBody)))]
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
    /// Required when the API serves several clusters.
    #[serde(default)]
    cluster: Option<String>,
}

/// Ask for an incident on a named pod: the same path as a watcher report, with the evidence read from the cluster.
#[utoipa::path(post, path = "/api/v1/reflexion/process", tag = "reports", security(("bearer" = [])),
    request_body(content = Value, description = "{\"pod_name\", \"namespace\", \"error_type\"}", content_type = "application/json"),
    responses((status = 202, description = "Incident opened", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "Invalid request", body = ErrorBody)))]
async fn process(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let r: ProcessRequest = json_body(&headers, body).await?;
    let mut report = FailureReport {
        pod_name: r.pod_name,
        namespace: r.namespace,
        error_type: r.error_type,
        idempotency_key: None,
        cluster: r.cluster,
        real_k8s_data: Default::default(),
    };
    with_owner_chain(&state, &mut report).await;
    accept(&state, report).await
}

/// The pod's owner chain, read as the watcher reads it, so that the incident is its workload's and one open incident
/// per workload holds whichever way the failure came in. A pod that cannot be read stays its own.
pub(crate) async fn with_owner_chain(state: &AppState, report: &mut FailureReport) {
    if report.validate().is_ok()
        && let Ok((_, member)) = state.engine.fleet().resolve(report.cluster.as_deref())
        && let Ok(Some(pod)) = member
            .cluster
            .pod(&report.namespace, &report.pod_name)
            .await
        && let Ok(chain) = member.cluster.owner_chain(&pod).await
    {
        report.real_k8s_data.owner_chain = chain;
    }
}

async fn accept(state: &AppState, report: FailureReport) -> Result<Response, ApiError> {
    let body = open(state, report).await?;
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Store a report: a new incident on its workload, or the open one it joins. The answer's body.
pub(crate) async fn open(state: &AppState, report: FailureReport) -> Result<Value, ApiError> {
    report.validate().map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_report",
            e.to_string(),
        )
        .details(json!({"field": e.field}))
    })?;
    // A report from a cluster this API does not serve is stored nowhere: nothing could act on it.
    let cluster = served_cluster(state, report.cluster.as_deref())?;
    // Keys are the watcher's per cluster: the same key from another cluster is another report.
    let key = report
        .idempotency_key
        .as_deref()
        .map(|k| format!("{cluster}/{k}"));
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
            cluster,
            idempotency_key: key.as_deref(),
            report: &report_json,
            detected_at: report.real_k8s_data.detected_at.as_deref(),
        })
        .await
        .map_err(ApiError::internal)?;
    if created {
        state.engine.spawn(id.clone());
    }
    Ok(
        json!({"incident_id": id, "status": if created { "accepted" } else { "duplicate" }, "duplicate": !created,
              "cluster": cluster, "workload": {"kind": kind, "name": name, "namespace": report.namespace}}),
    )
}

#[derive(Deserialize)]
struct ListQuery {
    error_type: Option<String>,
    state: Option<String>,
    limit: Option<i64>,
}

impl ListQuery {
    fn limit(&self) -> Result<i64, ApiError> {
        list_limit(self.limit)
    }
}

/// A list's `limit`: 1-1000, 100 when absent.
pub(crate) fn list_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(l) if (1..=1000).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be between 1 and 1000, got {l}"),
        )),
    }
}

/// The name of the cluster asked for (the only one when none is named), if this API serves it.
pub(crate) fn served_cluster<'a>(
    state: &'a AppState,
    asked: Option<&str>,
) -> Result<&'a str, ApiError> {
    let (cluster, _) = state.engine.fleet().resolve(asked).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_cluster",
            e.to_string(),
        )
        .details(json!({"field": "cluster"}))
    })?;
    Ok(cluster)
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339()
}

#[utoipa::path(get, path = "/api/v1/reflexion/incidents", tag = "incidents",
    params(("state" = Option<String>, Query, description = "reported, diagnosing, planning, awaiting_approval, executing, verifying, resolved, escalated, failed, dismissed"), ("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "Incidents, newest first", body = IncidentList), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn incidents(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<IncidentList>, ApiError> {
    let incidents = state
        .engine
        .db()
        .incidents(q.state.as_deref(), q.limit()?)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(IncidentList {
        total_count: incidents.len(),
        incidents,
        timestamp: timestamp(),
    }))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct IncidentList {
    incidents: Vec<IncidentSummary>,
    total_count: usize,
    timestamp: String,
}

#[utoipa::path(get, path = "/api/v1/reflexion/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id")),
    responses((status = 200, description = "The full trail: report, evidence, transitions, trials, LLM calls, audit", body = IncidentDetail), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody)))]
async fn incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IncidentDetail>, ApiError> {
    check_id(&id)?;
    match state
        .engine
        .db()
        .incident_detail(&id)
        .await
        .map_err(ApiError::internal)?
    {
        Some(v) => Ok(Json(v)),
        None => Err(no_incident(&id)),
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

/// Incident ids are short: a longer one is refused before any read.
fn check_id(id: &str) -> Result<(), ApiError> {
    if id.len() > 64 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_id",
            "incident ids are at most 64 characters",
        ));
    }
    Ok(())
}

fn no_incident(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("incident {id} not found"),
    )
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
        None => Err(no_incident(id)),
    }
}

fn not_awaiting(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "not_awaiting_approval",
        format!("incident {id} is not awaiting approval"),
    )
}

#[utoipa::path(post, path = "/api/v1/reflexion/incidents/{id}/approve", tag = "incidents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Incident id")),
    request_body(content = Option<Value>, description = "Optional {\"by\"}", content_type = "application/json"),
    responses((status = 202, description = "The pending plan runs (`approved`), or runs as soon as another replica's claim on the incident is free (`queued`)", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody), (status = 409, description = "Not awaiting approval", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "Invalid body", body = ErrorBody)))]
async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let d = decision(&headers, body).await?;
    ensure_incident(&state, &id).await?;
    let by = d.by.unwrap_or_else(|| "an operator".into());
    use crate::engine::Approval;
    let body = match state
        .engine
        .approve(&id, &by)
        .await
        .map_err(ApiError::internal)?
    {
        Approval::NotWaiting => return Err(not_awaiting(&id)),
        Approval::Running => json!({"incident_id": id, "status": "approved"}),
        Approval::Queued => json!({"incident_id": id, "status": "queued",
            "message": "another replica holds the incident's claim: the approved plan runs here as soon as it is free"}),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

#[utoipa::path(post, path = "/api/v1/reflexion/incidents/{id}/reject", tag = "incidents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Incident id")),
    request_body(content = Option<Value>, description = "Optional {\"by\", \"reason\"}", content_type = "application/json"),
    responses((status = 200, description = "Rejected; nothing ran", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody), (status = 409, description = "Not awaiting approval", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody), (status = 422, description = "Invalid body", body = ErrorBody)))]
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

#[utoipa::path(delete, path = "/api/v1/memory/clear", tag = "memory", security(("bearer" = [])),
    responses((status = 200, description = "Episodes, lessons, strategies and learned values deleted; incidents and audit kept", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn clear_all(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    clear(&state, true, true).await
}
#[utoipa::path(delete, path = "/api/v1/memory/strategies", tag = "memory", security(("bearer" = [])),
    responses((status = 200, description = "Strategies and learned values deleted", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn clear_strategies(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    clear(&state, false, true).await
}
#[utoipa::path(delete, path = "/api/v1/memory/episodes", tag = "memory", security(("bearer" = [])),
    responses((status = 200, description = "Episodes and their lessons deleted", body = Value), (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
async fn clear_episodes(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    clear(&state, true, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_not_answered_in_time_gets_408_with_the_error_body() {
        use tower::ServiceExt;
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/fast", axum::routing::get(|| async { "on time" }))
            .layer(middleware::from_fn(|req: Request, next: Next| {
                answer_within(Duration::from_millis(50), req, next)
            }));
        let call = |path: &'static str| {
            let app = app.clone();
            async move {
                let req = axum::http::Request::get(path)
                    .body(Body::empty())
                    .unwrap_or_default();
                let resp = app.oneshot(req).await.unwrap_or_else(|e| match e {});
                let status = resp.status();
                let body = axum::body::to_bytes(resp.into_body(), 4096)
                    .await
                    .unwrap_or_default();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(call("/fast").await, (StatusCode::OK, "on time".to_string()));
        let (status, body) = call("/slow").await;
        assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
        let body: Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(body["error"]["code"], "request_timeout", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("0.05 s")),
            "{body}"
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret-longer"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
