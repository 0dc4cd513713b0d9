/**
 * Order routes for the owner: read an order, pay it (simulated payment, idempotent).
 */
import { Router } from 'express';
import { getOrder, payOrder } from '../../core/orders.ts';
import { requireShopper } from '../auth.ts';
import type { ApiDeps } from '../deps.ts';
import { uuidParam } from '../validate.ts';
import { AppError, problems } from '../problem.ts';

export function orderRoutes(d: ApiDeps): Router {
  const r = Router();
  const shopper = requireShopper(d.config.JWT_SECRET);
  const orderId = (value: unknown) => uuidParam(value, (id) => problems.notFound(`No order ${id}.`));

  r.get('/api/orders/:orderId', shopper, async (req, res) => {
    const order = await getOrder(d.db, orderId(req.params.orderId), req.userId!);
    if (!order) throw problems.notFound(`No order ${req.params.orderId}.`);
    res.set('Cache-Control', 'private, no-cache').json(order);
  });

  r.post('/api/orders/:orderId/pay', shopper, async (req, res) => {
    const result = await payOrder(d.db, orderId(req.params.orderId), req.userId!);
    if (result.outcome === 'not_found') throw problems.notFound(`No order ${req.params.orderId}.`);
    if (result.outcome === 'expired') {
      throw new AppError('order-expired', 409, 'The payment window closed; the units went back on sale.', { order: result.order });
    }
    res.json(result.order);
  });

  return r;
}
