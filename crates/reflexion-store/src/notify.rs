//! The notifications outbox: which events each target has been offered (its cursor over transitions and the audit
//! log), and each notification until it is delivered. One row per event per target (`UNIQUE (target, event)`), so
//! that replicas enqueueing the same event, or one enqueueing it twice after a crash, store it once; a row is
//! claimed by moving its `next_at_ms` before it is sent, so that two replicas do not send it together.

use super::backend::{Arg, on_conn, on_pool};
use super::{Db, Result, now};
use serde::Serialize;
use sqlx::FromRow;

/// A revert in the audit log: an event a person must see.
#[derive(Debug, Clone, FromRow)]
pub struct RevertEvent {
    pub id: i64,
    pub incident_id: String,
    pub at: String,
    pub target: String,
    pub result: String,
}

/// A notification to store for one target.
pub struct NewNotification<'a> {
    /// The event's key, the same for every target (`transition-17`, `revert-4`).
    pub event: &'a str,
    pub incident_id: &'a str,
    /// `awaiting_approval`, `escalated`, `resolved`, `reverted`.
    pub kind: &'a str,
    /// The notice, as JSON.
    pub payload: &'a str,
}

/// A stored notification.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct Notification {
    pub id: i64,
    pub target: String,
    pub event: String,
    pub incident_id: String,
    pub kind: String,
    pub payload: String,
    pub created_at: String,
    /// `pending`, `sent`, or `abandoned` (retried until its deadline passed).
    pub state: String,
    pub attempts: i64,
    pub next_at_ms: i64,
    pub sent_at: Option<String>,
    pub last_error: Option<String>,
}

impl Db {
    /// Where `target`'s feed stands: the last transition and audit ids it was offered. A target seen for the first
    /// time starts at the newest ones: it is told what happens from now on, not the history.
    pub async fn notify_cursor(&self, target: &str) -> Result<(i64, i64)> {
        // Read on every tick; written (under the writer lock) only the first time a target is seen.
        let sql = "SELECT transitions, audit FROM notify_cursors WHERE target = $1";
        let at: Option<(i64, i64)> = on_pool!(&self.pool, p => {
            sqlx::query_as(sql).bind(target).fetch_optional(p).await?
        });
        if let Some(at) = at {
            return Ok(at);
        }
        let mut tx = self.begin_write().await?;
        tx.execute(
            "INSERT INTO notify_cursors (target, transitions, audit)
             VALUES ($1, COALESCE((SELECT MAX(id) FROM incident_transitions), 0),
                     COALESCE((SELECT MAX(id) FROM audit), 0))
             ON CONFLICT (target) DO NOTHING",
            &[Arg::Text(target)],
        )
        .await?;
        let at: (i64, i64) = on_conn!(tx, c => {
            sqlx::query_as(sql).bind(target).fetch_one(&mut *c).await?
        });
        tx.commit().await?;
        Ok(at)
    }

    /// Reverts recorded after audit id `after`, oldest first, and the id of the newest audit row read (so that a
    /// cursor moves past rows that are not reverts).
    pub async fn reverts_after(&self, after: i64, limit: i64) -> Result<(Vec<RevertEvent>, i64)> {
        let (rows, newest): (Vec<RevertEvent>, Option<i64>) = on_pool!(&self.pool, p => {
            let newest: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(id) FROM (SELECT id FROM audit WHERE id > $1 ORDER BY id LIMIT $2) AS batch",
            )
            .bind(after)
            .bind(limit)
            .fetch_one(p)
            .await?;
            let rows = sqlx::query_as(
                "SELECT id, COALESCE(incident_id, '') AS incident_id, at, target, result FROM audit
                 WHERE id > $1 AND id <= $2 AND verb = 'revert' AND incident_id IS NOT NULL ORDER BY id",
            )
            .bind(after)
            .bind(newest.unwrap_or(after))
            .fetch_all(p)
            .await?;
            (rows, newest)
        });
        Ok((rows, newest.unwrap_or(after)))
    }

    /// Store `items` for `target` (each at most once) and move its cursor to `cursor`, in one transaction.
    pub async fn enqueue_notifications(
        &self,
        target: &str,
        items: &[NewNotification<'_>],
        cursor: (i64, i64),
    ) -> Result<u64> {
        let (ts, due) = (now(), now_ms());
        let mut tx = self.begin_write().await?;
        let mut stored = 0;
        for n in items {
            stored += tx
                .execute(
                    "INSERT INTO notifications (target, event, incident_id, kind, payload, created_at, next_at_ms)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (target, event) DO NOTHING",
                    &[
                        Arg::Text(target),
                        Arg::Text(n.event),
                        Arg::Text(n.incident_id),
                        Arg::Text(n.kind),
                        Arg::Text(n.payload),
                        Arg::Text(&ts),
                        Arg::Int(due),
                    ],
                )
                .await?;
        }
        tx.execute(
            "UPDATE notify_cursors SET transitions = CASE WHEN transitions > $2 THEN transitions ELSE $2 END,
                                       audit = CASE WHEN audit > $3 THEN audit ELSE $3 END
             WHERE target = $1",
            &[Arg::Text(target), Arg::Int(cursor.0), Arg::Int(cursor.1)],
        )
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// `target`'s pending notifications due by `now_ms`, oldest first.
    pub async fn due_notifications(
        &self,
        target: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<Notification>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as(
                "SELECT * FROM notifications WHERE target = $1 AND state = 'pending' AND next_at_ms <= $2
                 ORDER BY id LIMIT $3",
            )
            .bind(target)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(p)
            .await?
        }))
    }

    /// Take a due notification for sending until `lease_until_ms`: false when another sender took it first.
    pub async fn claim_notification(
        &self,
        id: i64,
        seen_next_at_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let n = self
            .write(
                "UPDATE notifications SET next_at_ms = $3, attempts = attempts + 1
                 WHERE id = $1 AND state = 'pending' AND next_at_ms = $2",
                &[
                    Arg::Int(id),
                    Arg::Int(seen_next_at_ms),
                    Arg::Int(lease_until_ms),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// The receiver accepted it.
    pub async fn notification_sent(&self, id: i64) -> Result<()> {
        let ts = now();
        self.write(
            "UPDATE notifications SET state = 'sent', sent_at = $2, last_error = NULL WHERE id = $1",
            &[Arg::Int(id), Arg::Text(&ts)],
        )
        .await?;
        Ok(())
    }

    /// It was not delivered: try again at `retry_at_ms`, or never (`None`: its deadline passed).
    pub async fn notification_failed(
        &self,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<()> {
        let (state, next) = match retry_at_ms {
            Some(at) => ("pending", at),
            None => ("abandoned", now_ms()),
        };
        self.write(
            "UPDATE notifications SET state = $2, next_at_ms = $3, last_error = $4 WHERE id = $1",
            &[
                Arg::Int(id),
                Arg::Text(state),
                Arg::Int(next),
                Arg::Text(error),
            ],
        )
        .await?;
        Ok(())
    }

    /// The latest notifications, newest first.
    pub async fn notifications(&self, limit: i64) -> Result<Vec<Notification>> {
        Ok(on_pool!(&self.pool, p => {
            sqlx::query_as("SELECT * FROM notifications ORDER BY id DESC LIMIT $1")
                .bind(limit)
                .fetch_all(p)
                .await?
        }))
    }
}

/// Milliseconds since the Unix epoch: the outbox's clock, a number both databases compare alike.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
