//! Alertmanager's alerts as received, each with its outcome: the second source of incidents is as auditable as the
//! watcher's reports.

use super::backend::{Arg, on_pool};
use super::rows::AlertRow;
use super::{Db, Result, now};
use serde_json::Value;

/// One alert as stored: what it named, and what became of it (`reported`, `resolved`, `ignored`).
pub struct NewAlert<'a> {
    pub cluster: &'a str,
    pub alertname: &'a str,
    pub status: &'a str,
    pub fingerprint: &'a str,
    /// (namespace, kind, name) when it named a workload.
    pub workload: Option<(&'a str, &'a str, &'a str)>,
    pub outcome: &'a str,
    pub why: Option<&'a str>,
    pub incident_id: Option<&'a str>,
    pub labels: &'a Value,
}

impl Db {
    pub async fn record_alert(&self, a: &NewAlert<'_>) -> Result<()> {
        let (ts, labels) = (now(), a.labels.to_string());
        let (ns, kind, name) = match a.workload {
            Some((ns, kind, name)) => (Some(ns), Some(kind), Some(name)),
            None => (None, None, None),
        };
        self.write(
            "INSERT INTO alerts (received_at, cluster, alertname, status, fingerprint, namespace, workload_kind,
                                 workload_name, outcome, why, incident_id, labels)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                Arg::Text(&ts),
                Arg::Text(a.cluster),
                Arg::Text(a.alertname),
                Arg::Text(a.status),
                Arg::Text(a.fingerprint),
                Arg::MaybeText(ns),
                Arg::MaybeText(kind),
                Arg::MaybeText(name),
                Arg::Text(a.outcome),
                Arg::MaybeText(a.why),
                Arg::MaybeText(a.incident_id),
                Arg::Text(&labels),
            ],
        )
        .await?;
        Ok(())
    }

    /// The latest alerts received, newest first.
    pub async fn alerts(&self, limit: i64) -> Result<Vec<AlertRow>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as("SELECT * FROM alerts ORDER BY id DESC LIMIT $1")
                .bind(limit)
                .fetch_all(p)
                .await?
        }))
    }
}
