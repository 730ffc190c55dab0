//! Claims: which replica works an incident. A claim is the replica's name and an expiry on the database's clock
//! (so replicas' clocks do not matter); a replica renews all of its claims in one write, and an incident whose claim
//! expired — its replica died or lost the database — is free for any replica to resume.

use super::backend::{Arg, Dialect, on_pool};
use super::{Db, Result, ago, parse_state, sql_states};
use reflexion_core::IncidentState;
use std::time::Duration;

// Milliseconds since the epoch, read from the database's clock.
macro_rules! sqlite_now {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
    };
}
macro_rules! postgres_now {
    () => {
        "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
    };
}
/// One statement in each dialect, `NOW` standing for the database's clock.
macro_rules! at_now {
    (@with $now:ident; $($part:tt)*) => { concat!($(at_now!(@part $now; $part)),*) };
    (@part $now:ident; NOW) => { $now!() };
    (@part $now:ident; $s:literal) => { $s };
    ($($part:tt)*) => {
        [at_now!(@with sqlite_now; $($part)*), at_now!(@with postgres_now; $($part)*)]
    };
}

fn pick(d: Dialect, [sqlite, postgres]: [&'static str; 2]) -> &'static str {
    match d {
        Dialect::Sqlite => sqlite,
        Dialect::Postgres => postgres,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Db {
    /// Take the incident for `replica` for `ttl`: when no replica holds it, `replica` already does, or the holder's
    /// claim expired. Whether `replica` holds it now.
    pub async fn claim(&self, id: &str, replica: &str, ttl: Duration) -> Result<bool> {
        let sql = pick(
            self.dialect(),
            at_now!(
                "UPDATE incidents SET claimed_by = $2, claimed_until = " NOW " + $3
                 WHERE id = $1 AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until < " NOW ")"
            ),
        );
        let n = self
            .write(
                sql,
                &[Arg::Text(id), Arg::Text(replica), Arg::Int(millis(ttl))],
            )
            .await?;
        Ok(n == 1)
    }

    /// Extend every claim `replica` holds by `ttl` from now; how many it holds.
    pub async fn renew_claims(&self, replica: &str, ttl: Duration) -> Result<u64> {
        let sql = pick(
            self.dialect(),
            at_now!("UPDATE incidents SET claimed_until = " NOW " + $2 WHERE claimed_by = $1"),
        );
        self.write(sql, &[Arg::Text(replica), Arg::Int(millis(ttl))])
            .await
    }

    /// Let the incident go, if `replica` holds it.
    pub async fn release(&self, id: &str, replica: &str) -> Result<()> {
        self.write(
            "UPDATE incidents SET claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND claimed_by = $2",
            &[Arg::Text(id), Arg::Text(replica)],
        )
        .await?;
        Ok(())
    }

    /// In-flight incidents no live replica works, oldest first, with the replica that held each: claims that
    /// expired, claims `replica` itself held before a restart, and incidents never claimed and unchanged for `idle`
    /// (a report another replica stored and then died before working it).
    pub async fn unclaimed(
        &self,
        replica: &str,
        idle: Duration,
    ) -> Result<Vec<(String, IncidentState, Option<String>)>> {
        let before = ago(chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::zero()));
        let now = pick(self.dialect(), [sqlite_now!(), postgres_now!()]);
        // The listed states are the enum's own names, never input.
        let sql = format!(
            "SELECT id, state, claimed_by FROM incidents
             WHERE state IN ({}) AND (claimed_until < {now} OR claimed_by = $1 OR (claimed_by IS NULL AND updated_at <= $2))
             ORDER BY created_at",
            sql_states(IncidentState::in_flight)
        );
        let rows: Vec<(String, String, Option<String>)> = on_pool!(&self.pool, p => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(replica).bind(&before).fetch_all(p).await?
        });
        rows.into_iter()
            .map(|(id, s, by)| Ok((id, parse_state(s)?, by)))
            .collect()
    }
}
