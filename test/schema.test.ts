/**
 * The Prisma schema and the hand-kept migrations agree: every model round-trips through the generated client
 * against the migrated database, the migration is recorded as `prisma migrate deploy` records it, and the guards
 * the schema cannot express (CHECK constraints, unique request id) hold.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createDb } from '../core/db/client.ts';
import { migrate } from '../prisma/migrate.ts';
import { TEST_DATABASE_URL } from './support/system.ts';

const db = createDb(TEST_DATABASE_URL, 2);
afterAll(() => db.$disconnect());

async function newSale(stock = 2, perUserLimit = 1) {
  return db.sale.create({ data: { id: randomUUID(), name: 'schema test', stock, perUserLimit, startsAt: new Date(), endsAt: null } });
}

describe('schema and migrations', () => {
  it('when migrations run again, then nothing is applied and each recorded checksum is its file SHA-256', async () => {
    expect(await migrate(TEST_DATABASE_URL)).toEqual([]);
    const dir = new URL('../prisma/migrations/', import.meta.url);
    const names = readdirSync(dir).filter((n) => !n.endsWith('.toml')).sort();
    expect(names.length).toBeGreaterThanOrEqual(2);
    const rows = await db.$queryRaw<{ migration_name: string; checksum: string; finished_at: Date | null }[]>`
      SELECT migration_name, checksum, finished_at FROM "_prisma_migrations" ORDER BY migration_name`;
    expect(rows.map((r) => r.migration_name)).toEqual(names);
    for (const [i, name] of names.entries()) {
      const sql = readFileSync(new URL(`${name}/migration.sql`, dir), 'utf8');
      expect(rows[i]!.checksum).toBe(createHash('sha256').update(sql).digest('hex'));
      expect(rows[i]!.finished_at).toBeInstanceOf(Date);
    }
  });

  it('round-trips every model through the generated client', async () => {
    const sale = await newSale(5, 2);
    expect(await db.sale.findUniqueOrThrow({ where: { id: sale.id } })).toEqual(sale);
    const requestId = randomUUID();
    const order = await db.order.create({
      data: { id: randomUUID(), requestId, saleId: sale.id, userId: 'u', quantity: 1, expiresAt: new Date(Date.now() + 1000) },
    });
    expect(await db.order.findUniqueOrThrow({ where: { requestId } })).toEqual(order);
    expect(order.status).toBe('pending_payment');
    const purchase = await db.purchase.create({
      data: { requestId, saleId: sale.id, userId: 'u', quantity: 1, status: 'succeeded', orderId: order.id },
    });
    expect(await db.purchase.findUniqueOrThrow({ where: { requestId } })).toEqual(purchase);
  });

  it('when a second order for the same request is written, then the unique request id refuses it', async () => {
    const sale = await newSale();
    const requestId = randomUUID();
    const data = { saleId: sale.id, requestId, userId: 'u', quantity: 1, expiresAt: new Date() };
    await db.order.create({ data: { id: randomUUID(), ...data } });
    await expect(db.order.create({ data: { id: randomUUID(), ...data } })).rejects.toThrow(/Unique constraint/i);
  });

  it('when a sale breaks a CHECK constraint, then PostgreSQL refuses it', async () => {
    await expect(newSale(-1)).rejects.toThrow();
    await expect(newSale(1, 0)).rejects.toThrow();
  });
});
