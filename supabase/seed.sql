-- Sample app schema and rows for the demo, the tests and the Supabase project in this folder.
-- The tables belong to the app, not to the queue service; `migrate` only attaches triggers.
-- Everything here is idempotent, so it can run before or after the queue migrations.

-- schema:begin
CREATE TABLE IF NOT EXISTS public.listings (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  seller_id uuid NOT NULL,
  title text NOT NULL,
  description text,
  price_cents integer NOT NULL CHECK (price_cents >= 0),
  currency text NOT NULL DEFAULT 'USD',
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('draft', 'active', 'sold', 'archived')),
  tags text[] NOT NULL DEFAULT '{}',
  attributes jsonb NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.inventory_items (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  listing_id uuid NOT NULL REFERENCES public.listings (id) ON DELETE CASCADE,
  sku text NOT NULL UNIQUE,
  quantity integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
  location text,
  image_urls text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS inventory_items_listing_id_idx ON public.inventory_items (listing_id);

-- updated_at moves only when something else changed, so a no-op update stays a no-op.
CREATE OR REPLACE FUNCTION public.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW IS DISTINCT FROM OLD THEN
    NEW.updated_at := now();
  END IF;
  RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS touch_updated_at ON public.listings;
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.listings
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
DROP TRIGGER IF EXISTS touch_updated_at ON public.inventory_items;
CREATE TRIGGER touch_updated_at BEFORE UPDATE ON public.inventory_items
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();

-- As on Supabase: the app's users write through PostgREST as `authenticated`, under RLS.
ALTER TABLE public.listings ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.inventory_items ENABLE ROW LEVEL SECURITY;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
    GRANT SELECT, INSERT, UPDATE, DELETE ON public.listings, public.inventory_items TO authenticated;
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'listings' AND policyname = 'authenticated users manage listings') THEN
      CREATE POLICY "authenticated users manage listings" ON public.listings
        FOR ALL TO authenticated USING (true) WITH CHECK (true);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'inventory_items' AND policyname = 'authenticated users manage inventory') THEN
      CREATE POLICY "authenticated users manage inventory" ON public.inventory_items
        FOR ALL TO authenticated USING (true) WITH CHECK (true);
    END IF;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
    GRANT SELECT ON public.listings, public.inventory_items TO anon;
    IF NOT EXISTS (SELECT 1 FROM pg_policies WHERE tablename = 'listings' AND policyname = 'anyone reads active listings') THEN
      CREATE POLICY "anyone reads active listings" ON public.listings
        FOR SELECT TO anon USING (status = 'active');
    END IF;
  END IF;
END
$$;
-- schema:end

INSERT INTO public.listings (id, seller_id, title, description, price_cents, status, tags, attributes) VALUES
  ('8f4c2a9e-1b6d-4c3e-9a7f-000000000001', '5a1e0c6b-7d2f-4e8a-b3c9-00000000000a', 'Oak dining table', 'Seats six, lightly used', 42000, 'active', '{furniture,wood}', '{"width_cm": 180}'),
  ('8f4c2a9e-1b6d-4c3e-9a7f-000000000002', '5a1e0c6b-7d2f-4e8a-b3c9-00000000000a', 'Road bike, 56 cm', 'Aluminium frame, new tyres', 65000, 'active', '{bikes}', '{"size_cm": 56}'),
  ('8f4c2a9e-1b6d-4c3e-9a7f-000000000003', '5a1e0c6b-7d2f-4e8a-b3c9-00000000000b', 'Vintage film camera', NULL, 18000, 'draft', '{photo}', '{}')
ON CONFLICT (id) DO NOTHING;

INSERT INTO public.inventory_items (id, listing_id, sku, quantity, location, image_urls) VALUES
  ('c3d9e1f0-2a4b-4c5d-8e6f-000000000001', '8f4c2a9e-1b6d-4c3e-9a7f-000000000001', 'TBL-OAK-180', 1, 'warehouse-a', '{listings/8f4c/table-1.jpg,listings/8f4c/table-2.jpg}'),
  ('c3d9e1f0-2a4b-4c5d-8e6f-000000000002', '8f4c2a9e-1b6d-4c3e-9a7f-000000000002', 'BIKE-RD-56', 2, 'warehouse-b', '{listings/8f4d/bike.jpg}')
ON CONFLICT (id) DO NOTHING;
