-- Replicas alive, until when (milliseconds since the epoch on the database's clock): they share one Kubernetes
-- request budget per cluster, each taking its part.
CREATE TABLE replicas (
    name        TEXT PRIMARY KEY,
    alive_until INTEGER NOT NULL
);
