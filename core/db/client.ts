/**
 * PostgreSQL access through Prisma with the `@prisma/adapter-pg` driver adapter (no native query engine).
 */
import { PrismaPg } from '@prisma/adapter-pg';
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
