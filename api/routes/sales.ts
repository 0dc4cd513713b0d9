/**
 * Public sale routes: the list and one sale, with live remaining stock and state.
 */
import { Router } from 'express';
import { findSale, listSales, remainingOf, saleView } from '../../core/sales.ts';
import type { ApiDeps } from '../deps.ts';
import { uuidParam } from '../validate.ts';
import { findWaitingRoom, waitingRoomView } from '../../core/waiting-room/settings.ts';
import { problems } from '../problem.ts';

export function saleRoutes(d: ApiDeps): Router {
  const r = Router();
  const prefix = d.config.REDIS_KEY_PREFIX;

  r.get('/api/sales', async (_req, res) => {
    const sales = await listSales(d.db);
    const remaining = await remainingOf(d.db, d.redis, prefix, sales.map((s) => s.id));
    res.json({ sales: sales.map((s) => saleView(s, remaining.get(s.id) ?? 0)) });
  });

  r.get('/api/sales/:saleId', async (req, res) => {
    const saleId = uuidParam(req.params.saleId, problems.saleNotFound);
    const sale = await findSale(d.db, saleId);
    if (!sale) throw problems.saleNotFound(saleId);
    const [remaining, room] = await Promise.all([remainingOf(d.db, d.redis, prefix, [sale.id]), findWaitingRoom(d.db, sale.id)]);
    const waitingRoom = waitingRoomView(room ?? null);
    res.set('Cache-Control', 'no-cache').json({
      ...saleView(sale, remaining.get(sale.id) ?? 0),
      waitingRoom: waitingRoom && { ...waitingRoom, queueUrl: `/api/sales/${sale.id}/queue` },
    });
  });

  return r;
}
