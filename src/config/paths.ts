import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The same code runs from src/ (node strips the types) and from dist/src/ (the container), so
// files that ship beside the code are found from the package root, not from this file.
function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('queue-service: cannot find package.json above ' + import.meta.url);
    dir = parent;
  }
  return dir;
}

export const packageRoot = findPackageRoot();
export const migrationsDir = join(packageRoot, 'migrations');
export const seedFile = join(packageRoot, 'supabase', 'seed.sql');
/** The roles every Supabase database has, for plain PostgreSQL (docker-compose.yml and the demo). */
export const supabaseRolesFile = join(packageRoot, 'docker', 'postgres-init', '10-supabase-roles.sql');
/** The email templates that ship with the service (EMAIL_TEMPLATES_DIR replaces them). */
export const emailTemplatesDir = join(packageRoot, 'templates', 'email');
export const dashboardDir = join(packageRoot, 'dashboard');
