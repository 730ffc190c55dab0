-- An incident's state is one of the state machine's (reflexion-core, incident.rs). SQLite cannot add a CHECK
-- constraint to an existing table, so these triggers refuse any other value on insert and update.
CREATE TRIGGER incidents_state_insert BEFORE INSERT ON incidents
WHEN NEW.state NOT IN ('reported', 'diagnosing', 'planning', 'awaiting_approval', 'executing', 'verifying',
                       'resolved', 'escalated', 'failed', 'dismissed')
BEGIN
    SELECT RAISE(ABORT, 'incidents.state is not an incident state');
END;

CREATE TRIGGER incidents_state_update BEFORE UPDATE OF state ON incidents
WHEN NEW.state NOT IN ('reported', 'diagnosing', 'planning', 'awaiting_approval', 'executing', 'verifying',
                       'resolved', 'escalated', 'failed', 'dismissed')
BEGIN
    SELECT RAISE(ABORT, 'incidents.state is not an incident state');
END;
