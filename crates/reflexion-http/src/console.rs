//! The operator console: a page served at `/` from assets compiled into the binary (no network, no Node), the live
//! feed of incident transitions it listens to (`/api/v1/events`, server-sent events), and the settings its header
//! shows. The page asks for the token itself; the data it reads is guarded like every other read.

use super::{ApiError, AppState, ErrorBody, check_id, no_incident};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Json, http::StatusCode};
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;

const INDEX: &str = include_str!("../console/index.html");
const APP_JS: &str = include_str!("../console/app.js");
const APP_CSS: &str = include_str!("../console/app.css");

/// Only our own script and style run; nothing is loaded from elsewhere, and the page cannot be framed.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// How often the feed looks for new transitions. The store is the source, so every replica's feed sees them all.
const FEED_POLL: Duration = Duration::from_millis(400);
const FEED_BATCH: i64 = 200;

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/", tag = "console",
    responses((status = 200, description = "The operator console", content_type = "text/html", body = String)))]
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

#[utoipa::path(get, path = "/console/app.js", tag = "console",
    responses((status = 200, description = "The console's script", content_type = "text/javascript", body = String)))]
pub(super) async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

#[utoipa::path(get, path = "/console/app.css", tag = "console",
    responses((status = 200, description = "The console's style sheet", content_type = "text/css", body = String)))]
pub(super) async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FeedQuery {
    /// Resume after this transition id (as `Last-Event-ID` does); without it the feed starts with what happens next.
    after: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/events", tag = "incidents",
    params(("after" = Option<i64>, Query, description = "Resume after this transition id (or send Last-Event-ID); default: only new transitions")),
    responses((status = 200, description = "Server-sent events: `transition` events whose data is a TransitionEvent and whose id resumes the feed",
               content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_header",
                        "Last-Event-ID must be a transition id (a non-negative integer)",
                    )
                })?,
        ),
        None => q.after,
    };
    if resume.is_some_and(|n| n < 0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            "after must be a non-negative transition id",
        ));
    }
    let db = state.engine.db().clone();
    let start = match resume {
        Some(n) => n,
        None => db.last_transition().await.map_err(ApiError::internal)?,
    };
    let queue: Vec<crate::db::TransitionEvent> = Vec::new();
    let stream =
        futures::stream::unfold((db, start, queue), |(db, mut last, mut queue)| async move {
            loop {
                if let Some(t) = queue.pop() {
                    last = t.id;
                    let event = Event::default()
                        .id(t.id.to_string())
                        .event("transition")
                        .json_data(&t)
                        .unwrap_or_else(|_| Event::default().comment("unencodable transition"));
                    return Some((Ok(event), (db, last, queue)));
                }
                match db.transitions_after(last, FEED_BATCH).await {
                    Ok(mut batch) if !batch.is_empty() => {
                        batch.reverse();
                        queue = batch;
                    }
                    Ok(_) => tokio::time::sleep(FEED_POLL).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "the live feed could not read transitions");
                        tokio::time::sleep(FEED_POLL * 5).await;
                    }
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// What the console's header shows: the policy in force and whether a model is configured.
#[derive(Serialize, ToSchema)]
pub(super) struct Settings {
    #[schema(value_type = Object)]
    policy: serde_json::Value,
    max_trials: u32,
    verify_window_secs: f64,
    llm: LlmSettings,
    /// Reads need the token too.
    auth_reads: bool,
    /// Writes need a token.
    auth: bool,
    version: &'static str,
}

#[derive(Serialize, ToSchema)]
struct LlmSettings {
    configured: bool,
    model: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "meta",
    responses((status = 200, description = "The policy in force, trials, verification window, whether an LLM is configured", body = Settings),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn settings(State(state): State<AppState>) -> Json<Settings> {
    let c = state.engine.config();
    Json(Settings {
        policy: serde_json::to_value(&c.policy).unwrap_or_default(),
        max_trials: c.max_trials,
        verify_window_secs: c.verify_window.as_secs_f64(),
        llm: LlmSettings {
            configured: c.llm.is_some(),
            model: c.llm.as_ref().map(|l| l.config.model.clone()),
        },
        auth_reads: state.auth_reads,
        auth: state.token.is_some(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// The token check the console makes before it shows anything: 200 with the right bearer token, 401 without.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenCheck {
    token: &'static str,
}

#[utoipa::path(get, path = "/api/v1/token", tag = "meta", security(("bearer" = [])),
    responses((status = 200, description = "The bearer token is right (or none is configured)", body = TokenCheck),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn token() -> Json<TokenCheck> {
    Json(TokenCheck { token: "ok" })
}

/// The Events kube-reflexion wrote on the incident's workload, read from the cluster.
#[derive(Serialize, ToSchema)]
pub(super) struct WrittenEvents {
    events: Vec<crate::cluster::WrittenEvent>,
}

#[utoipa::path(get, path = "/api/v1/reflexion/incidents/{id}/events", tag = "incidents",
    params(("id" = String, Path, description = "Incident id")),
    responses((status = 200, description = "The Kubernetes Events kube-reflexion wrote on the workload since the incident began", body = WrittenEvents),
        (status = 400, description = "Bad id", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "No such incident", body = ErrorBody), (status = 502, description = "The cluster did not answer", body = ErrorBody)))]
pub(super) async fn incident_events(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<WrittenEvents>, ApiError> {
    check_id(&id)?;
    // The incident's row only: its trail is not needed to find the workload and when it began.
    let s = state
        .engine
        .db()
        .incident_summary(&id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| no_incident(&id))?;
    let kind =
        reflexion_core::WorkloadKind::parse(&s.workload.kind).ok_or_else(|| no_incident(&id))?;
    let target = reflexion_core::WorkloadRef::new(kind, &s.namespace, &s.workload.name);
    // Event times have whole seconds: a second of slack keeps one written in the incident's first second.
    let since = s
        .created_at
        .parse::<k8s_openapi::jiff::Timestamp>()
        .map_err(ApiError::internal)?
        - k8s_openapi::jiff::SignedDuration::from_secs(1);
    let Some(member) = state.engine.fleet().serving(&s.cluster) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "cluster_not_served",
            format!(
                "the incident's cluster {:?} is not served by this API",
                s.cluster
            ),
        ));
    };
    let events = member
        .cluster
        .written_events(&target, since)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "cluster_unreachable",
                e.to_string(),
            )
        })?;
    Ok(Json(WrittenEvents { events }))
}
