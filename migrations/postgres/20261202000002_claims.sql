-- Which replica works an incident, until when (milliseconds since the epoch on the database's clock).
ALTER TABLE incidents ADD COLUMN claimed_by TEXT, ADD COLUMN claimed_until BIGINT;
CREATE INDEX incidents_claims ON incidents (claimed_by);
