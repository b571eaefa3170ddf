-- The roles every Supabase database has, so that this plain PostgreSQL grants and refuses exactly
-- as Supabase does: supabase/seed.sql grants the app tables to `authenticated` and `anon`, and the
-- queue service grants queue.send and queue.get_stats to `service_role` only.
DO $$
DECLARE
  role text;
BEGIN
  FOREACH role IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN', role);
    END IF;
  END LOOP;
END
$$;
