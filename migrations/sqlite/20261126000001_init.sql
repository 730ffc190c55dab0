-- kube-reflexion memory: incidents (persisted state machines), their transitions, episodes (one per trial),
-- lessons, learned strategies, and the audit log of every write to the cluster.

CREATE TABLE incidents (
    id              TEXT PRIMARY KEY,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    namespace       TEXT NOT NULL,
    pod_name        TEXT NOT NULL,
    workload_kind   TEXT NOT NULL,
    workload_name   TEXT NOT NULL,
    error_type      TEXT NOT NULL,
    signature       TEXT NOT NULL,
    state           TEXT NOT NULL,
    trials          INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    report          TEXT NOT NULL,
    evidence        TEXT,
    outcome         TEXT
);
CREATE INDEX incidents_by_workload ON incidents (namespace, workload_kind, workload_name, signature, state);
CREATE INDEX incidents_by_state ON incidents (state);

CREATE TABLE incident_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL REFERENCES incidents (id),
    at          TEXT NOT NULL,
    state       TEXT NOT NULL,
    note        TEXT NOT NULL
);
CREATE INDEX transitions_by_incident ON incident_transitions (incident_id);

CREATE TABLE episodes (
    id           TEXT PRIMARY KEY,
    incident_id  TEXT NOT NULL REFERENCES incidents (id),
    trial        INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    pod_name     TEXT NOT NULL,
    error_type   TEXT NOT NULL,
    signature    TEXT NOT NULL,
    strategy_id  TEXT,
    source       TEXT NOT NULL,
    action       TEXT NOT NULL,
    command      TEXT NOT NULL,
    rationale    TEXT NOT NULL,
    dry_run      TEXT,
    execution    TEXT,
    verification TEXT,
    success      INTEGER NOT NULL,
    reverted     INTEGER NOT NULL DEFAULT 0,
    reflection   TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL
);
CREATE INDEX episodes_by_signature ON episodes (signature, created_at);
CREATE INDEX episodes_by_incident ON episodes (incident_id);

CREATE TABLE lessons (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    episode_id       TEXT NOT NULL REFERENCES episodes (id) ON DELETE CASCADE,
    signature        TEXT NOT NULL,
    text             TEXT NOT NULL,
    verified_outcome INTEGER NOT NULL,
    created_at       TEXT NOT NULL
);
CREATE INDEX lessons_by_signature ON lessons (signature, created_at);

CREATE TABLE strategies (
    id              TEXT PRIMARY KEY,
    signature_class TEXT NOT NULL,
    error_type      TEXT NOT NULL,
    action          TEXT NOT NULL,
    template        TEXT NOT NULL,
    description     TEXT NOT NULL,
    source          TEXT NOT NULL,
    successes       INTEGER NOT NULL DEFAULT 0,
    failures        INTEGER NOT NULL DEFAULT 0,
    usage_count     INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    last_used       TEXT,
    UNIQUE (signature_class, template)
);

CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    incident_id TEXT,
    verb        TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    result      TEXT NOT NULL
);
CREATE INDEX audit_by_incident ON audit (incident_id);
