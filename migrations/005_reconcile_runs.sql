-- What every reconcile found, from the command line or the nightly schedule: one row per table
-- per run. Operators read it beside queue.stats; queue.reconcile_latest has the last run per table.
CREATE TABLE queue.reconcile_runs (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  table_name text NOT NULL,
  source text NOT NULL CHECK (source IN ('cli', 'schedule')),
  repair boolean NOT NULL,
  status text NOT NULL CHECK (status IN ('clean', 'drift', 'error')),
  started_at timestamptz NOT NULL,
  finished_at timestamptz NOT NULL DEFAULT now(),
  rows_checked bigint NOT NULL DEFAULT 0,
  documents_checked bigint NOT NULL DEFAULT 0,
  missing bigint NOT NULL DEFAULT 0,
  stale bigint NOT NULL DEFAULT 0,
  orphaned bigint NOT NULL DEFAULT 0,
  -- Rows whose sync was queued or ran during the check: not drift, and not counted as such.
  in_flight bigint NOT NULL DEFAULT 0,
  -- Jobs enqueued (and orphans of ids that are no key, deleted) by --repair.
  repaired bigint NOT NULL DEFAULT 0,
  -- Up to ten ids of each kind: {"missing": [...], "stale": [...], "orphaned": [...]}.
  sample jsonb NOT NULL DEFAULT '{}',
  error text
);

CREATE INDEX reconcile_runs_table_started_idx ON queue.reconcile_runs (table_name, started_at DESC);

CREATE VIEW queue.reconcile_latest AS
SELECT DISTINCT ON (r.table_name)
  r.table_name, r.status, r.source, r.repair, r.started_at, r.finished_at,
  r.finished_at - r.started_at AS duration,
  r.rows_checked, r.documents_checked, r.missing, r.stale, r.orphaned, r.in_flight, r.repaired,
  r.sample, r.error
FROM queue.reconcile_runs r
ORDER BY r.table_name, r.started_at DESC;

REVOKE ALL ON queue.reconcile_runs, queue.reconcile_latest FROM PUBLIC;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'queue_monitor') THEN
    GRANT USAGE ON SCHEMA queue TO queue_monitor;
    GRANT SELECT ON queue.reconcile_runs, queue.reconcile_latest TO queue_monitor;
  END IF;
END
$$;
