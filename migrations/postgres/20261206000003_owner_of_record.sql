-- Who keeps the workload's desired state (live, Flux, Argo CD, Helm) and where a fix lands; and the Git change of
-- the latest trial (repository, branch, commit, pull request). JSON, as text.
ALTER TABLE incidents ADD COLUMN owner TEXT, ADD COLUMN git TEXT;
