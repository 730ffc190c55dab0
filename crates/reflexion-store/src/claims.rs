//! Claims: which replica works an incident. A claim is the replica's name and an expiry on the database's clock
//! (so replicas' clocks do not matter); a replica renews the claims its live tasks hold in one write, and an incident
//! whose claim expired — its replica died, lost the database, or its task ended without letting go — is free for any
//! replica to resume. Replicas also say they are alive (`announce`), so that they can split one budget of
//! Kubernetes requests between them.

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
            .write_atomic(
                sql,
                &[Arg::Text(id), Arg::Text(replica), Arg::Int(millis(ttl))],
            )
            .await?;
        Ok(n == 1)
    }

    /// Extend by `ttl` from now the claims `replica` holds on `ids` — the incidents a live task of it works —
    /// and no other: a claim whose task is gone expires, and any replica resumes its incident. How many it holds.
    pub async fn renew_claims(&self, replica: &str, ttl: Duration, ids: &[String]) -> Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        // The ids as one JSON array: one statement whatever their number.
        let sql = pick(
            self.dialect(),
            [
                at_now!(
                    "UPDATE incidents SET claimed_until = " NOW " + $2 WHERE claimed_by = $1
                     AND id IN (SELECT value FROM json_each($3))"
                )[0],
                at_now!(
                    "UPDATE incidents SET claimed_until = " NOW " + $2 WHERE claimed_by = $1
                     AND id IN (SELECT jsonb_array_elements_text(CAST($3 AS JSONB)))"
                )[1],
            ],
        );
        let ids = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        self.write_atomic(
            sql,
            &[Arg::Text(replica), Arg::Int(millis(ttl)), Arg::Text(&ids)],
        )
        .await
    }

    /// Let the incident go, if `replica` holds it.
    pub async fn release(&self, id: &str, replica: &str) -> Result<()> {
        self.write_atomic(
            "UPDATE incidents SET claimed_by = NULL, claimed_until = NULL WHERE id = $1 AND claimed_by = $2",
            &[Arg::Text(id), Arg::Text(replica)],
        )
        .await?;
        Ok(())
    }

    /// Say `replica` is alive for `ttl` (on the database's clock), forget replicas whose time ran out, and count
    /// the replicas alive now, `replica` included.
    pub async fn announce(&self, replica: &str, ttl: Duration) -> Result<u32> {
        let d = self.dialect();
        self.write_atomic(
            pick(
                d,
                at_now!(
                    "INSERT INTO replicas (name, alive_until) VALUES ($1, " NOW " + $2)
                     ON CONFLICT (name) DO UPDATE SET alive_until = excluded.alive_until"
                ),
            ),
            &[Arg::Text(replica), Arg::Int(millis(ttl))],
        )
        .await?;
        self.write_atomic(
            pick(d, at_now!("DELETE FROM replicas WHERE alive_until < " NOW)),
            &[],
        )
        .await?;
        let n: i64 = on_pool!(&self.pool, p => {
            sqlx::query_scalar("SELECT COUNT(*) FROM replicas").fetch_one(p).await?
        });
        Ok(u32::try_from(n).unwrap_or(u32::MAX).max(1))
    }

    /// `replica` stops: the others take its part of the budget at their next `announce`.
    pub async fn retire(&self, replica: &str) -> Result<()> {
        self.write_atomic(
            "DELETE FROM replicas WHERE name = $1",
            &[Arg::Text(replica)],
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
