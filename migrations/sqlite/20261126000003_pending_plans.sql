-- The plan an incident awaits approval for: the typed action and why, so approving executes exactly what was shown.
ALTER TABLE incidents ADD COLUMN pending_plan TEXT;
