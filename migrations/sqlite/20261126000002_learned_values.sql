-- Values a verified fix used for one workload (e.g. the memory limit that held), so that the next occurrence of the
-- same signature on that workload starts from what worked.
CREATE TABLE learned_values (
    signature     TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    workload_kind TEXT NOT NULL,
    workload_name TEXT NOT NULL,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    episode_id    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (signature, namespace, workload_kind, workload_name, key)
);
