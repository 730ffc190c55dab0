-- Every LLM call: what was sent (names replaced by placeholders), what came back, tokens, latency, and what became
-- of the answer. The per-incident and daily token budgets are counted from here.
CREATE TABLE llm_calls (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id       TEXT NOT NULL REFERENCES incidents (id),
    trial             INTEGER NOT NULL,
    at                TEXT NOT NULL,
    model             TEXT NOT NULL,
    prompt            TEXT NOT NULL,
    response          TEXT,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_ms        INTEGER NOT NULL DEFAULT 0,
    outcome           TEXT NOT NULL
);
CREATE INDEX llm_calls_by_incident ON llm_calls (incident_id);
CREATE INDEX llm_calls_by_time ON llm_calls (at);

-- The LLM calls behind an episode's plan (a JSON array), when the plan came from the model.
ALTER TABLE episodes ADD COLUMN llm TEXT;
