-- Replay for the task queues' dead letters (queue.replay_dead_letters of 003 replays search-sync
-- ones, as fresh jobs of their rows). A task job carries its whole payload, so a replayed dead
-- letter becomes a new job of its source queue with the same data, with the queue's current
-- settings and a fresh set of retries; the dead letters are deleted in the same transaction, so
-- a replay either moves a job or leaves it. Same result shape as queue.replay_dead_letters.
CREATE FUNCTION queue.replay_task_dead_letters(source_queue text, job_ids uuid[] DEFAULT NULL)
RETURNS TABLE (replayed_ids uuid[], jobs_created integer, skipped_ids uuid[])
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dead_queue text;
  ids uuid[];
  payloads jsonb[];
BEGIN
  SELECT q.dead_letter INTO dead_queue FROM pgboss.queue q WHERE q.name = source_queue;
  IF dead_queue IS NULL OR NOT EXISTS (SELECT 1 FROM queue.task_queues t WHERE t.name = source_queue) THEN
    RAISE EXCEPTION 'queue-service: % is not a task queue with a dead-letter queue', source_queue
      USING ERRCODE = 'undefined_object';
  END IF;
  WITH locked AS (
    SELECT j.id, j.data, j.created_on
    FROM pgboss.job j
    WHERE j.name = dead_queue
      AND j.state IN ('created', 'retry')
      AND COALESCE(j.source_name, source_queue) = source_queue
      AND (job_ids IS NULL OR j.id = ANY (job_ids))
    FOR UPDATE
  )
  SELECT array_agg(l.id ORDER BY l.created_on, l.id), array_agg(l.data ORDER BY l.created_on, l.id) INTO ids, payloads FROM locked l;
  IF ids IS NULL THEN
    RETURN QUERY SELECT '{}'::uuid[], 0, '{}'::uuid[];
    RETURN;
  END IF;
  jobs_created := queue.enqueue_jobs(source_queue, payloads);
  DELETE FROM pgboss.job j WHERE j.name = dead_queue AND j.id = ANY (ids);
  RETURN QUERY SELECT ids, jobs_created, '{}'::uuid[];
END
$$;

REVOKE ALL ON FUNCTION queue.replay_task_dead_letters(text, uuid[]) FROM PUBLIC;
