//! SQLite memory: incidents and their transitions, episodes, lessons, strategies, audit. WAL mode; every state
//! transition is committed before the side effect it announces.

mod ingest;
mod rows;
mod views;

pub use rows::{
    AuditEntry, Day, Episode, IncidentDetail, IncidentSummary, LearnedValue, LlmCall, Statistics,
    Strategy, Transition, TransitionEvent, Workload,
};

use crate::metrics::Counters;
use chrono::Utc;
use reflexion_core::IncidentState;
use reflexion_core::strategy::PlanSource;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("incident {id} cannot move from {from} to {to}")]
    IllegalMove {
        id: String,
        from: IncidentState,
        to: IncidentState,
    },
    #[error("incident {0} was moved by another writer")]
    Conflict(String),
    #[error("incident {0} does not exist")]
    NoIncident(String),
    #[error("stored value: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, DbError>;

#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
    counters: std::sync::Arc<Counters>,
    /// Writes go one at a time through this lock. SQLite has one writer; a connection that finds the write lock
    /// taken sleeps in SQLite's busy handler (1, 2, 5, 10, ... 100 ms steps), which under a stream of reports was
    /// most of a report's latency. Queued here, the next writer starts the moment the last one commits.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Reports waiting for the report writer (`ingest`).
    ingest: ingest::Queue,
}

/// A write transaction holding the writer lock until it commits or is dropped.
pub(crate) struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _writer: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTx {
    async fn begin(
        pool: &SqlitePool,
        writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Self> {
        let writer = writer.clone().lock_owned().await;
        Ok(WriteTx {
            tx: pool.begin_with("BEGIN IMMEDIATE").await?,
            _writer: writer,
        })
    }

    pub(crate) async fn commit(self) -> Result<()> {
        Ok(self.tx.commit().await?)
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An incident row, as the engine needs it.
#[derive(Debug, Clone)]
pub struct Incident {
    pub id: String,
    /// The cluster the report came from ('' for an incident stored before clusters were named).
    pub cluster: String,
    pub namespace: String,
    pub pod_name: String,
    pub workload_kind: String,
    pub workload_name: String,
    pub error_type: String,
    pub signature: String,
    pub state: IncidentState,
    pub trials: i64,
    pub report: Value,
}

pub struct NewIncident<'a> {
    pub cluster: &'a str,
    pub namespace: &'a str,
    pub pod_name: &'a str,
    pub workload_kind: &'a str,
    pub workload_name: &'a str,
    pub error_type: &'a str,
    pub signature: &'a str,
    pub idempotency_key: Option<&'a str>,
    pub report: &'a Value,
    /// When the watcher saw the failure.
    pub detected_at: Option<&'a str>,
}

pub struct NewEpisode<'a> {
    pub incident: &'a Incident,
    pub trial: i64,
    pub signature: &'a str,
    pub strategy_id: &'a str,
    pub source: PlanSource,
    pub action: &'a Value,
    pub command: &'a str,
    pub rationale: &'a str,
    pub dry_run: &'a Value,
    pub execution: &'a Value,
    pub verification: &'a Value,
    pub success: bool,
    /// Not verified, but it removed the cause it was meant to fix and was kept: the strategy is credited for it.
    pub progress: bool,
    pub reverted: bool,
    pub reflection: &'a str,
    pub lessons: &'a [String],
    pub duration_ms: i64,
    /// The LLM calls behind the plan (null when it did not come from the model).
    pub llm: &'a Value,
}

/// One LLM call, as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LlmCallRecord {
    pub trial: i64,
    pub model: String,
    pub prompt: String,
    pub response: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub latency_ms: i64,
    /// `accepted`, or why the answer was refused or the call failed.
    pub outcome: String,
}

/// Move an incident to `to` and record the transition, inside the caller's transaction: only a move the state
/// machine allows, and by compare-and-set on the state it leaves, so that of two writers only one moves it.
async fn apply_transition(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    to: IncidentState,
    note: &str,
) -> Result<()> {
    let row = sqlx::query("SELECT state FROM incidents WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| DbError::NoIncident(id.to_string()))?;
    let from = state_of(&row)?;
    if !from.can_move_to(to) {
        return Err(DbError::IllegalMove {
            id: id.to_string(),
            from,
            to,
        });
    }
    let ts = now();
    let moved =
        sqlx::query("UPDATE incidents SET state = ?, updated_at = ? WHERE id = ? AND state = ?")
            .bind(to.as_str())
            .bind(&ts)
            .bind(id)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await?;
    if moved.rows_affected() != 1 {
        return Err(DbError::Conflict(id.to_string()));
    }
    insert_transition(conn, id, &ts, to, note).await
}

fn state_of(row: &sqlx::sqlite::SqliteRow) -> Result<IncidentState> {
    let s: String = row.try_get("state")?;
    s.parse()
        .map_err(|e: reflexion_core::incident::UnknownState| DbError::Corrupt(e.to_string()))
}

/// The states SQL lists as `IN (...)`.
fn sql_states(pick: impl Fn(IncidentState) -> bool) -> String {
    IncidentState::ALL
        .into_iter()
        .filter(|s| pick(*s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn insert_transition(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    ts: &str,
    state: IncidentState,
    note: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO incident_transitions (incident_id, at, state, note) VALUES (?, ?, ?, ?)",
    )
    .bind(id)
    .bind(ts)
    .bind(state.as_str())
    .bind(note)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Db {
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("../../migrations").run(&pool).await?;
        let (ingest, queue) = tokio::sync::mpsc::channel(4096);
        let db = Self {
            pool,
            counters: Default::default(),
            writer: Default::default(),
            ingest,
        };
        db.start_ingest(queue);
        Ok(db)
    }

    /// A write transaction that takes the write lock at BEGIN: a deferred one that reads first fails with
    /// SQLITE_BUSY (no waiting) when another connection wrote in between, which under load turned into 500s.
    async fn begin_write(&self) -> Result<WriteTx> {
        WriteTx::begin(&self.pool, &self.writer).await
    }

    /// One statement, written under the writer lock.
    async fn write<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<sqlx::sqlite::SqliteQueryResult> {
        let mut tx = self.begin_write().await?;
        let r = q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// What this process did, for Prometheus.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Rows stored before clusters were named ('') belong to the one cluster a single-cluster API serves: name
    /// them, so that its open incidents still hold their workloads. Returns the incidents adopted.
    pub async fn adopt_unnamed(&self, cluster: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("UPDATE incidents SET cluster = ? WHERE cluster = ''")
            .bind(cluster)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in ["audit", "lessons"] {
            // The table names are this list's, never input.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET cluster = ? WHERE cluster = ''"
            )))
            .bind(cluster)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        let row = sqlx::query("SELECT * FROM incidents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Incident {
            state: state_of(&r)?,
            id: r.get("id"),
            cluster: r.get("cluster"),
            namespace: r.get("namespace"),
            pod_name: r.get("pod_name"),
            workload_kind: r.get("workload_kind"),
            workload_name: r.get("workload_name"),
            error_type: r.get("error_type"),
            signature: r.get("signature"),
            trials: r.get("trials"),
            report: serde_json::from_str(r.get::<&str, _>("report")).unwrap_or(Value::Null),
        }))
    }

    pub async fn transition(&self, id: &str, state: IncidentState, note: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        apply_transition(&mut tx, id, state, note).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_evidence(&self, id: &str, signature: &str, evidence: &Value) -> Result<()> {
        self.write(
            sqlx::query(
                "UPDATE incidents SET evidence = ?, signature = ?, updated_at = ? WHERE id = ?",
            )
            .bind(evidence.to_string())
            .bind(signature)
            .bind(now())
            .bind(id),
        )
        .await?;
        Ok(())
    }

    pub async fn set_outcome(&self, id: &str, outcome: &str) -> Result<()> {
        self.write(
            sqlx::query("UPDATE incidents SET outcome = ? WHERE id = ?")
                .bind(outcome)
                .bind(id),
        )
        .await?;
        Ok(())
    }

    /// The final state and its outcome, in one transaction.
    pub async fn finish(&self, id: &str, state: IncidentState, outcome: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE incidents SET outcome = ? WHERE id = ?")
            .bind(outcome)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        apply_transition(&mut tx, id, state, outcome).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Park an incident until an operator approves or rejects `plan`.
    pub async fn await_approval<P: serde::Serialize>(
        &self,
        id: &str,
        plan: &P,
        note: &str,
    ) -> Result<()> {
        let plan = serde_json::to_string(plan).map_err(|e| DbError::Corrupt(e.to_string()))?;
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE incidents SET pending_plan = ? WHERE id = ?")
            .bind(plan)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        apply_transition(&mut tx, id, IncidentState::AwaitingApproval, note).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Atomically take the pending plan of an incident awaiting approval, moving it to `next_state`. `None` when the
    /// incident is not awaiting approval (already decided, or never asked); `Some(Err(why))` when the stored plan
    /// cannot be read as a `P`.
    pub async fn take_pending_plan<P: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        next_state: IncidentState,
        note: &str,
    ) -> Result<Option<std::result::Result<P, String>>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT pending_plan FROM incidents WHERE id = ? AND state = 'awaiting_approval'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let plan: Option<String> = row.get("pending_plan");
        sqlx::query("UPDATE incidents SET pending_plan = NULL WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        apply_transition(&mut tx, id, next_state, note).await?;
        tx.commit().await?;
        Ok(Some(match plan {
            Some(p) => serde_json::from_str(&p).map_err(|e| e.to_string()),
            None => Err("no plan was stored".into()),
        }))
    }

    /// Incidents a restart left in flight.
    pub async fn unfinished(&self) -> Result<Vec<(String, IncidentState)>> {
        let q = format!(
            "SELECT id, state FROM incidents WHERE state IN ({}) ORDER BY created_at",
            sql_states(IncidentState::in_flight)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.get("id"), state_of(r)?)))
            .collect()
    }

    pub async fn audit(
        &self,
        incident_id: &str,
        verb: &str,
        target: &str,
        detail: &Value,
        result: &str,
    ) -> Result<()> {
        self.write(sqlx::query("INSERT INTO audit (at, incident_id, verb, target, detail, result, cluster)
                                VALUES (?1, ?2, ?3, ?4, ?5, ?6, COALESCE((SELECT cluster FROM incidents WHERE id = ?2), ''))")
            .bind(now())
            .bind(incident_id)
            .bind(verb)
            .bind(target)
            .bind(detail.to_string())
            .bind(result)
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
    ) -> Result<std::result::Result<i64, String>> {
        let hour_ago = (Utc::now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut tx = self.begin_write().await?;
        let count = async |tx: &mut sqlx::SqliteConnection, target: Option<&str>| {
            // The whole fleet's actions count against the hourly budget; a workload's, in its own cluster only.
            let row = sqlx::query("SELECT COUNT(*) AS n FROM audit WHERE at >= ?1 AND verb != 'revert'
                                   AND (?2 IS NULL OR (target = ?2 AND cluster = COALESCE((SELECT cluster FROM incidents WHERE id = ?3), '')))")
                .bind(&hour_ago)
                .bind(target)
                .bind(incident_id)
                .fetch_one(&mut *tx)
                .await?;
            Ok::<_, DbError>(u32::try_from(row.get::<i64, _>("n")).unwrap_or(u32::MAX))
        };
        let total = count(&mut tx, None).await?;
        let on_target = count(&mut tx, Some(target)).await?;
        if let Err(why) = budget.check(total, on_target) {
            return Ok(Err(why));
        }
        let id = sqlx::query("INSERT INTO audit (at, incident_id, verb, target, detail, result, cluster)
                              VALUES (?1, ?2, ?3, ?4, ?5, 'reserved', COALESCE((SELECT cluster FROM incidents WHERE id = ?2), ''))")
            .bind(now())
            .bind(incident_id)
            .bind(verb)
            .bind(target)
            .bind(detail.to_string())
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        tx.commit().await?;
        Counters::add(&self.counters.cluster_writes, 1);
        Ok(Ok(id))
    }

    /// The incident's action that was reserved and never settled: a write whose answer a crash lost.
    pub async fn unsettled_action(&self, incident_id: &str) -> Result<Option<(i64, Value)>> {
        let row = sqlx::query(
            "SELECT id, detail FROM audit WHERE incident_id = ? AND result = 'reserved' ORDER BY id DESC LIMIT 1",
        )
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| {
            let detail = serde_json::from_str(r.get::<&str, _>("detail")).unwrap_or(Value::Null);
            (r.get("id"), detail)
        }))
    }

    /// The result of a reserved action, once it ran.
    pub async fn settle_action(&self, slot: i64, result: &str) -> Result<()> {
        self.write(
            sqlx::query("UPDATE audit SET result = ? WHERE id = ?")
                .bind(result)
                .bind(slot),
        )
        .await?;
        Ok(())
    }

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
        self.write(sqlx::query(
            "INSERT INTO strategies (id, signature_class, error_type, action, template, description, source, created_at, payload)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (signature_class, template) DO NOTHING",
        )
        .bind(&id)
        .bind(signature)
        .bind(error_type)
        .bind(action)
        .bind(template)
        .bind(description)
        .bind(source.as_str())
        .bind(now())
        .bind(payload.map(Value::to_string))
        )
        .await?;
        let row =
            sqlx::query("SELECT id FROM strategies WHERE signature_class = ? AND template = ?")
                .bind(signature)
                .bind(template)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.get("id"))
    }

    /// Record a trial: the episode, its lessons, the strategy's statistics and the incident's trial count, in one
    /// transaction.
    pub async fn record_episode(&self, e: &NewEpisode<'_>) -> Result<String> {
        let id = format!("episode_{}", uuid::Uuid::new_v4().simple());
        let ts = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO episodes (id, incident_id, trial, created_at, namespace, pod_name, error_type, signature, strategy_id, source,
                                   action, command, rationale, dry_run, execution, verification, success, reverted, reflection, duration_ms, llm)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&e.incident.id)
        .bind(e.trial)
        .bind(&ts)
        .bind(&e.incident.namespace)
        .bind(&e.incident.pod_name)
        .bind(&e.incident.error_type)
        .bind(e.signature)
        .bind(e.strategy_id)
        .bind(e.source.as_str())
        .bind(e.action.to_string())
        .bind(e.command)
        .bind(e.rationale)
        .bind(e.dry_run.to_string())
        .bind(e.execution.to_string())
        .bind(e.verification.to_string())
        .bind(e.success)
        .bind(e.reverted)
        .bind(e.reflection)
        .bind(e.duration_ms)
        .bind((!e.llm.is_null()).then(|| e.llm.to_string()))
        .execute(&mut *tx)
        .await?;
        for lesson in e.lessons {
            sqlx::query("INSERT INTO lessons (episode_id, signature, text, verified_outcome, created_at, cluster) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(&id)
                .bind(e.signature)
                .bind(lesson)
                .bind(e.success)
                .bind(&ts)
                .bind(&e.incident.cluster)
                .execute(&mut *tx)
                .await?;
        }
        let (s, f) = if e.success || e.progress {
            (1, 0)
        } else {
            (0, 1)
        };
        sqlx::query("UPDATE strategies SET successes = successes + ?, failures = failures + ?, usage_count = usage_count + 1, last_used = ? WHERE id = ?")
            .bind(s)
            .bind(f)
            .bind(&ts)
            .bind(e.strategy_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE incidents SET trials = ?, updated_at = ? WHERE id = ?")
            .bind(e.trial)
            .bind(&ts)
            .bind(&e.incident.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Counters::add(&self.counters.episodes, 1);
        Counters::add(&self.counters.episodes_successful, u64::from(e.success));
        Ok(id)
    }

    /// The commands of an incident's trials that were not verified but made progress and were kept, in order.
    pub async fn kept_changes(&self, incident: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT command, verification FROM episodes WHERE incident_id = ? AND NOT success AND NOT reverted ORDER BY trial, created_at",
        )
        .bind(incident)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|r| {
                serde_json::from_str::<Value>(&r.get::<String, _>("verification"))
                    .is_ok_and(|v| v["progress"] == "progress")
            })
            .map(|r| r.get::<String, _>("command"))
            .collect())
    }

    /// The actions an incident's trials ran, in order (for an approved trial that continues the incident).
    pub async fn episode_actions(&self, incident: &str) -> Result<Vec<Value>> {
        let rows = sqlx::query(
            "SELECT action FROM episodes WHERE incident_id = ? ORDER BY trial, created_at",
        )
        .bind(incident)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| serde_json::from_str(&r.get::<String, _>("action")).ok())
            .collect())
    }

    /// (successes, failures) of the strategy for a signature class and template; (0, 0) if never used.
    pub async fn strategy_record(&self, signature: &str, template: &str) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT successes, failures FROM strategies WHERE signature_class = ? AND template = ?",
        )
        .bind(signature)
        .bind(template)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|r| {
                (
                    r.get::<i64, _>("successes").max(0) as u64,
                    r.get::<i64, _>("failures").max(0) as u64,
                )
            })
            .unwrap_or((0, 0)))
    }

    /// Verified strategies the LLM proposed for a signature class: (template, the action to reuse, successes,
    /// failures), best first.
    pub async fn llm_strategies(
        &self,
        signature: &str,
    ) -> Result<Vec<(String, Option<Value>, u64, u64)>> {
        let rows = sqlx::query(
            "SELECT template, payload, successes, failures FROM strategies
             WHERE signature_class = ? AND source = 'llm' AND successes > 0
             ORDER BY (successes + 1.0) / (successes + failures + 2.0) DESC, last_used DESC",
        )
        .bind(signature)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let template = r.get::<String, _>("template");
                // Before payloads, the action was the template itself: `llm:{json}`.
                let payload = r
                    .get::<Option<String>, _>("payload")
                    .or_else(|| template.strip_prefix("llm:").map(String::from))
                    .and_then(|p| serde_json::from_str(&p).ok());
                (
                    template,
                    payload,
                    r.get::<i64, _>("successes").max(0) as u64,
                    r.get::<i64, _>("failures").max(0) as u64,
                )
            })
            .collect())
    }

    pub async fn record_llm_call(&self, incident_id: &str, c: &LlmCallRecord) -> Result<()> {
        self.write(sqlx::query(
            "INSERT INTO llm_calls (incident_id, trial, at, model, prompt, response, prompt_tokens, completion_tokens, latency_ms, outcome)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(incident_id)
        .bind(c.trial)
        .bind(now())
        .bind(&c.model)
        .bind(&c.prompt)
        .bind(&c.response)
        .bind(c.prompt_tokens)
        .bind(c.completion_tokens)
        .bind(c.latency_ms)
        .bind(&c.outcome)
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
        let row = sqlx::query(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) AS n FROM llm_calls
             WHERE (?1 IS NULL OR incident_id = ?1) AND (?2 IS NULL OR at >= ?2)",
        )
        .bind(incident)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>("n").max(0) as u64)
    }

    /// The latest write to a target by another incident: (time, incident id).
    pub async fn last_action_on(
        &self,
        target: &str,
        excluding_incident: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT at, incident_id FROM audit WHERE target = ?1 AND incident_id != ?2 AND verb != 'revert'
               AND cluster = COALESCE((SELECT cluster FROM incidents WHERE id = ?2), '') ORDER BY id DESC LIMIT 1",
        )
        .bind(target)
        .bind(excluding_incident)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get("at"), r.get("incident_id"))))
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
        self.write(sqlx::query(
            "INSERT INTO learned_values (signature, namespace, workload_kind, workload_name, key, value, episode_id, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (signature, namespace, workload_kind, workload_name, key)
             DO UPDATE SET value = excluded.value, episode_id = excluded.episode_id, updated_at = excluded.updated_at",
        )
        .bind(signature)
        .bind(ns)
        .bind(kind)
        .bind(name)
        .bind(key)
        .bind(value)
        .bind(episode_id)
        .bind(now())
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
        let row = sqlx::query(
            "SELECT value, episode_id FROM learned_values WHERE signature = ? AND namespace = ? AND workload_kind = ? AND workload_name = ? AND key = ?",
        )
        .bind(signature)
        .bind(ns)
        .bind(kind)
        .bind(name)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get("value"), r.get("episode_id"))))
    }

    /// Up to `limit` lessons for a signature, newest first (at most three go into any prompt, as in the paper),
    /// from every cluster: each says which cluster taught it.
    pub async fn lessons(&self, signature: &str, limit: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT CASE cluster WHEN '' THEN text ELSE text || ' (learned on cluster ' || cluster || ')' END AS text
                         FROM lessons WHERE signature = ? ORDER BY id DESC LIMIT ?")
                .bind(signature)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|r| r.get("text")).collect())
    }

    /// Delete episodes (and their lessons) and/or strategies. Incidents and the audit log are kept: they are the
    /// record of what was done to the cluster, not learned memory.
    pub async fn clear(&self, episodes: bool, strategies: bool) -> Result<Value> {
        let mut tx = self.begin_write().await?;
        let (mut e, mut l, mut s) = (0, 0, 0);
        if episodes {
            l = sqlx::query("DELETE FROM lessons")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            e = sqlx::query("DELETE FROM episodes")
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if strategies {
            s = sqlx::query("DELETE FROM strategies")
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // Learned values are part of what strategies learned.
            sqlx::query("DELETE FROM learned_values")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(json!({"episodes": e, "lessons": l, "strategies": s}))
    }
}
