//! Storing reports: group commit. Reports that arrive together are stored in one write transaction, by a handful of
//! set-wise statements for the whole batch (what exists for each report's key and workload is read once; each
//! report then sees the ones before it in arrival order: idempotency keys, one open incident per workload). A
//! statement through sqlx's SQLite driver is a round trip to its worker thread, and seven of them per report were
//! most of what ingest cost; a batch now takes two (BEGIN with the read, the inserts with the COMMIT), where taking
//! a pooled connection, BEGIN, the read, two inserts and COMMIT took six. On PostgreSQL the batch is one call of a
//! function that decides the same way (`reflexion_store_reports`, in its migrations): one round trip, where separate
//! statements took four. Should the batch fail, each report is stored again in its own savepoint, so one bad report
//! leaves the others stored.

use super::backend::{Arg, Pool, Scope, WRITER_LOCK, WriteTx, bind_all, key_lock, on_conn};
use super::{Db, DbError, NewIncident, Result, insert_transition, now, sql_states};
use crate::metrics::Counters;
use reflexion_core::IncidentState;
use serde_json::json;
use sqlx::pool::PoolConnection;
use std::collections::HashMap;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Reports stored in one transaction, at most.
const MAX_BATCH: usize = 256;

/// A report waiting to be stored, owned so it can cross to the writer task.
pub(super) struct Pending {
    cluster: String,
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
            cluster: n.cluster.into(),
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

    /// The writer task: take what is queued, store it in one transaction, answer each. On PostgreSQL it runs on a
    /// thread of its own with its own connections: a batch is a few round trips, and on the service's runtime each
    /// answer waited for a worker thread busy with the engine (the backend sat `idle in transaction` most of a
    /// batch); SQLite's driver has a thread per connection already.
    pub(super) fn start_ingest(&self, mut queue: mpsc::Receiver<Pending>, own: Option<Pool>) {
        // The pool and the writer lock, not the Db: the task ends when the last Db (and its sender) is dropped.
        let (pool, writer, counters) = (
            own.clone().unwrap_or_else(|| self.pool.clone()),
            self.writer.clone(),
            self.counters.clone(),
        );
        let work = async move {
            // Open a connection before the first report, not while it waits (TLS and authentication take a while),
            // and keep it: the pool pings a connection as it is taken and again as it is given back, two round trips
            // per batch besides the batch's own.
            let mut held = Held::default();
            if let Pool::Postgres(p) = &pool {
                match p.acquire().await {
                    Ok(c) => held.postgres = Some(c),
                    Err(e) => tracing::warn!(error = %e, "the report writer could not connect yet"),
                }
            }
            while let Some(first) = queue.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queue.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                match store_batch(&pool, &mut held, &writer, &counters, &batch).await {
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
        };
        if own.is_some() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(rt) => {
                    let spawned = std::thread::Builder::new()
                        .name("report-writer".into())
                        .spawn(move || rt.block_on(work));
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "the report writer's thread did not start");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no runtime for the report writer; it shares the service's");
                }
            }
        }
        tokio::spawn(work);
    }
}

/// The report writer's own connection, kept between batches: taking one from the pool pings it first (a round trip
/// to the server, or to SQLite's worker thread). One that failed is let go.
#[derive(Default)]
struct Held {
    postgres: Option<PoolConnection<sqlx::Postgres>>,
    sqlite: Option<PoolConnection<sqlx::Sqlite>>,
}

async fn store_batch(
    pool: &Pool,
    held: &mut Held,
    writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    counters: &Counters,
    batch: &[Pending],
) -> Result<Vec<Result<(String, bool)>>> {
    let together = match pool {
        Pool::Postgres(p) => store_in_one_call(p, &mut held.postgres, counters, batch).await,
        Pool::Sqlite(p) => {
            let started = Instant::now();
            // Serial with every other write of this process, as `WriteTx` is.
            let _writer = writer.lock().await;
            let conn = match &mut held.sqlite {
                Some(c) => c,
                None => held.sqlite.insert(p.acquire().await?),
            };
            Counters::time(&counters.ingest_wait_us, started);
            let stored = store_together(conn, batch, counters).await;
            if stored.is_err() {
                // Its transaction may be open (BEGIN is sent with the lookup): closing the connection ends it.
                if let Some(c) = held.sqlite.take() {
                    let _ = c.close().await;
                }
            }
            stored
        }
    };
    match together {
        Ok(results) => {
            Counters::add(&counters.ingest_batches, 1);
            Counters::add(&counters.ingest_reports, batch.len() as u64);
            Ok(results.into_iter().map(Ok).collect())
        }
        Err(e) => {
            tracing::warn!(error = %e, reports = batch.len(), "storing reports together failed; storing each alone");
            store_each(pool, writer, batch).await
        }
    }
}

/// What a batch decides on, as advisory-lock keys, ascending and each once: each report's workload (one open
/// incident each) and idempotency key. Another replica's batch on the same workload or key waits; one on others does
/// not.
fn batch_keys(batch: &[Pending]) -> Vec<i64> {
    let mut keys = Vec::with_capacity(batch.len() * 2);
    for p in batch {
        keys.push(key_lock(&[
            "workload",
            &p.cluster,
            &p.namespace,
            &p.workload_kind,
            &p.workload_name,
        ]));
        if let Some(k) = &p.idempotency_key {
            keys.push(key_lock(&["key", k]));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// PostgreSQL: the batch in one call of `reflexion_store_reports` (its own transaction): the locks of `batch_keys`,
/// each report's decision as `store_together` makes it, the inserts. Its answer is checked against the batch. On the
/// connection `held`, opened when there is none; one that failed is let go (the pool closes a broken one).
async fn store_in_one_call(
    pool: &sqlx::PgPool,
    held: &mut Option<PoolConnection<sqlx::Postgres>>,
    counters: &Counters,
    batch: &[Pending],
) -> Result<Vec<(String, bool)>> {
    let started = Instant::now();
    let conn = match held {
        Some(c) => c,
        None => held.insert(pool.acquire().await?),
    };
    Counters::time(&counters.ingest_wait_us, started);
    let calling = Instant::now();
    let reports = serde_json::Value::Array(
        batch
            .iter()
            .map(|p| {
                json!([
                    new_incident_id(),
                    p.idempotency_key,
                    p.cluster,
                    p.namespace,
                    p.workload_kind,
                    p.workload_name,
                    p.pod_name,
                    p.error_type,
                    p.signature,
                    p.report,
                    p.detected_at.as_deref().and_then(micros_rounded_up)
                ])
            })
            .collect(),
    )
    .to_string();
    let open: Vec<&str> = IncidentState::ALL
        .into_iter()
        .filter(|s| s.is_open())
        .map(IncidentState::as_str)
        .collect();
    let rows: Vec<(i64, String, bool)> = match sqlx::query_as(
        "SELECT out_n, out_id, out_created FROM reflexion_store_reports(CAST($1 AS JSONB), $2, $3, $4, $5)",
    )
    .bind(&reports)
    .bind(now())
    .bind(batch_keys(batch))
    .bind(WRITER_LOCK)
    .bind(&open)
    .fetch_all(&mut **conn)
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            *held = None;
            return Err(e.into());
        }
    };
    Counters::time(&counters.ingest_insert_us, calling);
    let answered_in_order = rows.len() == batch.len()
        && rows
            .iter()
            .enumerate()
            .all(|(i, (n, _, _))| usize::try_from(*n) == Ok(i));
    if !answered_in_order {
        return Err(DbError::Corrupt(format!(
            "storing {} reports answered {} rows out of order",
            batch.len(),
            rows.len()
        )));
    }
    Ok(rows
        .into_iter()
        .map(|(_, id, created)| (id, created))
        .collect())
}

/// A detection time as microseconds since the epoch, rounded up: the stored times are whole milliseconds, so
/// "stored at or after it" reads the same as with the full precision `seen_before_last_finished` compares.
fn micros_rounded_up(detected: &str) -> Option<i64> {
    let nanos = chrono::DateTime::parse_from_rfc3339(detected)
        .ok()?
        .timestamp_nanos_opt()?;
    Some(nanos.div_euclid(1000) + i64::from(nanos.rem_euclid(1000) != 0))
}

/// A new incident's id, ordered by time (UUID version 7): a batch's ids go side by side at the end of every index
/// keyed by them (the incidents' own, the transitions' by incident), where random ones each dirtied a page of their
/// own in each — in alternating runs on both stores, inserting a batch took a third less.
fn new_incident_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// What the store holds for one report's key and workload, read before the batch is stored.
#[derive(Default)]
struct Found {
    by_key: Option<String>,
    open: Option<String>,
    last: Option<(String, String)>,
}

/// SQLite: the whole batch in two round trips to the connection's thread, on the writer's own connection: BEGIN
/// with the read of what exists, then (each report decided in arrival order) the inserts with the COMMIT. An error
/// leaves the transaction open: the caller closes the connection.
async fn store_together(
    c: &mut sqlx::SqliteConnection,
    batch: &[Pending],
    counters: &Counters,
) -> Result<Vec<(String, bool)>> {
    let looking = Instant::now();
    let asked = serde_json::Value::Array(
        batch
            .iter()
            .map(|p| {
                json!([
                    p.idempotency_key,
                    p.namespace,
                    p.workload_kind,
                    p.workload_name,
                    p.cluster
                ])
            })
            .collect(),
    );
    let open = sql_states(IncidentState::is_open);
    // The listed states are the enum's own names, never input.
    let lookup = format!(
        "BEGIN IMMEDIATE;
         WITH r AS (SELECT key AS i, value ->> 0 AS k, value ->> 1 AS ns, value ->> 2 AS kind, value ->> 3 AS name,
                           value ->> 4 AS c
                    FROM json_each($1) AS j)
         SELECT r.i,
           (SELECT id FROM incidents WHERE idempotency_key = r.k) AS by_key,
           (SELECT id FROM incidents WHERE cluster = r.c AND namespace = r.ns AND workload_kind = r.kind
              AND workload_name = r.name AND state IN ({open}) ORDER BY created_at LIMIT 1) AS open_id,
           (SELECT id FROM incidents WHERE cluster = r.c AND namespace = r.ns AND workload_kind = r.kind
              AND workload_name = r.name ORDER BY updated_at DESC LIMIT 1) AS last_id,
           (SELECT updated_at FROM incidents WHERE cluster = r.c AND namespace = r.ns AND workload_kind = r.kind
              AND workload_name = r.name ORDER BY updated_at DESC LIMIT 1) AS last_at
         FROM r"
    );
    type Looked = (
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Looked> = sqlx::query_as(sqlx::AssertSqlSafe(lookup))
        .bind(asked.to_string())
        .fetch_all(&mut *c)
        .await?;
    Counters::time(&counters.ingest_lookup_us, looking);
    let mut found: Vec<Found> = (0..batch.len()).map(|_| Found::default()).collect();
    for (i, by_key, open_id, last_id, last_at) in rows {
        let Some(f) = usize::try_from(i).ok().and_then(|i| found.get_mut(i)) else {
            return Err(DbError::Corrupt(format!(
                "batch lookup answered for report {i}"
            )));
        };
        f.by_key = by_key;
        f.open = open_id;
        f.last = last_id.zip(last_at);
    }
    let ts = now();
    let mut keys: HashMap<&str, String> = HashMap::new();
    let mut workloads: HashMap<(&str, &str, &str, &str), String> = HashMap::new();
    let (mut results, mut created) = (Vec::with_capacity(batch.len()), Vec::new());
    for (p, f) in batch.iter().zip(found) {
        let workload = (
            p.cluster.as_str(),
            p.namespace.as_str(),
            p.workload_kind.as_str(),
            p.workload_name.as_str(),
        );
        let key = p.idempotency_key.as_deref();
        let joined = key
            .and_then(|k| keys.get(k).cloned())
            .or(f.by_key)
            // A report earlier in this batch opened an incident for the workload: it is open.
            .or_else(|| workloads.get(&workload).cloned())
            .or(f.open)
            .or_else(|| seen_before_last_finished(p, f.last));
        if let Some(id) = joined {
            results.push((id, false));
            continue;
        }
        let id = new_incident_id();
        if let Some(k) = key {
            keys.insert(k, id.clone());
        }
        workloads.insert(workload, id.clone());
        created.push(json!([
            id,
            p.namespace,
            p.pod_name,
            p.workload_kind,
            p.workload_name,
            p.error_type,
            p.signature,
            p.idempotency_key,
            p.report,
            p.cluster
        ]));
        results.push((id, true));
    }
    if created.is_empty() {
        let committing = Instant::now();
        sqlx::query("COMMIT").execute(&mut *c).await?;
        Counters::time(&counters.ingest_commit_us, committing);
        return Ok(results);
    }
    let inserting = Instant::now();
    // `$1` and `$2` are the same values in each statement (numbered parameters).
    sqlx::query(
        "INSERT INTO incidents (id, created_at, updated_at, namespace, pod_name, workload_kind, workload_name, error_type, signature, state, idempotency_key, report, cluster)
         SELECT value ->> 0, $1, $1, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
                'reported', value ->> 7, value ->> 8, value ->> 9
         FROM json_each($2) AS j ORDER BY key;
         INSERT INTO incident_transitions (incident_id, at, state, note)
         SELECT value ->> 0, $1, 'reported', 'failure reported' FROM json_each($2) AS j ORDER BY key;
         COMMIT",
    )
    .bind(&ts)
    .bind(serde_json::Value::Array(created).to_string())
    .execute(&mut *c)
    .await?;
    Counters::time(&counters.ingest_insert_us, inserting);
    Ok(results)
}

/// A failure seen before the workload's last incident finished happened while that incident worked (a trial that
/// did not hold, and was reverted): it is part of that incident's story, not a new one.
fn seen_before_last_finished(p: &Pending, last: Option<(String, String)>) -> Option<String> {
    let seen = chrono::DateTime::parse_from_rfc3339(p.detected_at.as_deref()?).ok()?;
    let (id, finished) = last?;
    chrono::DateTime::parse_from_rfc3339(&finished)
        .is_ok_and(|f| f >= seen)
        .then_some(id)
}

/// Each report in its own savepoint: the slow path, when storing the batch together failed.
async fn store_each(
    pool: &Pool,
    writer: &std::sync::Arc<tokio::sync::Mutex<()>>,
    batch: &[Pending],
) -> Result<Vec<Result<(String, bool)>>> {
    let keys = batch_keys(batch);
    let mut tx = WriteTx::begin(pool, writer, Scope::Keys(&keys)).await?;
    let mut results = Vec::with_capacity(batch.len());
    for p in batch {
        tx.execute("SAVEPOINT report", &[]).await?;
        let r = open_in(&mut tx, p).await;
        if r.is_err() {
            tx.execute("ROLLBACK TO report", &[]).await?;
        }
        tx.execute("RELEASE report", &[]).await?;
        results.push(r);
    }
    tx.commit().await?;
    Ok(results)
}

/// One report, inside the caller's transaction.
async fn open_in(tx: &mut WriteTx, n: &Pending) -> Result<(String, bool)> {
    if let Some(key) = &n.idempotency_key {
        let id: Option<String> = on_conn!(tx, c => {
            sqlx::query_scalar("SELECT id FROM incidents WHERE idempotency_key = $1")
                .bind(key)
                .fetch_optional(&mut *c)
                .await?
        });
        if let Some(id) = id {
            return Ok((id, false));
        }
    }
    let workload = [
        Arg::Text(&n.cluster),
        Arg::Text(&n.namespace),
        Arg::Text(&n.workload_kind),
        Arg::Text(&n.workload_name),
    ];
    // One incident per workload at a time, whatever the signature: a second failure report while a fix is being
    // made or verified is the same workload's story (and verification sees it), never a second writer.
    // The listed states are the enum's own names, never input.
    let open = format!(
        "SELECT id FROM incidents WHERE cluster = $1 AND namespace = $2 AND workload_kind = $3 AND workload_name = $4
         AND state IN ({}) ORDER BY created_at LIMIT 1",
        sql_states(IncidentState::is_open)
    );
    let id: Option<String> = on_conn!(tx, c => {
        bind_all!(sqlx::query_scalar(sqlx::AssertSqlSafe(open)), &workload)
            .fetch_optional(&mut *c)
            .await?
    });
    if let Some(id) = id {
        return Ok((id, false));
    }
    let last: Option<(String, String)> = on_conn!(tx, c => {
        bind_all!(sqlx::query_as(
            "SELECT id, updated_at FROM incidents WHERE cluster = $1 AND namespace = $2 AND workload_kind = $3 AND workload_name = $4
             ORDER BY updated_at DESC LIMIT 1",
        ), &workload)
        .fetch_optional(&mut *c)
        .await?
    });
    if let Some(id) = seen_before_last_finished(n, last) {
        return Ok((id, false));
    }
    let id = new_incident_id();
    let ts = now();
    tx.execute(
        "INSERT INTO incidents (id, created_at, updated_at, namespace, pod_name, workload_kind, workload_name, error_type, signature, state, idempotency_key, report, cluster)
         VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8, 'reported', $9, $10, $11)",
        &[
            Arg::Text(&id),
            Arg::Text(&ts),
            Arg::Text(&n.namespace),
            Arg::Text(&n.pod_name),
            Arg::Text(&n.workload_kind),
            Arg::Text(&n.workload_name),
            Arg::Text(&n.error_type),
            Arg::Text(&n.signature),
            Arg::MaybeText(n.idempotency_key.as_deref()),
            Arg::Text(&n.report),
            Arg::Text(&n.cluster),
        ],
    )
    .await?;
    insert_transition(tx, &id, &ts, IncidentState::Reported, "failure reported").await?;
    Ok((id, true))
}
