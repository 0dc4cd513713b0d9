/**
 * Whether the database holds the schema this build needs: every migration in prisma/migrations applied
 * (recorded in `_prisma_migrations`, as prisma/migrate.ts and `prisma migrate deploy` record them). A process
 * started against an empty or older database says so, with the command that fixes it, instead of failing every
 * query.
 */
import { readdirSync } from 'node:fs';
import type { Db } from './client.ts';

/** Migration folders shipped with this build, sorted by name. */
function shippedMigrations(): string[] {
  const dir = new URL('../../prisma/migrations/', import.meta.url);
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

/**
 * @returns undefined when every shipped migration is applied, else a sentence naming what is missing and the fix.
 * @throws when PostgreSQL does not answer (an outage, not a schema problem).
 */
export async function schemaProblem(db: Db): Promise<string | undefined> {
  const [table] = await db.$queryRaw<{ present: boolean }[]>`SELECT to_regclass('"_prisma_migrations"') IS NOT NULL AS present`;
  if (!table?.present) return 'the database has no schema: run npm run migrate';
  const rows = await db.$queryRaw<{ migration_name: string }[]>`
    SELECT migration_name FROM "_prisma_migrations" WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL`;
  const applied = new Set(rows.map((r) => r.migration_name));
  const missing = shippedMigrations().filter((m) => !applied.has(m));
  return missing.length ? `${missing.length} migration(s) not applied (${missing.join(', ')}): run npm run migrate` : undefined;
}
