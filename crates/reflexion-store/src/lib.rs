//! The memory: incidents and their transitions, episodes, lessons, strategies, audit — on SQLite (WAL, the default)
//! or PostgreSQL (`backend`). Every state transition is committed before the side effect it announces.

mod actions;
mod alerts;
mod backend;
mod claims;
mod ingest;
mod memory;
pub mod metrics;
mod notify;
mod rows;
mod views;

pub use alerts::NewAlert;
pub use notify::{NewNotification, Notification, RevertEvent, now_ms};
pub use rows::{
    AlertRow, AuditEntry, Day, Doc, Episode, IncidentDetail, IncidentSummary, LearnedValue,
    LlmCall, Statistics, Strategy, Transition, TransitionEvent, Workload,
};

use crate::metrics::Counters;
pub use backend::Dialect;
use backend::{Arg, Pool, WriteTx, bind_all, on_conn, on_pool};
use chrono::Utc;
use reflexion_core::IncidentState;
use reflexion_core::strategy::PlanSource;
use serde_json::Value;
use sqlx::Row;

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

impl DbError {
    /// The database could not be reached (a pool timeout, a lost connection): the same write may pass later.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Sqlx(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}

pub type Result<T> = std::result::Result<T, DbError>;

#[derive(Clone)]
pub struct Db {
    pool: Pool,
    counters: std::sync::Arc<Counters>,
    /// SQLite: writes go one at a time through this lock. SQLite has one writer; a connection that finds the write
    /// lock taken sleeps in SQLite's busy handler (1, 2, 5, 10, ... 100 ms steps), which under a stream of reports
    /// was most of a report's latency. Queued here, the next writer starts the moment the last one commits.
    writer: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Reports waiting for the report writer (`ingest`).
    ingest: ingest::Queue,
}

fn now() -> String {
    ago(chrono::Duration::zero())
}

/// The stored timestamp of `d` before now.
fn ago(d: chrono::Duration) -> String {
    (Utc::now() - d).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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
async fn apply_transition(tx: &mut WriteTx, id: &str, to: IncidentState, note: &str) -> Result<()> {
    let state: Option<String> = on_conn!(tx, c => {
        sqlx::query_scalar("SELECT state FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
    });
    let from = parse_state(state.ok_or_else(|| DbError::NoIncident(id.to_string()))?)?;
    if !from.can_move_to(to) {
        return Err(DbError::IllegalMove {
            id: id.to_string(),
            from,
            to,
        });
    }
    let ts = now();
    let moved = on_conn!(tx, c => {
        sqlx::query("UPDATE incidents SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(to.as_str())
            .bind(&ts)
            .bind(id)
            .bind(from.as_str())
            .execute(&mut *c)
            .await?
            .rows_affected()
    });
    if moved != 1 {
        return Err(DbError::Conflict(id.to_string()));
    }
    insert_transition(tx, id, &ts, to, note).await
}

fn parse_state(s: String) -> Result<IncidentState> {
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
    tx: &mut WriteTx,
    id: &str,
    ts: &str,
    state: IncidentState,
    note: &str,
) -> Result<()> {
    let args = [
        Arg::Text(id),
        Arg::Text(ts),
        Arg::Text(state.as_str()),
        Arg::Text(note),
    ];
    on_conn!(tx, c => {
        bind_all!(
            sqlx::query("INSERT INTO incident_transitions (incident_id, at, state, note) VALUES ($1, $2, $3, $4)"),
            &args
        )
        .execute(&mut *c)
        .await?
            .rows_affected()
    });
    Ok(())
}

impl Db {
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = Pool::connect(url).await?;
        let (ingest, queue) = tokio::sync::mpsc::channel(4096);
        let db = Self {
            pool,
            counters: Default::default(),
            writer: Default::default(),
            ingest,
        };
        db.start_ingest(queue, db.pool.writer_pool(url)?);
        Ok(db)
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        self.pool.dialect()
    }

    /// A write transaction that takes the write lock at BEGIN: a deferred one that reads first fails with
    /// SQLITE_BUSY (no waiting) when another connection wrote in between, which under load turned into 500s.
    async fn begin_write(&self) -> Result<WriteTx> {
        self.begin_scoped(backend::Scope::All).await
    }

    /// A write transaction of one incident's row (see `Scope::Shared`).
    async fn begin_shared(&self) -> Result<WriteTx> {
        self.begin_scoped(backend::Scope::Shared).await
    }

    async fn begin_scoped(&self, scope: backend::Scope<'_>) -> Result<WriteTx> {
        let started = std::time::Instant::now();
        let tx = WriteTx::begin(&self.pool, &self.writer, scope).await?;
        Counters::add(&self.counters.write_txs, 1);
        Counters::time(&self.counters.write_wait_us, started);
        Ok(tx)
    }

    /// One statement that is a compare-and-set on its own (a claim): on PostgreSQL it runs alone, in autocommit,
    /// waiting for no lock — its `WHERE` is checked again against the row as committed when another writer got there
    /// first; on SQLite through the one writer, like every write.
    async fn write_atomic(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        match &self.pool {
            Pool::Postgres(p) => {
                Counters::add(&self.counters.write_txs, 1);
                Ok(bind_all!(sqlx::query(sql), args)
                    .execute(p)
                    .await?
                    .rows_affected())
            }
            Pool::Sqlite(_) => self.write(sql, args).await,
        }
    }

    /// One statement in its own shared write transaction (see `Scope::Shared`).
    async fn write_shared(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        self.write_one(backend::Scope::Shared, sql, args).await
    }

    /// One statement in its own write transaction; the rows it changed.
    async fn write(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        self.write_one(backend::Scope::All, sql, args).await
    }

    /// One statement in its own write transaction of `scope`. On SQLite the statement is a transaction of its own,
    /// and with the writer lock held no other connection of this process writes while it runs, so it cannot meet a
    /// stale snapshot (`SQLITE_BUSY`): one round trip to the connection's thread, where BEGIN, the statement and
    /// COMMIT took three, all holding the lock.
    async fn write_one(
        &self,
        scope: backend::Scope<'_>,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<u64> {
        if let Pool::Sqlite(p) = &self.pool {
            let started = std::time::Instant::now();
            let _writer = self.writer.lock().await;
            Counters::add(&self.counters.write_txs, 1);
            Counters::time(&self.counters.write_wait_us, started);
            return Ok(bind_all!(sqlx::query(sql), args)
                .execute(p)
                .await?
                .rows_affected());
        }
        let mut tx = self.begin_scoped(scope).await?;
        let n = tx.execute(sql, args).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// What this process did, for Prometheus.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Rows stored before clusters were named ('') belong to the one cluster a single-cluster API serves: name
    /// them, so that its open incidents still hold their workloads. Returns the incidents adopted.
    pub async fn adopt_unnamed(&self, cluster: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let mut adopted = 0;
        for (i, sql) in [
            "UPDATE incidents SET cluster = $1 WHERE cluster = ''",
            "UPDATE audit SET cluster = $1 WHERE cluster = ''",
            "UPDATE lessons SET cluster = $1 WHERE cluster = ''",
        ]
        .into_iter()
        .enumerate()
        {
            let n = on_conn!(tx, c => sqlx::query(sql).bind(cluster).execute(&mut *c).await?.rows_affected());
            if i == 0 {
                adopted = n;
            }
        }
        tx.commit().await?;
        Ok(adopted)
    }

    pub async fn ping(&self) -> Result<()> {
        on_pool!(&self.pool, p => sqlx::query("SELECT 1").execute(p).await?.rows_affected());
        Ok(())
    }

    pub async fn incident(&self, id: &str) -> Result<Option<Incident>> {
        on_pool!(&self.pool, p => {
            let row = sqlx::query("SELECT * FROM incidents WHERE id = $1")
                .bind(id)
                .fetch_optional(p)
                .await?;
            let Some(r) = row else { return Ok(None) };
            Ok(Some(Incident {
                state: parse_state(r.try_get("state")?)?,
                id: r.try_get("id")?,
                cluster: r.try_get("cluster")?,
                namespace: r.try_get("namespace")?,
                pod_name: r.try_get("pod_name")?,
                workload_kind: r.try_get("workload_kind")?,
                workload_name: r.try_get("workload_name")?,
                error_type: r.try_get("error_type")?,
                signature: r.try_get("signature")?,
                trials: r.try_get("trials")?,
                report: serde_json::from_str(r.try_get::<&str, _>("report")?).unwrap_or(Value::Null),
            }))
        })
    }

    pub async fn transition(&self, id: &str, state: IncidentState, note: &str) -> Result<()> {
        let mut tx = self.begin_shared().await?;
        apply_transition(&mut tx, id, state, note).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_evidence(&self, id: &str, signature: &str, evidence: &Value) -> Result<()> {
        let (evidence, ts) = (evidence.to_string(), now());
        self.write_shared(
            "UPDATE incidents SET evidence = $1, signature = $2, updated_at = $3 WHERE id = $4",
            &[
                Arg::Text(&evidence),
                Arg::Text(signature),
                Arg::Text(&ts),
                Arg::Text(id),
            ],
        )
        .await?;
        Ok(())
    }

    /// Who owns the incident's workload of record, and where its fixes land.
    pub async fn set_owner(&self, id: &str, owner: &Value) -> Result<()> {
        let owner = owner.to_string();
        self.write_shared(
            "UPDATE incidents SET owner = $1 WHERE id = $2",
            &[Arg::Text(&owner), Arg::Text(id)],
        )
        .await?;
        Ok(())
    }

    /// The Git change of the incident's latest trial (or the proposal waiting for approval).
    pub async fn set_git(&self, id: &str, git: &Value) -> Result<()> {
        let git = git.to_string();
        self.write_shared(
            "UPDATE incidents SET git = $1 WHERE id = $2",
            &[Arg::Text(&git), Arg::Text(id)],
        )
        .await?;
        Ok(())
    }

    pub async fn set_outcome(&self, id: &str, outcome: &str) -> Result<()> {
        self.write_shared(
            "UPDATE incidents SET outcome = $1 WHERE id = $2",
            &[Arg::Text(outcome), Arg::Text(id)],
        )
        .await?;
        Ok(())
    }

    /// The final state and its outcome, in one transaction.
    pub async fn finish(&self, id: &str, state: IncidentState, outcome: &str) -> Result<()> {
        let mut tx = self.begin_shared().await?;
        on_conn!(tx, c => {
            sqlx::query("UPDATE incidents SET outcome = $1 WHERE id = $2")
                .bind(outcome)
                .bind(id)
                .execute(&mut *c)
                .await?
            .rows_affected()
        });
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
        on_conn!(tx, c => {
            sqlx::query("UPDATE incidents SET pending_plan = $1 WHERE id = $2")
                .bind(&plan)
                .bind(id)
                .execute(&mut *c)
                .await?
            .rows_affected()
        });
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
        let plan: Option<Option<String>> = on_conn!(tx, c => {
            sqlx::query_scalar(
                "SELECT pending_plan FROM incidents WHERE id = $1 AND state = 'awaiting_approval'",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
        });
        let Some(plan) = plan else { return Ok(None) };
        on_conn!(tx, c => {
            sqlx::query("UPDATE incidents SET pending_plan = NULL WHERE id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
            .rows_affected()
        });
        apply_transition(&mut tx, id, next_state, note).await?;
        tx.commit().await?;
        Ok(Some(match plan {
            Some(p) => serde_json::from_str(&p).map_err(|e| e.to_string()),
            None => Err("no plan was stored".into()),
        }))
    }
}

/// A database URL fit for logs, errors and pages: its password (in the user info or a `password=` parameter)
/// replaced by `***`.
pub fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.to_ascii_lowercase().ends_with("password") => {
                        format!("{k}=***")
                    }
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

#[cfg(test)]
mod redaction_tests {
    #[test]
    fn a_database_urls_password_is_never_shown() {
        let cases = [
            ("sqlite://reflexion.db", "sqlite://reflexion.db"),
            (
                "postgres://app:s3cret@db:5432/reflexion",
                "postgres://app:***@db:5432/reflexion",
            ),
            (
                "postgresql://app:p@ss@w0rd@db/reflexion?sslmode=require",
                "postgresql://app:***@db/reflexion?sslmode=require",
            ),
            (
                "postgres://app@db/reflexion?password=s3cret&sslmode=verify-full",
                "postgres://app@db/reflexion?password=***&sslmode=verify-full",
            ),
            (
                "postgres://db/r?sslpassword=k&application_name=x",
                "postgres://db/r?sslpassword=***&application_name=x",
            ),
            ("postgres://app@db/reflexion", "postgres://app@db/reflexion"),
        ];
        for (url, want) in cases {
            assert_eq!(super::redacted_url(url), want, "{url}");
        }
    }
}
