//! The audit log of writes to the cluster: a slot reserved under the budget before each write, settled with its
//! result after; reverts; what a restart finds unsettled.

use super::backend::{Arg, on_conn, on_pool};
use super::{Db, Result, ago, now};
use crate::metrics::Counters;
use serde_json::Value;

impl Db {
    pub async fn audit(
        &self,
        incident_id: &str,
        verb: &str,
        target: &str,
        detail: &Value,
        result: &str,
    ) -> Result<()> {
        let (ts, detail) = (now(), detail.to_string());
        self.write(
            "INSERT INTO audit (at, incident_id, verb, target, detail, result, cluster)
             VALUES ($1, $2, $3, $4, $5, $6, COALESCE((SELECT cluster FROM incidents WHERE id = $2), ''))",
            &[
                Arg::Text(&ts),
                Arg::Text(incident_id),
                Arg::Text(verb),
                Arg::Text(target),
                Arg::Text(&detail),
                Arg::Text(result),
            ],
        )
        .await?;
        if verb == "revert" {
            Counters::add(&self.counters.reverts, 1);
        }
        Ok(())
    }

    /// Take one action slot if the budget allows it: in one write transaction, count the last hour's actions (all
    /// workloads, and this target) and record this one as `reserved`. `Ok(Err(why))` when the budget is spent.
    pub async fn reserve_action(
        &self,
        incident_id: &str,
        verb: &str,
        target: &str,
        detail: &Value,
        budget: &reflexion_core::policy::Budget,
        cooldown: std::time::Duration,
    ) -> Result<std::result::Result<i64, String>> {
        let hour_ago = ago(chrono::Duration::hours(1));
        let mut tx = self.begin_write().await?;
        // The per-workload cooldown, in the transaction that takes the slot: two incidents cannot both pass it.
        if !cooldown.is_zero() {
            let since =
                ago(chrono::Duration::from_std(cooldown).unwrap_or(chrono::Duration::zero()));
            let last: Option<(String, String)> = on_conn!(tx, c => {
                sqlx::query_as(
                    "SELECT at, incident_id FROM audit WHERE target = $1 AND incident_id != $2 AND verb != 'revert'
                       AND at >= $3 AND cluster = COALESCE((SELECT cluster FROM incidents WHERE id = $2), '')
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(target)
                .bind(incident_id)
                .bind(&since)
                .fetch_optional(&mut *c)
                .await?
            });
            if let Some((at, other)) = last {
                return Ok(Err(format!(
                    "incident {other} changed {target} at {at}, within the {}s cooldown",
                    cooldown.as_secs()
                )));
            }
        }
        let mut counts = [0u32; 2];
        for (n, target) in counts.iter_mut().zip([None, Some(target)]) {
            // The whole fleet's actions count against the hourly budget; a workload's, in its own cluster only.
            let count: i64 = on_conn!(tx, c => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM audit WHERE at >= $1 AND verb != 'revert'
                     AND ($2 IS NULL OR (target = $2 AND cluster = COALESCE((SELECT cluster FROM incidents WHERE id = $3), '')))",
                )
                .bind(&hour_ago)
                .bind(target)
                .bind(incident_id)
                .fetch_one(&mut *c)
                .await?
            });
            *n = u32::try_from(count).unwrap_or(u32::MAX);
        }
        if let Err(why) = budget.check(counts[0], counts[1]) {
            return Ok(Err(why));
        }
        let (ts, detail) = (now(), detail.to_string());
        let id: i64 = on_conn!(tx, c => {
            sqlx::query_scalar(
                "INSERT INTO audit (at, incident_id, verb, target, detail, result, cluster)
                 VALUES ($1, $2, $3, $4, $5, 'reserved', COALESCE((SELECT cluster FROM incidents WHERE id = $2), ''))
                 RETURNING id",
            )
            .bind(&ts)
            .bind(incident_id)
            .bind(verb)
            .bind(target)
            .bind(&detail)
            .fetch_one(&mut *c)
            .await?
        });
        tx.commit().await?;
        Counters::add(&self.counters.cluster_writes, 1);
        Ok(Ok(id))
    }

    /// The incident's action that was reserved and never settled: a write whose answer a crash lost.
    pub async fn unsettled_action(&self, incident_id: &str) -> Result<Option<(i64, Value)>> {
        let row: Option<(i64, String)> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT id, detail FROM audit WHERE incident_id = $1 AND result = 'reserved' ORDER BY id DESC LIMIT 1",
            )
            .bind(incident_id)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|(id, detail)| (id, serde_json::from_str(&detail).unwrap_or(Value::Null))))
    }

    /// The result of a reserved action, once it ran.
    pub async fn settle_action(&self, slot: i64, result: &str) -> Result<()> {
        self.write(
            "UPDATE audit SET result = $1 WHERE id = $2",
            &[Arg::Text(result), Arg::Int(slot)],
        )
        .await?;
        Ok(())
    }

    /// The latest write to a target by another incident: (time, incident id).
    pub async fn last_action_on(
        &self,
        target: &str,
        excluding_incident: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT at, incident_id FROM audit WHERE target = $1 AND incident_id != $2 AND verb != 'revert'
                   AND cluster = COALESCE((SELECT cluster FROM incidents WHERE id = $2), '') ORDER BY id DESC LIMIT 1",
            )
            .bind(target)
            .bind(excluding_incident)
            .fetch_optional(p)
            .await?
        }))
    }
}
