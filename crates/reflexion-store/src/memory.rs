//! What the engine learns and recalls: episodes (one per trial) with their lessons, strategies and their verified
//! records, values a fix used per workload, and the LLM calls behind plans.

use super::backend::{Arg, bind_all, on_conn, on_pool};
use super::{Db, LlmCallRecord, NewEpisode, Result, now};
use crate::metrics::Counters;
use reflexion_core::strategy::PlanSource;
use serde_json::{Value, json};

impl Db {
    /// The strategy for a signature class and action template, created on first use.
    #[allow(clippy::too_many_arguments)]
    pub async fn strategy_for(
        &self,
        signature: &str,
        error_type: &str,
        action: &str,
        template: &str,
        description: &str,
        source: PlanSource,
        payload: Option<&Value>,
    ) -> Result<String> {
        let id = format!("strategy_{}", uuid::Uuid::new_v4().simple());
        let (ts, payload) = (now(), payload.map(Value::to_string));
        self.write(
            "INSERT INTO strategies (id, signature_class, error_type, action, template, description, source, created_at, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (signature_class, template) DO NOTHING",
            &[
                Arg::Text(&id),
                Arg::Text(signature),
                Arg::Text(error_type),
                Arg::Text(action),
                Arg::Text(template),
                Arg::Text(description),
                Arg::Text(source.as_str()),
                Arg::Text(&ts),
                Arg::MaybeText(payload.as_deref()),
            ],
        )
        .await?;
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT id FROM strategies WHERE signature_class = $1 AND template = $2")
                .bind(signature)
                .bind(template)
                .fetch_one(p)
                .await?
        }))
    }

    /// Record a trial: the episode, its lessons, the strategy's statistics and the incident's trial count, in one
    /// transaction.
    pub async fn record_episode(&self, e: &NewEpisode<'_>) -> Result<String> {
        let id = format!("episode_{}", uuid::Uuid::new_v4().simple());
        let ts = now();
        let (action, dry_run, execution, verification) = (
            e.action.to_string(),
            e.dry_run.to_string(),
            e.execution.to_string(),
            e.verification.to_string(),
        );
        let llm = (!e.llm.is_null()).then(|| e.llm.to_string());
        let episode = [
            Arg::Text(&id),
            Arg::Text(&e.incident.id),
            Arg::Int(e.trial),
            Arg::Text(&ts),
            Arg::Text(&e.incident.namespace),
            Arg::Text(&e.incident.pod_name),
            Arg::Text(&e.incident.error_type),
            Arg::Text(e.signature),
            Arg::Text(e.strategy_id),
            Arg::Text(e.source.as_str()),
            Arg::Text(&action),
            Arg::Text(e.command),
            Arg::Text(e.rationale),
            Arg::Text(&dry_run),
            Arg::Text(&execution),
            Arg::Text(&verification),
            Arg::Flag(e.success),
            Arg::Flag(e.reverted),
            Arg::Text(e.reflection),
            Arg::Int(e.duration_ms),
            Arg::MaybeText(llm.as_deref()),
        ];
        let (s, f) = if e.success || e.progress {
            (1, 0)
        } else {
            (0, 1)
        };
        let mut tx = self.begin_write().await?;
        on_conn!(tx, c => {
            bind_all!(sqlx::query(
                "INSERT INTO episodes (id, incident_id, trial, created_at, namespace, pod_name, error_type, signature, strategy_id, source,
                                       action, command, rationale, dry_run, execution, verification, success, reverted, reflection, duration_ms, llm)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
            ), &episode)
            .execute(&mut *c)
            .await?;
            for lesson in e.lessons {
                sqlx::query("INSERT INTO lessons (episode_id, signature, text, verified_outcome, created_at, cluster) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(&id)
                    .bind(e.signature)
                    .bind(lesson)
                    .bind(e.success)
                    .bind(&ts)
                    .bind(&e.incident.cluster)
                    .execute(&mut *c)
                    .await?;
            }
            sqlx::query("UPDATE strategies SET successes = successes + $1, failures = failures + $2, usage_count = usage_count + 1, last_used = $3 WHERE id = $4")
                .bind(s as i64)
                .bind(f as i64)
                .bind(&ts)
                .bind(e.strategy_id)
                .execute(&mut *c)
                .await?;
            sqlx::query("UPDATE incidents SET trials = $1, updated_at = $2 WHERE id = $3")
                .bind(e.trial)
                .bind(&ts)
                .bind(&e.incident.id)
                .execute(&mut *c)
                .await?;
        });
        tx.commit().await?;
        Counters::add(&self.counters.episodes, 1);
        Counters::add(&self.counters.episodes_successful, u64::from(e.success));
        Ok(id)
    }

    /// The commands of an incident's trials that were not verified but made progress and were kept, in order.
    pub async fn kept_changes(&self, incident: &str) -> Result<Vec<String>> {
        let rows: Vec<(String, Option<String>)> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT command, verification FROM episodes WHERE incident_id = $1 AND NOT success AND NOT reverted ORDER BY trial, created_at",
            )
            .bind(incident)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter(|(_, v)| {
                v.as_deref()
                    .and_then(|v| serde_json::from_str::<Value>(v).ok())
                    .is_some_and(|v| v["progress"] == "progress")
            })
            .map(|(command, _)| command)
            .collect())
    }

    /// The actions an incident's trials ran, in order (for an approved trial that continues the incident).
    pub async fn episode_actions(&self, incident: &str) -> Result<Vec<Value>> {
        let rows: Vec<String> = on_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT action FROM episodes WHERE incident_id = $1 ORDER BY trial, created_at")
                .bind(incident)
                .fetch_all(p)
                .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|a| serde_json::from_str(&a).ok())
            .collect())
    }

    /// (successes, failures) of the strategy for a signature class and template; (0, 0) if never used.
    pub async fn strategy_record(&self, signature: &str, template: &str) -> Result<(u64, u64)> {
        let row: Option<(i64, i64)> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT successes, failures FROM strategies WHERE signature_class = $1 AND template = $2",
            )
            .bind(signature)
            .bind(template)
            .fetch_optional(p)
            .await?
        });
        Ok(row
            .map(|(s, f)| (s.max(0) as u64, f.max(0) as u64))
            .unwrap_or((0, 0)))
    }

    /// Verified strategies the LLM proposed for a signature class: (template, the action to reuse, successes,
    /// failures), best first.
    pub async fn llm_strategies(
        &self,
        signature: &str,
    ) -> Result<Vec<(String, Option<Value>, u64, u64)>> {
        let rows: Vec<(String, Option<String>, i64, i64)> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT template, payload, successes, failures FROM strategies
                 WHERE signature_class = $1 AND source = 'llm' AND successes > 0
                 ORDER BY (successes + 1.0) / (successes + failures + 2.0) DESC, last_used DESC",
            )
            .bind(signature)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(template, payload, s, f)| {
                // Before payloads, the action was the template itself: `llm:{json}`.
                let payload = payload
                    .or_else(|| template.strip_prefix("llm:").map(String::from))
                    .and_then(|p| serde_json::from_str(&p).ok());
                (template, payload, s.max(0) as u64, f.max(0) as u64)
            })
            .collect())
    }

    pub async fn record_llm_call(&self, incident_id: &str, c: &LlmCallRecord) -> Result<()> {
        let ts = now();
        self.write(
            "INSERT INTO llm_calls (incident_id, trial, at, model, prompt, response, prompt_tokens, completion_tokens, latency_ms, outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[
                Arg::Text(incident_id),
                Arg::Int(c.trial),
                Arg::Text(&ts),
                Arg::Text(&c.model),
                Arg::Text(&c.prompt),
                Arg::MaybeText(c.response.as_deref()),
                Arg::Int(c.prompt_tokens),
                Arg::Int(c.completion_tokens),
                Arg::Int(c.latency_ms),
                Arg::Text(&c.outcome),
            ],
        )
        .await?;
        Counters::add(&self.counters.llm_calls, 1);
        Counters::add(
            &self.counters.llm_tokens,
            u64::try_from(c.prompt_tokens + c.completion_tokens).unwrap_or(0),
        );
        Ok(())
    }

    /// Tokens spent on LLM calls for one incident, or by all incidents since an RFC 3339 time.
    pub async fn llm_tokens(&self, incident: Option<&str>, since: Option<&str>) -> Result<u64> {
        let n: i64 = on_pool!(&self.pool, p => {
            sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS BIGINT) FROM llm_calls
                 WHERE ($1 IS NULL OR incident_id = $1) AND ($2 IS NULL OR at >= $2)",
            )
            .bind(incident)
            .bind(since)
            .fetch_one(p)
            .await?
        });
        Ok(n.max(0) as u64)
    }

    /// Remember a value a verified fix used for a workload.
    #[allow(clippy::too_many_arguments)]
    pub async fn learn_value(
        &self,
        signature: &str,
        ns: &str,
        kind: &str,
        name: &str,
        key: &str,
        value: &str,
        episode_id: &str,
    ) -> Result<()> {
        let ts = now();
        self.write(
            "INSERT INTO learned_values (signature, namespace, workload_kind, workload_name, key, value, episode_id, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (signature, namespace, workload_kind, workload_name, key)
             DO UPDATE SET value = excluded.value, episode_id = excluded.episode_id, updated_at = excluded.updated_at",
            &[
                Arg::Text(signature),
                Arg::Text(ns),
                Arg::Text(kind),
                Arg::Text(name),
                Arg::Text(key),
                Arg::Text(value),
                Arg::Text(episode_id),
                Arg::Text(&ts),
            ],
        )
        .await?;
        Ok(())
    }

    /// (value, episode it was learned in) for a workload and signature.
    pub async fn learned_value(
        &self,
        signature: &str,
        ns: &str,
        kind: &str,
        name: &str,
        key: &str,
    ) -> Result<Option<(String, String)>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT value, episode_id FROM learned_values
                 WHERE signature = $1 AND namespace = $2 AND workload_kind = $3 AND workload_name = $4 AND key = $5",
            )
            .bind(signature)
            .bind(ns)
            .bind(kind)
            .bind(name)
            .bind(key)
            .fetch_optional(p)
            .await?
        }))
    }

    /// Up to `limit` lessons for a signature, newest first (at most three go into any prompt, as in the paper),
    /// from every cluster: each says which cluster taught it.
    pub async fn lessons(&self, signature: &str, limit: i64) -> Result<Vec<String>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_scalar(
                "SELECT CASE cluster WHEN '' THEN text ELSE text || ' (learned on cluster ' || cluster || ')' END
                 FROM lessons WHERE signature = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(signature)
            .bind(limit)
            .fetch_all(p)
            .await?
        }))
    }

    /// Delete episodes (and their lessons) and/or strategies. Incidents and the audit log are kept: they are the
    /// record of what was done to the cluster, not learned memory.
    pub async fn clear(&self, episodes: bool, strategies: bool) -> Result<Value> {
        let mut tx = self.begin_write().await?;
        let (mut e, mut l, mut s) = (0, 0, 0);
        // The episodes of incidents still open are their trial trail (what was tried, what was kept as progress,
        // what a restart resumes from): only finished incidents' go.
        if episodes {
            l = tx
                .execute(
                    "DELETE FROM lessons WHERE episode_id IN (SELECT e.id FROM episodes e JOIN incidents i
                     ON i.id = e.incident_id WHERE i.state IN ('resolved', 'escalated', 'failed', 'dismissed'))",
                    &[],
                )
                .await?;
            e = tx
                .execute(
                    "DELETE FROM episodes WHERE incident_id IN (SELECT id FROM incidents
                     WHERE state IN ('resolved', 'escalated', 'failed', 'dismissed'))",
                    &[],
                )
                .await?;
        }
        if strategies {
            s = tx.execute("DELETE FROM strategies", &[]).await?;
            // Learned values are part of what strategies learned.
            tx.execute("DELETE FROM learned_values", &[]).await?;
        }
        tx.commit().await?;
        Ok(json!({"episodes": e, "lessons": l, "strategies": s}))
    }
}
