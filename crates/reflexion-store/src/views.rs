//! The store's read side for the REST API and the console: incidents with their trail, episodes with their
//! lessons, strategies with their scores, statistics and the learning curve. Bounded queries, typed rows.

use super::backend::on_pool;
use super::rows::{
    Day, DayCounts, Episode, EpisodeCounts, ErrorTypeCount, IncidentCounts, IncidentDetail,
    IncidentSummary, LearnedValue, LlmUse, Statistics, Strategy, TransitionEvent,
};
use super::{Db, Result};
use reflexion_core::IncidentState;
use std::collections::{BTreeMap, HashMap};

/// An incident's columns and who fixed it (the source of its verified trial).
const SUMMARY: &str = "SELECT *, (SELECT source FROM episodes e WHERE e.incident_id = incidents.id AND e.success ORDER BY e.trial DESC LIMIT 1) AS fixed_by FROM incidents";

impl Db {
    pub async fn strategies(&self, error_type: Option<&str>, limit: i64) -> Result<Vec<Strategy>> {
        let rows: Vec<Strategy> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT * FROM strategies WHERE ($1 IS NULL OR error_type = $1 OR signature_class = $1)
                 ORDER BY created_at LIMIT $2",
            )
            .bind(error_type)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(Strategy::scored).collect())
    }

    /// Learned values, most recently learned first.
    pub async fn learned_values(&self, limit: i64) -> Result<Vec<LearnedValue>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as("SELECT * FROM learned_values ORDER BY updated_at DESC LIMIT $1")
                .bind(limit)
                .fetch_all(p)
                .await?
        }))
    }

    /// Episodes, newest first, each with its lessons (read in one query for all of them).
    pub async fn episodes(
        &self,
        filter: Option<&str>,
        incident: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Episode>> {
        let mut episodes: Vec<Episode> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT *, COALESCE((SELECT cluster FROM incidents i WHERE i.id = episodes.incident_id), '') AS cluster
                 FROM episodes WHERE ($1 IS NULL OR error_type = $1 OR signature = $1) AND ($2 IS NULL OR incident_id = $2)
                 ORDER BY created_at DESC LIMIT $3",
            )
            .bind(filter)
            .bind(incident)
            .bind(limit)
            .fetch_all(p)
            .await?
        });
        if episodes.is_empty() {
            return Ok(episodes);
        }
        let ids = serde_json::Value::from(
            episodes
                .iter()
                .map(|e| e.id.clone())
                .collect::<Vec<String>>(),
        );
        // The subquery is the dialect's own table function, never input.
        let q = format!(
            "SELECT episode_id, text FROM lessons WHERE episode_id IN ({}) ORDER BY id",
            self.dialect().json_texts("$1")
        );
        let ids = ids.to_string();
        let lessons: Vec<(String, String)> = on_pool!(&self.pool, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(q)).bind(&ids).fetch_all(p).await?
        });
        let mut by_episode: HashMap<String, Vec<String>> = HashMap::new();
        for (episode, text) in lessons {
            by_episode.entry(episode).or_default().push(text);
        }
        for e in &mut episodes {
            e.lessons_learned = by_episode.remove(&e.id).unwrap_or_default();
        }
        Ok(episodes)
    }

    pub async fn incidents(&self, state: Option<&str>, limit: i64) -> Result<Vec<IncidentSummary>> {
        let q =
            format!("{SUMMARY} WHERE ($1 IS NULL OR state = $1) ORDER BY created_at DESC LIMIT $2");
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(q))
                .bind(state)
                .bind(limit)
                .fetch_all(p)
                .await?
        }))
    }

    /// One incident as listed, without its trail.
    pub async fn incident_summary(&self, id: &str) -> Result<Option<IncidentSummary>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMARY} WHERE id = $1")))
                .bind(id)
                .fetch_optional(p)
                .await?
        }))
    }

    /// The full trail of one incident: the report, evidence, transitions, every trial, every write.
    pub async fn incident_detail(&self, id: &str) -> Result<Option<IncidentDetail>> {
        let Some(mut v): Option<IncidentDetail> = on_pool!(&self.pool, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(format!("{SUMMARY} WHERE id = $1")))
                .bind(id)
                .fetch_optional(p)
                .await?
        }) else {
            return Ok(None);
        };
        on_pool!(&self.pool, p => {
            v.transitions = sqlx::query_as(
                "SELECT at, state, note FROM incident_transitions WHERE incident_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(p)
            .await?;
            v.audit = sqlx::query_as(
                "SELECT at, cluster, verb, target, detail, result FROM audit WHERE incident_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(p)
            .await?;
            v.llm_calls = sqlx::query_as("SELECT * FROM llm_calls WHERE incident_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(p)
                .await?;
        });
        v.episodes = self.episodes(None, Some(id), 1000).await?;
        v.episodes.reverse();
        Ok(Some(v))
    }

    /// Transitions of every incident after `after` (a transition id), oldest first, at most `limit`.
    pub async fn transitions_after(&self, after: i64, limit: i64) -> Result<Vec<TransitionEvent>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT id, incident_id, at, state, note FROM incident_transitions WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(p)
            .await?
        }))
    }

    /// The id of the newest transition (0 when there is none): where a feed that wants only new moves starts.
    pub async fn last_transition(&self) -> Result<i64> {
        self.count("SELECT MAX(id) FROM incident_transitions").await
    }

    async fn count(&self, sql: &'static str) -> Result<i64> {
        let n: Option<i64> = on_pool!(&self.pool, p => sqlx::query_scalar(sql).fetch_one(p).await?);
        Ok(n.unwrap_or(0))
    }

    async fn mean(&self, sql: &'static str) -> Result<Option<f64>> {
        Ok(on_pool!(&self.pool, p => sqlx::query_scalar(sql).fetch_one(p).await?))
    }

    /// Incidents by cluster and state.
    pub async fn incidents_by_cluster(&self) -> Result<Vec<(String, String, i64)>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT cluster, state, COUNT(*) FROM incidents GROUP BY cluster, state ORDER BY cluster, state",
            )
            .fetch_all(p)
            .await?
        }))
    }

    /// Counts that summarize what the engine did and learned, all from the database.
    pub async fn statistics(&self) -> Result<Statistics> {
        let by_state: Vec<(String, i64)> = on_pool!(&self.pool, p => {
            sqlx::query_as("SELECT state, COUNT(*) FROM incidents GROUP BY state")
                .fetch_all(p)
                .await?
        });
        let by_state: BTreeMap<String, i64> = by_state.into_iter().collect();
        let by_error_type: Vec<ErrorTypeCount> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT error_type, COUNT(*) AS incidents,
                        CAST(SUM(CASE WHEN state = 'resolved' THEN 1 ELSE 0 END) AS BIGINT) AS resolved,
                        CAST(AVG(CASE WHEN state = 'resolved' THEN trials END) AS DOUBLE PRECISION) AS mean_trials_to_fix
                 FROM incidents GROUP BY error_type ORDER BY incidents DESC",
            )
            .fetch_all(p)
            .await?
        });
        // Every state is counted once: open (worked on or awaiting approval), decided (resolved, escalated,
        // failed: what the success rate is over) or dismissed (nothing to fix).
        let count = |pick: fn(IncidentState) -> bool| -> i64 {
            by_state
                .iter()
                .filter(|(k, _)| k.parse::<IncidentState>().is_ok_and(pick))
                .map(|(_, n)| n)
                .sum()
        };
        let resolved = by_state.get("resolved").copied().unwrap_or(0);
        let decided = count(IncidentState::is_decided);
        let first_trial = self
            .count("SELECT COUNT(*) FROM incidents WHERE state = 'resolved' AND trials = 1")
            .await?;
        Ok(Statistics {
            incidents: IncidentCounts {
                total: by_state.values().sum(),
                open: count(IncidentState::is_open),
                decided,
                dismissed: count(|s| s == IncidentState::Dismissed),
                by_state: by_state.clone(),
                by_error_type,
            },
            success_rate: (decided > 0).then(|| resolved as f64 / decided as f64),
            mean_trials_to_fix: self
                .mean("SELECT CAST(AVG(trials) AS DOUBLE PRECISION) FROM incidents WHERE state = 'resolved'")
                .await?,
            first_trial_fix_rate: (resolved > 0).then(|| first_trial as f64 / resolved as f64),
            episodes: EpisodeCounts {
                total: self.count("SELECT COUNT(*) FROM episodes").await?,
                successful: self
                    .count("SELECT COUNT(*) FROM episodes WHERE success")
                    .await?,
                reverted: self
                    .count("SELECT COUNT(*) FROM episodes WHERE reverted")
                    .await?,
            },
            strategies: self.count("SELECT COUNT(*) FROM strategies").await?,
            lessons: self.count("SELECT COUNT(*) FROM lessons").await?,
            cluster_writes: self
                .count("SELECT COUNT(*) FROM audit WHERE verb != 'revert'")
                .await?,
            reverts: self
                .count("SELECT COUNT(*) FROM audit WHERE verb = 'revert'")
                .await?,
            llm: LlmUse {
                calls: self.count("SELECT COUNT(*) FROM llm_calls").await?,
                accepted: self
                    .count("SELECT COUNT(*) FROM llm_calls WHERE outcome = 'accepted'")
                    .await?,
                tokens: self
                    .count("SELECT CAST(SUM(prompt_tokens + completion_tokens) AS BIGINT) FROM llm_calls")
                    .await?,
                mean_latency_ms: self
                    .mean("SELECT CAST(AVG(latency_ms) AS DOUBLE PRECISION) FROM llm_calls")
                    .await?,
            },
        })
    }

    /// Per UTC day, oldest first: incidents, success rate, mean trials to fix, LLM calls per incident, and the
    /// share of fixed incidents that needed no LLM call. The curve a learning system should bend.
    pub async fn learning_progression(&self, days: i64) -> Result<Vec<Day>> {
        let rows: Vec<DayCounts> = on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT substr(i.created_at, 1, 10) AS day,
                        COUNT(*) AS incidents,
                        CAST(SUM(CASE WHEN i.state = 'resolved' THEN 1 ELSE 0 END) AS BIGINT) AS resolved,
                        CAST(SUM(CASE WHEN i.state IN ('resolved', 'escalated', 'failed') THEN 1 ELSE 0 END) AS BIGINT) AS finished,
                        CAST(AVG(CASE WHEN i.state = 'resolved' THEN i.trials END) AS DOUBLE PRECISION) AS trials,
                        CAST(SUM(COALESCE(c.calls, 0)) AS BIGINT) AS llm_calls,
                        CAST(SUM(CASE WHEN i.state = 'resolved' AND COALESCE(c.calls, 0) = 0 THEN 1 ELSE 0 END) AS BIGINT)
                          AS resolved_without_llm
                 FROM incidents i
                 LEFT JOIN (SELECT incident_id, COUNT(*) AS calls FROM llm_calls GROUP BY incident_id) c ON c.incident_id = i.id
                 GROUP BY substr(i.created_at, 1, 10) ORDER BY day DESC LIMIT $1",
            )
            .bind(days)
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().rev().map(Day::from).collect())
    }
}
