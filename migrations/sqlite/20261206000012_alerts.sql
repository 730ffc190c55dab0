-- Alertmanager's alerts as received: each with what became of it (reported on a workload, recorded as resolved, or
-- ignored with why) and the incident it opened or joined.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at   TEXT NOT NULL,
    cluster       TEXT NOT NULL DEFAULT '',
    alertname     TEXT NOT NULL,
    status        TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    namespace     TEXT,
    workload_kind TEXT,
    workload_name TEXT,
    outcome       TEXT NOT NULL,
    why           TEXT,
    incident_id   TEXT,
    labels        TEXT NOT NULL
);
CREATE INDEX alerts_by_time ON alerts (received_at);
