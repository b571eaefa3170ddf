// Where image-cleanup deletes images: a folder on disk, or a Supabase Storage bucket. An adapter
// maps each image URL to an object it owns and deletes it; a URL it does not own (another host,
// another bucket, a path that would leave the folder) is skipped and reported, never followed:
// the URLs come from app rows, which app users write.
import { unlink } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { createClient } from '@supabase/supabase-js';
import type { Env } from '../config/env.ts';
import { retryable } from './handler.ts';

export interface RemoveResult extends Record<string, unknown> {
  /** Removed now. */
  deleted: string[];
  /** Already gone (a retry after a partial run, or never uploaded). */
  missing: string[];
  skipped: { url: string; reason: string }[];
}

export interface ImageStorage {
  describe: string;
  remove(urls: string[]): Promise<RemoveResult>;
}

export function createImageStorage(env: Env, fetchImpl?: typeof fetch): ImageStorage {
  if (env.imageStorage === 'local') return createLocalStorage({ dir: env.imageStorageDir!, baseUrl: env.imageBaseUrl! });
  return createSupabaseStorage({ url: env.supabaseUrl!, serviceRoleKey: env.supabaseServiceRoleKey!, bucket: env.imageStorageBucket, ...(fetchImpl ? { fetch: fetchImpl } : {}) });
}

export function createLocalStorage({ dir, baseUrl }: { dir: string; baseUrl: string }): ImageStorage {
  const root = resolve(dir);
  return {
    describe: `folder ${root}`,
    async remove(urls) {
      const result: RemoveResult = { deleted: [], missing: [], skipped: [] };
      for (const url of urls) {
        const file = localPath(root, baseUrl, url);
        if (typeof file !== 'string') {
          result.skipped.push({ url, reason: file.reason });
          continue;
        }
        try {
          await unlink(file);
          result.deleted.push(url);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') result.missing.push(url);
          else throw retryable('storage_failed', `could not delete ${file}: ${(err as Error).message}`);
        }
      }
      return result;
    },
  };
}

function localPath(root: string, baseUrl: string, url: string): string | { reason: string } {
  if (!url.startsWith(baseUrl)) return { reason: 'not under IMAGE_BASE_URL' };
  let relative: string;
  try {
    relative = decodeURIComponent(url.slice(baseUrl.length).split(/[?#]/)[0]!);
  } catch {
    return { reason: 'not a valid URL path' };
  }
  const file = resolve(root, relative);
  if (!file.startsWith(root + sep) || relative.includes('\0')) return { reason: 'outside IMAGE_STORAGE_DIR' };
  return file;
}

/** /storage/v1/object/[public|sign|authenticated/]<bucket>/<path> (and render/image for transforms). */
const STORAGE_PATH = /^\/storage\/v1\/(?:object|render\/image)\/(?:public\/|sign\/|authenticated\/)?([^/]+)\/(.+)$/;

export interface SupabaseStorageOptions {
  url: string;
  serviceRoleKey: string;
  bucket: string;
  /** supabase-js's fetch; tests give a recording one. */
  fetch?: typeof fetch;
}

export function createSupabaseStorage(options: SupabaseStorageOptions): ImageStorage {
  const origin = new URL(options.url).origin;
  const supabase = createClient(options.url, options.serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    ...(options.fetch ? { global: { fetch: options.fetch } } : {}),
  });
  return {
    describe: `Supabase Storage bucket ${options.bucket} at ${origin}`,
    async remove(urls) {
      const result: RemoveResult = { deleted: [], missing: [], skipped: [] };
      const paths = new Map<string, string>();
      for (const url of urls) {
        const object = storageObject(origin, url);
        if ('reason' in object) result.skipped.push({ url, reason: object.reason });
        else if (object.bucket !== options.bucket) result.skipped.push({ url, reason: `in bucket ${object.bucket}, not IMAGE_STORAGE_BUCKET ${options.bucket}` });
        else paths.set(object.path, url);
      }
      if (paths.size === 0) return result;
      const { data, error } = await supabase.storage.from(options.bucket).remove([...paths.keys()]);
      if (error) throw retryable('storage_failed', `Supabase Storage refused the delete: ${error.message}`);
      const removed = new Set((data ?? []).map((o) => o.name));
      for (const [path, url] of paths) (removed.has(path) ? result.deleted : result.missing).push(url);
      return result;
    },
  };
}

function storageObject(origin: string, url: string): { bucket: string; path: string } | { reason: string } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return { reason: 'not a URL' };
  }
  if (parsed.origin !== origin) return { reason: 'not on SUPABASE_URL' };
  const match = STORAGE_PATH.exec(parsed.pathname);
  if (!match) return { reason: 'not a Storage object URL' };
  try {
    return { bucket: decodeURIComponent(match[1]!), path: decodeURIComponent(match[2]!) };
  } catch {
    return { reason: 'not a valid URL path' };
  }
}
