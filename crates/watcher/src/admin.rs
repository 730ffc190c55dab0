//! The admin port: `/health` for probes and `/metrics` for Prometheus.

use crate::metrics::Metrics;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(metrics)
}

async fn health(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "leader": m.leader.load(Ordering::Relaxed),
        "spooled": m.spooled.load(Ordering::Relaxed),
    }))
}

async fn metrics_text(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}
