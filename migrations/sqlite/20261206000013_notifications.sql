-- Notifications to chat and webhooks, as an outbox: one row per event (an incident's transition or a revert) per
-- target, so that a target gets each at most once; retried with back-off until delivered, and a restart resumes
-- from here. A target is named by a hash of its URL (incoming-webhook URLs are secrets).
CREATE TABLE notify_cursors (
    target      TEXT PRIMARY KEY,
    transitions BIGINT NOT NULL,
    audit       BIGINT NOT NULL
);
CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target       TEXT NOT NULL,
    event        TEXT NOT NULL,
    incident_id  TEXT NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending',
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at_ms   BIGINT NOT NULL,
    sent_at      TEXT,
    last_error   TEXT,
    UNIQUE (target, event)
);
CREATE INDEX notifications_due ON notifications (target, state, next_at_ms);
