//! Alertmanager's webhook as a second source of incidents (`reflexion_core::alert`): a firing alert naming a
//! workload becomes a report on it — the same path as a watcher's, so it opens the workload's incident or joins the
//! open one, whichever came first — a resolved one is recorded, any other is kept as ignored with why. Every alert
//! is stored with its outcome (`GET /api/v1/alerts`).

use super::{
    ApiError, AppState, ErrorBody, json_body, list_limit, open, served_cluster, timestamp,
    with_owner_chain,
};
use crate::db::{AlertRow, NewAlert};
use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use reflexion_core::alert::{self, Alert, Meaning};
use reflexion_core::owner::{OwnerLink, WorkloadKind};
use reflexion_core::report::FailureReport;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Deserialize)]
pub(super) struct AlertQuery {
    /// Which cluster the alerts are from, when the API serves several (one webhook URL per cluster).
    cluster: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/alerts/alertmanager", tag = "reports", security(("bearer" = [])),
    request_body(content = Value, description = "Alertmanager's webhook payload, version 4", content_type = "application/json"),
    params(("cluster" = Option<String>, Query, description = "The cluster the alerts are from (required when the API serves several)")),
    responses((status = 200, description = "What became of each alert: reported (with its incident), resolved, or ignored with why", body = Value),
        (status = 400, description = "Bad JSON or query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody), (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Not an Alertmanager version 4 payload, or an unknown cluster", body = ErrorBody)))]
pub(super) async fn alertmanager(
    State(state): State<AppState>,
    Query(q): Query<AlertQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let value: Value = json_body(&headers, body).await?;
    let payload = alert::parse(value)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_payload", e))?;
    let cluster = served_cluster(&state, q.cluster.as_deref())?.to_string();
    let mut outcomes = Vec::with_capacity(payload.alerts.len());
    for a in &payload.alerts {
        let outcome = handle(&state, &q, &cluster, a).await?;
        outcomes.push(outcome);
    }
    Ok(Json(
        json!({"alerts": outcomes, "truncated_alerts": payload.truncated_alerts}),
    ))
}

/// One alert: reported, resolved or ignored, stored with its outcome.
async fn handle(
    state: &AppState,
    q: &AlertQuery,
    cluster: &str,
    a: &Alert,
) -> Result<Value, ApiError> {
    let labels = json!(a.labels);
    let fingerprint: String = a.fingerprint.chars().take(64).collect();
    let alertname: String = a.name().chars().take(128).collect();
    let (outcome, why, incident, workload) = match a.meaning() {
        Meaning::Failing {
            namespace,
            kind,
            name,
        } => {
            let report = report_of(state, q, a, &namespace, kind, &name).await;
            match open(state, report).await {
                Ok(body) => {
                    let id = body["incident_id"].as_str().map(String::from);
                    ("reported", None, id, Some((namespace, kind, name)))
                }
                // The report a valid alert makes is valid; a refusal is kept as the alert's outcome.
                Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => (
                    "ignored",
                    Some(e.message),
                    None,
                    Some((namespace, kind, name)),
                ),
                Err(e) => return Err(e),
            }
        }
        Meaning::Resolved {
            namespace,
            kind,
            name,
        } => ("resolved", None, None, Some((namespace, kind, name))),
        Meaning::Ignored(why) => ("ignored", Some(why), None, None),
    };
    let workload = workload.map(|(ns, kind, name)| (ns, kind.to_string(), name));
    state
        .engine
        .db()
        .record_alert(&NewAlert {
            cluster,
            alertname: &alertname,
            status: &a.status,
            fingerprint: &fingerprint,
            workload: workload
                .as_ref()
                .map(|(ns, kind, name)| (ns.as_str(), kind.as_str(), name.as_str())),
            outcome,
            why: why.as_deref(),
            incident_id: incident.as_deref(),
            labels: &labels,
        })
        .await
        .map_err(ApiError::internal)?;
    Ok(
        json!({"alertname": alertname, "fingerprint": fingerprint, "outcome": outcome, "why": why,
              "incident_id": incident,
              "workload": workload.map(|(ns, k, n)| json!({"namespace": ns, "kind": k, "name": n}))}),
    )
}

/// The report a firing alert makes: on the pod (its owner chain read from the cluster, as `/process` does) or on
/// the workload it names; one per firing (Alertmanager re-sends it every `repeat_interval`: the same key).
async fn report_of(
    state: &AppState,
    q: &AlertQuery,
    a: &Alert,
    namespace: &str,
    kind: WorkloadKind,
    name: &str,
) -> FailureReport {
    let key: String = format!("alert-{}-{}", a.fingerprint, a.starts_at)
        .chars()
        .filter(char::is_ascii_graphic)
        .take(128)
        .collect();
    let mut report = FailureReport {
        pod_name: name.to_string(),
        namespace: namespace.to_string(),
        error_type: a.error_type(),
        idempotency_key: Some(key),
        cluster: q.cluster.clone(),
        real_k8s_data: Default::default(),
    };
    report.real_k8s_data.signature = Some(format!("alert/{}", a.error_type()));
    report.real_k8s_data.detected_at = Some(timestamp());
    if kind == WorkloadKind::Pod {
        with_owner_chain(state, &mut report).await;
    } else {
        report.real_k8s_data.owner_chain = vec![OwnerLink {
            kind: kind.to_string(),
            name: name.to_string(),
            uid: String::new(),
        }];
    }
    report
}

#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct AlertList {
    total_count: usize,
    alerts: Vec<AlertRow>,
    timestamp: String,
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "reports",
    params(("limit" = Option<i64>, Query, description = "1-1000, default 100")),
    responses((status = 200, description = "The latest Alertmanager alerts received, newest first, with what became of each", body = AlertList),
        (status = 400, description = "Bad query", body = ErrorBody), (status = 401, description = "Missing or wrong bearer token", body = ErrorBody)))]
pub(super) async fn received(
    State(state): State<AppState>,
    Query(q): Query<AlertQuery>,
) -> Result<Json<AlertList>, ApiError> {
    let limit = list_limit(q.limit)?;
    let alerts = state
        .engine
        .db()
        .alerts(limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(AlertList {
        total_count: alerts.len(),
        alerts,
        timestamp: timestamp(),
    }))
}
