/**
 * Admin routes (Authorization: Bearer <ADMIN_TOKEN>): create a sale, end a sale now, read a sale's stock and order
 * counts, inspect and replay the dead-letter queues.
 */
import { Router } from 'express';
import { z } from 'zod';
import { peekDeadLetters, replayDeadLetters } from '../../core/amqp/dead-letters.ts';
import { saleKeys } from '../../core/redis/keys.ts';
import { createSale, endSale, findSale, remainingOf, saleView } from '../../core/sales.ts';
import { loadWaitingRoom, waitingRoomInput, waitingRoomView } from '../../core/waiting-room/settings.ts';
import { requireAdmin } from '../auth.ts';
import type { ApiDeps } from '../deps.ts';
import { problems } from '../problem.ts';
import { rateLimitsOf } from '../rate-limit.ts';
import { parse, storableInstant, storableText, uuidParam } from '../validate.ts';

export const createSaleBody = z
  .strictObject({
    name: storableText.trim().min(1).max(200),
    stock: z.int().min(1).max(10_000_000),
    startsAt: storableInstant.optional(),
    endsAt: storableInstant.optional(),
    perUserLimit: z.int().min(1).max(10_000).default(1),
    waitingRoom: waitingRoomInput.optional(),
  })
  // Runs even when a field failed (zod 4 keeps checking), so it judges only a well-formed endsAt.
  .refine((b) => !b.endsAt || Number.isNaN(Date.parse(b.endsAt)) || new Date(b.endsAt) > new Date(b.startsAt ?? Date.now()), {
    path: ['endsAt'],
    message: 'must be after startsAt',
  })
  .refine((b) => !b.waitingRoom?.opensAt || !b.startsAt || new Date(b.waitingRoom.opensAt) <= new Date(b.startsAt), {
    path: ['waitingRoom', 'opensAt'],
    message: 'must be at or before startsAt',
  });

export const dlqQuery = z.object({
  queue: z.enum(['purchases', 'reservations']).default('purchases'),
  limit: z.coerce.number().int().min(1).max(1000).default(20),
});
export const replayBody = z.strictObject({
  queue: z.enum(['purchases', 'reservations']).default('purchases'),
  limit: z.int().min(1).max(100_000).default(10_000),
});

export function adminRoutes(d: ApiDeps): Router {
  const r = Router();
  const prefix = d.config.REDIS_KEY_PREFIX;
  const limits = rateLimitsOf(d);
  r.use('/api/admin', limits.adminBudget, requireAdmin(d.config.ADMIN_TOKEN, limits.adminFailed));

  r.post('/api/admin/sales', async (req, res) => {
    const b = parse(createSaleBody, req.body ?? {}, 'body');
    const sale = await createSale(d.db, d.redis, prefix, {
      name: b.name,
      stock: b.stock,
      perUserLimit: b.perUserLimit,
      startsAt: b.startsAt ? new Date(b.startsAt) : new Date(),
      endsAt: b.endsAt ? new Date(b.endsAt) : null,
      waitingRoom: b.waitingRoom,
    });
    if (sale.waitingRoom) await loadWaitingRoom(d.redis, prefix, sale.waitingRoom, sale);
    res.status(201).location(`/api/sales/${sale.id}`).json({ ...saleView(sale, sale.stock), waitingRoom: waitingRoomView(sale.waitingRoom) });
  });

  r.post('/api/admin/sales/:saleId/end', async (req, res) => {
    const saleId = uuidParam(req.params.saleId, problems.saleNotFound);
    const sale = await endSale(d.db, d.redis, prefix, saleId);
    if (!sale) throw problems.saleNotFound(saleId);
    const remaining = await remainingOf(d.db, d.redis, prefix, [sale.id]);
    res.json(saleView(sale, remaining.get(sale.id) ?? 0));
  });

  r.get('/api/admin/sales/:saleId/stats', async (req, res) => {
    const saleId = uuidParam(req.params.saleId, problems.saleNotFound);
    const sale = await findSale(d.db, saleId);
    if (!sale) throw problems.saleNotFound(saleId);
    const [remaining, pending, inflight, orders, decisions] = await Promise.all([
      remainingOf(d.db, d.redis, prefix, [saleId]),
      d.redis.hget(saleKeys(prefix, saleId).sale, 'pending'),
      d.redis.zcard(saleKeys(prefix, saleId).inflight),
      d.db.order.groupBy({ by: ['status'], where: { saleId }, _count: { _all: true }, _sum: { quantity: true } }),
      d.db.purchase.groupBy({ by: ['status'], where: { saleId }, _count: { _all: true } }),
    ]);
    const byStatus = Object.fromEntries(orders.map((o) => [o.status, { orders: o._count._all, units: o._sum.quantity ?? 0 }]));
    const active = ['pending_payment', 'paid'].map((s) => byStatus[s] ?? { orders: 0, units: 0 });
    res.set('Cache-Control', 'no-store').json({
      saleId,
      stock: sale.stock,
      remaining: remaining.get(saleId) ?? sale.stock,
      pendingUnits: Number(pending ?? 0),
      inflightRequests: inflight,
      ordersInDatabase: active.reduce((n, a) => n + a.orders, 0),
      unitsInDatabase: active.reduce((n, a) => n + a.units, 0),
      ordersByStatus: {
        pending_payment: byStatus.pending_payment?.orders ?? 0,
        paid: byStatus.paid?.orders ?? 0,
        expired: byStatus.expired?.orders ?? 0,
      },
      decisions: Object.fromEntries(decisions.map((p) => [p.status, p._count._all])),
    });
  });

  r.get('/api/admin/dlq', async (req, res) => {
    const q = parse(dlqQuery, req.query, 'query');
    const { count, messages } = await peekDeadLetters(d.broker, d.topology, q.queue, q.limit);
    res.set('Cache-Control', 'no-store').json({ queue: q.queue, count, messages });
  });

  r.post('/api/admin/dlq/replay', async (req, res) => {
    const b = parse(replayBody, req.body ?? {}, 'body');
    const replayed = await replayDeadLetters(d.broker, d.topology, b.queue, b.limit);
    res.json({ queue: b.queue, replayed });
  });

  return r;
}
