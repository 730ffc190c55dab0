-- A batch of reports stored in one round trip (issue 30). Over a network every round trip of the report writer is
-- paid while its locks are held; as separate statements a batch took four (BEGIN with the locks, the lookup, the
-- inserts, COMMIT). Called as one statement (its own transaction): the locks are taken first, and each later
-- statement of the function reads with a snapshot taken after them.
--
-- Each report, in order, joins the incident with its idempotency key (stored, or opened earlier in the batch),
-- else the workload's incident opened earlier in the batch, else its open incident, else its last incident when the
-- failure was detected before that one last changed (it happened while that incident worked); else it opens an
-- incident with the id it brought. `reflexion-store/src/ingest.rs` decides the same way on SQLite, and the store
-- tests hold both to it.
--
-- Each report: [id, idempotency key, cluster, namespace, kind, name, pod, error type, signature, report,
-- detected at in microseconds since the epoch or null].
CREATE FUNCTION reflexion_store_reports(
    p_batch JSONB, p_at TEXT, p_keys BIGINT[], p_writer_lock BIGINT, p_open TEXT[])
RETURNS TABLE (out_n BIGINT, out_id TEXT, out_created BOOLEAN)
LANGUAGE plpgsql AS $fn$
DECLARE
    k BIGINT;
    r RECORD;
    workload TEXT;
    joined TEXT;
    -- This batch's new incidents by idempotency key and by workload, and the reports that open them.
    by_key JSONB := '{}';
    by_workload JSONB := '{}';
    created JSONB := '[]';
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_writer_lock);
    -- In the order given (ascending): two batches wanting the same keys never wait on each other crosswise.
    FOREACH k IN ARRAY p_keys LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
    -- What exists for every report, read at once (set-wise, as on SQLite); then each decided in order.
    FOR r IN
        SELECT j.n - 1 AS n, j.value AS v,
          (SELECT i.id FROM incidents i WHERE i.idempotency_key = j.value ->> 1) AS key_id,
          (SELECT i.id FROM incidents i
            WHERE i.cluster = j.value ->> 2 AND i.namespace = j.value ->> 3 AND i.workload_kind = j.value ->> 4
              AND i.workload_name = j.value ->> 5 AND i.state = ANY (p_open)
            ORDER BY i.created_at LIMIT 1) AS open_id,
          (SELECT l.id FROM (SELECT i.id, i.updated_at FROM incidents i
                              WHERE i.cluster = j.value ->> 2 AND i.namespace = j.value ->> 3
                                AND i.workload_kind = j.value ->> 4 AND i.workload_name = j.value ->> 5
                              ORDER BY i.updated_at DESC LIMIT 1) AS l
            WHERE EXTRACT(EPOCH FROM CAST(l.updated_at AS TIMESTAMPTZ)) * 1000000 >= CAST(j.value ->> 10 AS NUMERIC))
            AS last_id
        FROM jsonb_array_elements(p_batch) WITH ORDINALITY AS j(value, n)
        ORDER BY j.n
    LOOP
        workload := jsonb_build_array(r.v -> 2, r.v -> 3, r.v -> 4, r.v -> 5)::TEXT;
        joined := COALESCE(by_key ->> (r.v ->> 1), r.key_id, by_workload ->> workload, r.open_id, r.last_id);
        out_n := r.n;
        IF joined IS NULL THEN
            out_id := r.v ->> 0;
            out_created := TRUE;
            IF r.v ->> 1 IS NOT NULL THEN
                by_key := by_key || jsonb_build_object(r.v ->> 1, out_id);
            END IF;
            by_workload := by_workload || jsonb_build_object(workload, out_id);
            created := created || jsonb_build_array(r.v);
        ELSE
            out_id := joined;
            out_created := FALSE;
        END IF;
        RETURN NEXT;
    END LOOP;
    INSERT INTO incidents (id, created_at, updated_at, namespace, pod_name, workload_kind, workload_name, error_type,
                           signature, state, idempotency_key, report, cluster)
    SELECT c.value ->> 0, p_at, p_at, c.value ->> 3, c.value ->> 6, c.value ->> 4, c.value ->> 5, c.value ->> 7,
           c.value ->> 8, 'reported', c.value ->> 1, c.value ->> 9, c.value ->> 2
    FROM jsonb_array_elements(created) WITH ORDINALITY AS c(value, n) ORDER BY c.n;
    INSERT INTO incident_transitions (incident_id, at, state, note)
    SELECT c.value ->> 0, p_at, 'reported', 'failure reported'
    FROM jsonb_array_elements(created) WITH ORDINALITY AS c(value, n) ORDER BY c.n;
END
$fn$;
