-- Many clusters, one memory: every incident, audit row and lesson says which cluster it belongs to (a lesson: the
-- cluster that taught it). Strategies and learned values stay keyed by signature only, so what one cluster learned
-- is applied on the others. Rows from before this migration have cluster '' until a single-cluster API adopts them.
ALTER TABLE incidents ADD COLUMN cluster TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN cluster TEXT NOT NULL DEFAULT '';
ALTER TABLE lessons ADD COLUMN cluster TEXT NOT NULL DEFAULT '';
-- One open incident per workload is per cluster: the same Deployment name in two clusters is two workloads.
DROP INDEX incidents_by_workload;
CREATE INDEX incidents_by_workload ON incidents (cluster, namespace, workload_kind, workload_name, signature, state);
