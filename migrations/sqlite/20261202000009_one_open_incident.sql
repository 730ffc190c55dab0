-- One open incident per workload (per cluster) is the database's rule, not only the report writer's: any other
-- writer that tries to open a second one (another replica on a shared database, a restarted writer) is refused.
CREATE UNIQUE INDEX one_open_incident_per_workload ON incidents (cluster, namespace, workload_kind, workload_name)
WHERE state IN ('reported', 'diagnosing', 'planning', 'awaiting_approval', 'executing', 'verifying');
