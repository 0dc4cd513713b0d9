/**
 * PostgreSQL access through Prisma with the `@prisma/adapter-pg` driver adapter (no native query engine).
 */
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from './generated/client.ts';

export type Db = InstanceType<typeof PrismaClient>;

/**
 * Creates a Prisma client on a pg pool.
 * @param url - a PostgreSQL connection URL.
 * @param poolSize - connections in the pool, count.
 */
export function createDb(url: string, poolSize = 10): Db {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: poolSize }) });
}

/**
 * Creates a plain `pg` pool, for the one statement that skips Prisma (the worker's batch write, worker/persist.ts).
 * @param url - a PostgreSQL connection URL. @param poolSize - connections in the pool, count.
 */
export function createPool(url: string, poolSize = 4): pg.Pool {
  const pool = new pg.Pool({ connectionString: url, max: poolSize });
  pool.on('error', () => undefined); // an idle client lost with its server is dropped; the next query reconnects
  return pool;
}
