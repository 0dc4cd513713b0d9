/**
 * What happens to a purchase after a transient failure (PostgreSQL or Redis unavailable during its batch): it moves
 * to the next retry tier (a delayed queue, see core/amqp/topology.ts), the original acked only after that publish is
 * confirmed; after the last tier it fails for good: its units go back to stock, the shopper reads `failed`, and the
 * message goes to the dead-letter queue marked with x-final-status, so a replay only records the failure.
 */
import { ATTEMPT_HEADER, FINAL_STATUS_HEADER, REASON_HEADER } from '../core/messages.ts';
import { expireReservation } from '../core/orders.ts';
import { FINAL_VERSION, writeState, type PurchaseState } from '../core/purchase-state.ts';
import { idempotencyKey, saleKeys } from '../core/redis/keys.ts';
import { Decision, release, withdraw } from '../core/redis/scripts.ts';
import type { Item, WorkerContext } from './context.ts';
import { deadLetterItem } from './dead-letters.ts';
import { itemBody, settleItem } from './settle.ts';

const FAILED_REASON = 'We could not process your purchase in time; nothing was charged or reserved. Please try again.';

/**
 * Sends a purchase to its next retry tier, or fails it for good after the last one. Emits `retried` (requestId,
 * attempt). When not even the retry publish goes through, the delivery is requeued: the broker redelivers it (and
 * its delivery limit ends a crash loop); nothing is lost.
 */
export async function retryOrFail(w: WorkerContext, it: Item, reason: string): Promise<void> {
  if (it.settled) return; // settled before the failure (dead-lettered, or done)
  const tiers = w.d.topology.retryQueues;
  try {
    if (it.attempt < tiers.length) {
      const tier = tiers[it.attempt]!;
      await w.d.broker.sendToQueue(tier.name, itemBody(it), {
        messageId: it.m.requestId,
        contentType: 'application/json',
        headers: { ...it.msg.properties.headers, [ATTEMPT_HEADER]: it.attempt + 1, [REASON_HEADER]: reason },
      });
      settleItem(it, 'ack');
      w.emit('retried', it.m.requestId, it.attempt + 1);
      return;
    }
    await failForGood(w, it, `gave up after ${it.attempt + 1} attempts: ${reason}`);
  } catch (err) {
    w.d.logger.warn({ err: (err as Error).message, requestId: it.m.requestId }, 'cannot retry; requeueing');
    settleItem(it, 'requeue');
  }
}

/** The last tier failed: the purchase fails, its units go back to stock, the message to the dead-letter queue. */
async function failForGood(w: WorkerContext, it: Item, reason: string): Promise<void> {
  const { redis, db, config, logger } = w.d;
  const prefix = config.REDIS_KEY_PREFIX;
  const keys = saleKeys(prefix, it.m.saleId);
  // The worker does not know the request's Idempotency-Key: keeping it lets a retry with it replay this failure.
  await withdraw(redis, keys, idempotencyKey(prefix, it.m.saleId, it.m.userId, ''), it.m);
  await release(redis, keys, { ...it.m, as: Decision.Failed });
  await redis.hset(keys.decided, it.m.requestId, Decision.Failed); // failed, not withdrawn: its shopper had a 202
  const state: PurchaseState = {
    requestId: it.m.requestId,
    saleId: it.m.saleId,
    userId: it.m.userId,
    status: 'failed',
    reason: FAILED_REASON,
    acceptedAt: new Date(it.m.admittedAt).toISOString(),
    updatedAt: new Date().toISOString(),
    version: FINAL_VERSION,
  };
  await db.purchase
    .create({ data: { requestId: state.requestId, saleId: state.saleId, userId: state.userId, quantity: it.m.quantity, status: 'failed', reason: FAILED_REASON } })
    .catch((err: Error) => logger.warn({ err: err.message, requestId: state.requestId }, 'failed decision not recorded in PostgreSQL'));
  await writeState(redis, prefix, state);
  await deadLetterItem(w, it, reason, w.d.topology.purchaseDeadQueue, { [FINAL_STATUS_HEADER]: 'failed' });
  w.emit('decided', state);
}

/**
 * A purchase failed for good earlier comes back (a dead-letter replay): record the failure in PostgreSQL, which
 * may have been down then, and never decide it again (the shopper was told it failed). Should PostgreSQL hold an
 * order for it after all (its commit went through while the worker saw an error), that order was never shown to
 * the shopper: it expires now.
 */
export async function recordFailure(w: WorkerContext, it: Item): Promise<void> {
  const { db, redis, config, logger } = w.d;
  const { requestId, saleId, userId, quantity } = it.m;
  await db.purchase.createMany({ data: [{ requestId, saleId, userId, quantity, status: 'failed', reason: FAILED_REASON }], skipDuplicates: true });
  const order = await db.order.findUnique({ where: { requestId }, select: { id: true, status: true } });
  if (order?.status === 'pending_payment') {
    await expireReservation(db, redis, config.REDIS_KEY_PREFIX, { orderId: order.id, requestId, saleId, userId, quantity });
    await db.purchase.update({ where: { requestId }, data: { status: 'failed', reason: FAILED_REASON } });
    logger.warn({ requestId, orderId: order.id }, 'an order committed for a purchase failed for good; expired it');
  }
  await redis.hsetnx(saleKeys(config.REDIS_KEY_PREFIX, saleId).decided, requestId, Decision.Failed);
  settleItem(it, 'ack');
  w.emit('decided', { requestId, saleId, userId, status: 'failed', reason: FAILED_REASON, updatedAt: new Date().toISOString(), version: FINAL_VERSION });
}
