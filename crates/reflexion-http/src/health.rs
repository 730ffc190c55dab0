//! The probes: `/health` (the database and every cluster, for people and dashboards), `/livez` (the process alone,
//! for the kubelet's liveness probe) and `/readyz` (the database and a cluster, for its readiness probe).

use super::{AppState, timestamp};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Duration;

#[utoipa::path(get, path = "/health", tag = "meta",
    responses((status = 200, description = "The database answers (status degraded when the cluster does not)", body = Value),
        (status = 503, description = "The database does not answer", body = Value)))]
pub(super) async fn health(State(state): State<AppState>) -> Response {
    let (checks, body) = checks(&state).await;
    let code = if checks.database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// Liveness: the process answers. Nothing outside it is asked, so an outage of the database or a cluster never
/// gets the API restarted (a restart cannot fix either).
#[utoipa::path(get, path = "/livez", tag = "meta",
    responses((status = 200, description = "The process serves", body = Value)))]
pub(super) async fn livez() -> Json<Value> {
    Json(json!({"status": "alive"}))
}

/// Readiness: the database answers and at least one cluster does; otherwise the Service sends nothing here.
#[utoipa::path(get, path = "/readyz", tag = "meta",
    responses((status = 200, description = "The database and a cluster answer", body = Value),
        (status = 503, description = "The database or every cluster does not answer", body = Value)))]
pub(super) async fn readyz(State(state): State<AppState>) -> Response {
    let (checks, body) = checks(&state).await;
    let code = if checks.database && checks.any_cluster {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

struct Checks {
    database: bool,
    any_cluster: bool,
}

/// The database's and every cluster's answer (2 s each at most), as `/health` shows them.
async fn checks(state: &AppState) -> (Checks, Value) {
    let db = state.engine.db().ping().await;
    let clusters =
        futures::future::join_all(state.engine.fleet().members().map(|(name, m)| async move {
            let answer = tokio::time::timeout(Duration::from_secs(2), m.cluster.reachable()).await;
            let status = match answer {
                Ok(Ok(version)) => json!({"status": "ok", "version": version}),
                Ok(Err(e)) => json!({"status": "unreachable", "error": e.to_string()}),
                Err(_) => json!({"status": "unreachable", "error": "timed out after 2s"}),
            };
            (name.to_string(), status)
        }))
        .await;
    let any_cluster = clusters.iter().any(|(_, s)| s["status"] == "ok");
    // `cluster` is the first unreachable one, else the first: the single-cluster answer as it always was.
    let cluster = clusters
        .iter()
        .find(|(_, s)| s["status"] != "ok")
        .or(clusters.first())
        .map(|(n, s)| {
            let mut s = s.clone();
            s["name"] = json!(n);
            s
        })
        .unwrap_or(Value::Null);
    let clusters: serde_json::Map<String, Value> = clusters.into_iter().collect();
    let healthy = db.is_ok();
    let body = json!({
        "status": if healthy && cluster["status"] == "ok" { "healthy" } else if healthy { "degraded" } else { "unhealthy" },
        "database": if healthy { "ok".to_string() } else { format!("error: {}", db.err().map(|e| e.to_string()).unwrap_or_default()) },
        "store": state.engine.db().dialect().name(),
        "cluster": cluster,
        "clusters": clusters,
        "version": env!("CARGO_PKG_VERSION"),
        "timestamp": timestamp(),
    });
    (
        Checks {
            database: healthy,
            any_cluster,
        },
        body,
    )
}
