-- A strategy the LLM taught is keyed by a stable key (the action's kind and decisive parameters, versioned) and
-- keeps the action to reuse here; rows from before keep theirs in `template` ("llm:{json}") and are still read.
ALTER TABLE strategies ADD COLUMN payload TEXT;
