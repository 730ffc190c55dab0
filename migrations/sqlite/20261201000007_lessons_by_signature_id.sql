-- Recall reads a signature's newest lessons (`ORDER BY id DESC LIMIT 3`). The index on (signature, created_at) left
-- SQLite sorting every lesson of the signature to find them (a temp B-tree); measured by the recall bench with
-- 100,000 episodes of one signature. On (signature, id) the newest three are the index's last three entries.
DROP INDEX lessons_by_signature;
CREATE INDEX lessons_by_signature ON lessons (signature, id);
-- An episode's lessons are read by episode (the episodes view) and deleted with it (ON DELETE CASCADE): both scanned
-- the whole table without this.
CREATE INDEX lessons_by_episode ON lessons (episode_id);
