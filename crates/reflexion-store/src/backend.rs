//! The two databases the store runs on: SQLite (embedded, the default: one file, one process) and PostgreSQL (shared
//! by several replicas). One SQL text serves both where the dialects agree — `$1` placeholders, which SQLite reads
//! too — and the store's methods are written once: `on_pool!` / `on_conn!` expand a body for each driver, so each
//! runs on its own native types. Where the dialects differ, `Dialect` picks the text.

use super::Result;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::sync::Arc;

/// `on_pool!(pool, p => body)`: `body` once per driver, with `p` that driver's pool.
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            $crate::backend::Pool::Sqlite($p) => $body,
            $crate::backend::Pool::Postgres($p) => $body,
        }
    };
}

/// `on_conn!(tx, c => body)`: `body` once per driver, with `c` the transaction's connection of that driver.
macro_rules! on_conn {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx.conn() {
            $crate::backend::Conn::Sqlite($c) => $body,
            $crate::backend::Conn::Postgres($c) => $body,
        }
    };
}

/// A value bound to a statement written once for both drivers (`Db::write`, `bind_all!`).
#[derive(Clone, Copy)]
pub(crate) enum Arg<'a> {
    Text(&'a str),
    MaybeText(Option<&'a str>),
    Int(i64),
    Flag(bool),
}

/// `bind_all!(query, args)`: the query with each `Arg` bound in order.
macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match *a {
                $crate::backend::Arg::Text(s) => q.bind(s),
                $crate::backend::Arg::MaybeText(s) => q.bind(s),
                $crate::backend::Arg::Int(i) => q.bind(i),
                $crate::backend::Arg::Flag(b) => q.bind(b),
            };
        }
        q
    }};
}

#[derive(Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Every write transaction on PostgreSQL takes this transaction-scoped advisory lock first, so that writes are as
/// serial across replicas as SQLite's one writer makes them in one process: a budget counted and a slot reserved, an
/// incident moved, see no other writer in between. Reads never wait for it. A batch of reports takes it shared,
/// with an exclusive lock on each workload and idempotency key it touches (`Scope::Keys`): batches of different
/// replicas on different workloads are stored side by side, and each stays serial with every other write.
pub(crate) const WRITER_LOCK: i64 = 0x6b72_6566_6c78; // "krefl x"

/// What a write transaction locks on PostgreSQL.
pub(crate) enum Scope<'a> {
    /// Every other write: `WRITER_LOCK`, exclusive.
    All,
    /// `WRITER_LOCK` shared: one incident's own row moved by compare-and-set (a transition, its evidence). Such
    /// writes never wait for each other or for report batches, and stay serial with every exclusive write.
    Shared,
    /// `WRITER_LOCK` shared, then these keys (`key_lock`, each once: `ingest::batch_keys`) exclusively, in
    /// ascending order (the statement sorts them) so that two batches wanting the same keys never wait on each other
    /// crosswise.
    Keys(&'a [i64]),
}

/// The advisory-lock key of a text (a workload, an idempotency key): FNV-1a, the same in every replica and release.
pub(crate) fn key_lock(parts: &[&str]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    i64::from_ne_bytes(h.to_ne_bytes())
}

fn pg_options(url: &str) -> Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)?
        .application_name("reflexion-api")
        .options([("jit", "off")]))
}

impl Pool {
    /// On PostgreSQL, the report writer's own connections, opened by the first task that uses them (see
    /// `ingest::start_ingest`); None on SQLite.
    pub(crate) fn writer_pool(&self, url: &str) -> Result<Option<Self>> {
        Ok(match self {
            Pool::Sqlite(_) => None,
            Pool::Postgres(_) => Some(Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .min_connections(1)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_lazy_with(pg_options(url)?),
            )),
        })
    }

    pub(crate) async fn connect(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // JIT compilation pays off for long analytical queries; for the store's short ones, which PostgreSQL's
            // estimates for JSON set functions often push past jit_above_cost, it added tens of milliseconds each.
            let opts = pg_options(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect_with(opts)
                .await?;
            // The migrator holds an advisory lock while it runs: replicas starting together migrate once.
            sqlx::migrate!("../../migrations/postgres")
                .run(&pool)
                .await?;
            return Ok(Pool::Postgres(pool));
        }
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        // A connection here is a thread of this process with the file open: unlike a socket it does not die while
        // idle, so it is not pinged (a round trip to that thread) each time it is taken.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
        Ok(Pool::Sqlite(pool))
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    /// The text elements of a JSON array of strings bound at `param`, as a one-column subquery.
    pub(crate) fn json_texts(self, param: &str) -> String {
        match self {
            Dialect::Sqlite => format!("SELECT value FROM json_each({param})"),
            Dialect::Postgres => format!("SELECT jsonb_array_elements_text({param}::jsonb)"),
        }
    }
}

enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// A write transaction: on SQLite it holds the in-process writer lock and SQLite's write lock (BEGIN IMMEDIATE)
/// from its start; on PostgreSQL the fleet-wide advisory lock (`WRITER_LOCK`), or its `Scope`. Rolled back when
/// dropped.
pub(crate) struct WriteTx {
    tx: Tx,
    _writer: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTx {
    pub(crate) async fn begin(
        pool: &Pool,
        writer: &Arc<tokio::sync::Mutex<()>>,
        scope: Scope<'_>,
    ) -> Result<Self> {
        match pool {
            Pool::Sqlite(p) => {
                let writer = writer.clone().lock_owned().await;
                Ok(WriteTx {
                    tx: Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
                    _writer: Some(writer),
                })
            }
            Pool::Postgres(p) => {
                // BEGIN and the locks in one round trip (a simple query of several statements); the text is built from
                // integers only. Should a lock fail, the error is the BEGIN's and the transaction is rolled back.
                let locks = match scope {
                    Scope::All => format!("SELECT pg_advisory_xact_lock({WRITER_LOCK})"),
                    Scope::Shared => format!("SELECT pg_advisory_xact_lock_shared({WRITER_LOCK})"),
                    Scope::Keys(keys) => {
                        let keys: Vec<String> = keys.iter().map(i64::to_string).collect();
                        // The shared lock first; then the keys in order (the subquery sorts them).
                        format!(
                            "SELECT pg_advisory_xact_lock_shared({WRITER_LOCK});
                             SELECT COUNT(pg_advisory_xact_lock(k))
                               FROM (SELECT k FROM UNNEST('{{{}}}'::bigint[]) AS k ORDER BY k) AS ordered",
                            keys.join(",")
                        )
                    }
                };
                let tx = p
                    .begin_with(sqlx::AssertSqlSafe(format!("BEGIN; {locks}")))
                    .await?;
                Ok(WriteTx {
                    tx: Tx::Postgres(tx),
                    _writer: None,
                })
            }
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self.tx {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// One statement; the rows it changed.
    pub(crate) async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64> {
        Ok(
            on_conn!(self, c => bind_all!(sqlx::query(sql), args).execute(&mut *c).await?.rows_affected()),
        )
    }

    /// The connection of either driver, for `on_conn!`.
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match &mut self.tx {
            Tx::Sqlite(t) => Conn::Sqlite(t),
            Tx::Postgres(t) => Conn::Postgres(t),
        }
    }
}

pub(crate) enum Conn<'a> {
    Sqlite(&'a mut sqlx::SqliteConnection),
    Postgres(&'a mut sqlx::PgConnection),
}

pub(crate) use {bind_all, on_conn, on_pool};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_locks_are_stable_and_keep_parts_apart() {
        // Replicas of different releases must agree: the values are fixed.
        assert_eq!(
            key_lock(&[]),
            i64::from_ne_bytes(0xcbf2_9ce4_8422_2325_u64.to_ne_bytes())
        );
        assert_eq!(key_lock(&["a", "b"]), key_lock(&["a", "b"]));
        assert_ne!(key_lock(&["ab", ""]), key_lock(&["a", "b"]));
        assert_ne!(
            key_lock(&["prod", "default", "Deployment", "web"]),
            key_lock(&["prod", "default", "Deployment", "web2"])
        );
    }
}
