//! Storing reports: group commit. Reports that arrive together wait for one write transaction together — each in
//! its own savepoint, in arrival order, so each sees the ones before it (idempotency keys, one open incident per
//! workload) and one that fails leaves the others stored. SQLite commits one transaction at a time; a commit per
//! report capped ingest at the commit rate, shared with the engine's own writes.

use super::{Db, DbError, NewIncident, Result, WriteTx, insert_transition, now, sql_states};
use reflexion_core::IncidentState;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};

/// Reports stored in one transaction, at most.
const MAX_BATCH: usize = 256;

/// A report waiting to be stored, owned so it can cross to the writer task.
pub(super) struct Pending {
    namespace: String,
    pod_name: String,
    workload_kind: String,
    workload_name: String,
    error_type: String,
    signature: String,
    idempotency_key: Option<String>,
    report: String,
    detected_at: Option<String>,
    reply: oneshot::Sender<Result<(String, bool)>>,
}

pub(super) type Queue = mpsc::Sender<Pending>;

impl Db {
    /// Create an incident, or return the one still open (reported .. verifying) for the same workload, or the one
    /// with the same idempotency key, or the workload's last one when the failure was seen before it finished.
    /// Returns (id, created).
    pub async fn open_incident(&self, n: &NewIncident<'_>) -> Result<(String, bool)> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            namespace: n.namespace.into(),
            pod_name: n.pod_name.into(),
            workload_kind: n.workload_kind.into(),
            workload_name: n.workload_name.into(),
            error_type: n.error_type.into(),
            signature: n.signature.into(),
            idempotency_key: n.idempotency_key.map(String::from),
            report: n.report.to_string(),
            detected_at: n.detected_at.map(String::from),
            reply,
        };
        if let Err(mpsc::error::SendError(p)) = self.ingest.send(pending).await {
            // No writer task (a runtime shutting down): store it alone.
            let mut tx = self.begin_write().await?;
            let r = open_in(&mut tx, &p).await?;
            tx.commit().await?;
            return Ok(r);
        }
        answer
            .await
            .map_err(|_| DbError::Corrupt("the report writer stopped".into()))?
    }

    /// The writer task: take what is queued, store it in one transaction, answer each.
    pub(super) fn start_ingest(&self, mut queue: mpsc::Receiver<Pending>) {
        // The pool and the writer lock, not the Db: the task ends when the last Db (and its sender) is dropped.
        let (pool, writer) = (self.pool.clone(), self.writer.clone());
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                match store_batch(&pool, &writer, &batch).await {
                    Ok(results) => {
                        for (p, r) in batch.into_iter().zip(results) {
                            let _ = p.reply.send(r);
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        for p in batch {
                            let _ = p.reply.send(Err(DbError::Corrupt(why.clone())));
                        }
                    }
                }
            }
        });
    }
}

async fn store_batch(
    pool: &sqlx::SqlitePool,
    writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    batch: &[Pending],
) -> Result<Vec<Result<(String, bool)>>> {
    let mut tx = WriteTx::begin(pool, writer).await?;
    let mut results = Vec::with_capacity(batch.len());
    for p in batch {
        sqlx::query("SAVEPOINT report").execute(&mut *tx).await?;
        let r = open_in(&mut tx, p).await;
        if r.is_err() {
            sqlx::query("ROLLBACK TO report").execute(&mut *tx).await?;
        }
        sqlx::query("RELEASE report").execute(&mut *tx).await?;
        results.push(r);
    }
    tx.commit().await?;
    Ok(results)
}

/// One report, inside the caller's transaction.
async fn open_in(conn: &mut sqlx::SqliteConnection, n: &Pending) -> Result<(String, bool)> {
    if let Some(key) = &n.idempotency_key
        && let Some(row) = sqlx::query("SELECT id FROM incidents WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?
    {
        return Ok((row.get("id"), false));
    }
    // One incident per workload at a time, whatever the signature: a second failure report while a fix is being
    // made or verified is the same workload's story (and verification sees it), never a second writer.
    let open = format!(
        "SELECT id FROM incidents WHERE namespace = ? AND workload_kind = ? AND workload_name = ?
         AND state IN ({}) ORDER BY created_at LIMIT 1",
        sql_states(IncidentState::is_open)
    );
    // The listed states are the enum's own names, never input.
    let q = sqlx::query(sqlx::AssertSqlSafe(open))
        .bind(&n.namespace)
        .bind(&n.workload_kind)
        .bind(&n.workload_name);
    if let Some(row) = q.fetch_optional(&mut *conn).await? {
        return Ok((row.get("id"), false));
    }
    // A failure seen before the workload's last incident finished happened while that incident worked (a trial
    // that did not hold, and was reverted): it is part of that incident's story, not a new one.
    if let Some(seen) = n
        .detected_at
        .as_deref()
        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
    {
        let last = sqlx::query(
            "SELECT id, updated_at FROM incidents WHERE namespace = ? AND workload_kind = ? AND workload_name = ?
             ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(&n.namespace)
        .bind(&n.workload_kind)
        .bind(&n.workload_name)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(row) = last {
            let finished: String = row.get("updated_at");
            if chrono::DateTime::parse_from_rfc3339(&finished).is_ok_and(|f| f >= seen) {
                return Ok((row.get("id"), false));
            }
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let ts = now();
    sqlx::query(
        "INSERT INTO incidents (id, created_at, updated_at, namespace, pod_name, workload_kind, workload_name, error_type, signature, state, idempotency_key, report)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'reported', ?, ?)",
    )
    .bind(&id)
    .bind(&ts)
    .bind(&ts)
    .bind(&n.namespace)
    .bind(&n.pod_name)
    .bind(&n.workload_kind)
    .bind(&n.workload_name)
    .bind(&n.error_type)
    .bind(&n.signature)
    .bind(&n.idempotency_key)
    .bind(&n.report)
    .execute(&mut *conn)
    .await?;
    insert_transition(conn, &id, &ts, IncidentState::Reported, "failure reported").await?;
    Ok((id, true))
}
