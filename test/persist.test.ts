/**
 * The worker's batch write against the real PostgreSQL: idempotent per request, and fenced by the sale's epoch so
 * that a decision taken in a Redis that has since been rebuilt never becomes an order.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createDb, createPool } from '../core/db/client.ts';
import { snapshotSale } from '../core/sales.ts';
import { orderIdFor, persistDecisions, type DecidedPurchase } from '../worker/persist.ts';
import { TEST_DATABASE_URL } from './support/system.ts';

const db = createDb(TEST_DATABASE_URL, 4);
const sql = createPool(TEST_DATABASE_URL, 2);
afterAll(() => Promise.all([db.$disconnect(), sql.end()]));

async function newSale(stock = 5) {
  return db.sale.create({ data: { id: randomUUID(), name: 'persist test', stock, perUserLimit: 1, startsAt: new Date(), endsAt: null } });
}

function decision(saleId: string, epoch: string, status: DecidedPurchase['status'] = 'succeeded'): DecidedPurchase {
  return { requestId: randomUUID(), saleId, userId: `u-${randomUUID()}`, quantity: 1, status, epoch };
}

describe('persistDecisions', () => {
  it('when a batch is written twice, then the second write changes nothing and returns the first decisions', async () => {
    const sale = await newSale();
    const batch = [decision(sale.id, '0'), decision(sale.id, '0', 'sold_out')];
    const first = await persistDecisions(sql, batch, 60_000);
    expect([...first.decisions.values()].map((d) => d.fresh)).toEqual([true, true]);
    const again = await persistDecisions(sql, batch.map((p) => ({ ...p, status: 'sold_out' as const })), 60_000);
    expect(again.stale).toEqual([]);
    const d = again.decisions.get(batch[0]!.requestId)!;
    expect(d).toMatchObject({ status: 'succeeded', orderId: orderIdFor(batch[0]!.requestId), fresh: false });
    expect(d.expiresAt!.getTime()).toBe(first.decisions.get(batch[0]!.requestId)!.expiresAt!.getTime());
    expect(await db.order.count({ where: { saleId: sale.id } })).toBe(1);
  });

  it('when the sale was rebuilt after the decisions were taken, then they are stale and nothing is written', async () => {
    const sale = await newSale();
    const snapshot = await snapshotSale(db, sale.id); // a rebuild: epoch 0 -> 1
    expect(snapshot?.epoch).toBe('1');
    const old = [decision(sale.id, '0'), decision(sale.id, '0')];
    const current = decision(sale.id, '1');
    const { decisions, stale } = await persistDecisions(sql, [...old, current], 60_000);
    expect(stale.sort()).toEqual(old.map((p) => p.requestId).sort());
    expect([...decisions.keys()]).toEqual([current.requestId]);
    expect(await db.order.count({ where: { saleId: sale.id } })).toBe(1);
    expect(await db.purchase.count({ where: { saleId: sale.id } })).toBe(1);
  });

  it('when a rebuild snapshots a sale, then it counts every active order and each buyer with their latest order', async () => {
    const sale = await newSale(4);
    const a = decision(sale.id, '0');
    await persistDecisions(sql, [a, decision(sale.id, '0', 'sold_out')], 60_000);
    const s = (await snapshotSale(db, sale.id))!;
    expect(s).toMatchObject({ stock: 4, remaining: 3, buyers: [[a.userId, 1, a.requestId]] });
    expect(s.decisions).toHaveLength(2);
  });
});
