/**
 * What the API does with an admission it could not confirm in the queue: its publish was nacked, timed out, or its
 * channel closed after the frame may have left (the outcome is unknown: the message may be in the queue); or the
 * admission script itself timed out or lost its connection after it was sent (it may have run, or may run late).
 *
 * Before the shopper is told 503, the admission is withdrawn in Redis (so the retry is not blocked) and recorded as
 * withdrawn in PostgreSQL, so a copy of the message that did reach the queue is dropped by the worker even after
 * Redis has lost its state and the sale was rebuilt. The `purchases` row's primary key arbitrates with the worker:
 * whichever writes first wins. If the worker won, the request was in the queue after all and has its decision: the
 * shopper gets 202, not 503.
 */
import type { Db } from '../core/db/client.ts';
import { quietFor } from '../core/quiet-log.ts';
import type { PurchaseMessage } from '../core/messages.ts';
import { saleKeys } from '../core/redis/keys.ts';
import { Decision, WithdrawCode, withdraw } from '../core/redis/scripts.ts';
import type { ApiDeps } from './deps.ts';
import { problems } from './problem.ts';

/**
 * Settles an unconfirmed admission.
 * @param idemKey - the request's idempotency key (Redis key), dropped so the shopper's retry is admitted afresh.
 * @returns when the request turns out to be decided (it was in the queue): answer 202.
 * @throws AppError 503 service-unavailable when it is withdrawn (nothing was reserved).
 */
export async function settleUnconfirmed(d: ApiDeps, m: PurchaseMessage, idemKey: string, cause: Error): Promise<void> {
  const { logger } = d;
  let inRedis: Awaited<ReturnType<typeof withdraw>> | undefined;
  try {
    inRedis = await withdraw(d.redis, saleKeys(d.config.REDIS_KEY_PREFIX, m.saleId), idemKey, m);
  } catch (err) {
    quietFor(logger).warn({ err: (err as Error).message, requestId: m.requestId }, 'cannot withdraw in Redis; recording the withdrawal in PostgreSQL');
  }
  if (inRedis?.code === WithdrawCode.Decided && inRedis.decision !== Decision.Withdrawn) return;
  try {
    if ((await recordWithdrawal(d.db, m)) !== 'withdrawn') return;
  } catch (err) {
    // Redis alone knows of the withdrawal now: lost with Redis before the message (if any) is decided, it would
    // let that message become an order. It takes a broker failure, a PostgreSQL outage and a Redis loss at once.
    logger.error({ err: (err as Error).message, requestId: m.requestId }, 'withdrawal not recorded in PostgreSQL');
  }
  quietFor(logger).warn({ err: cause.message, requestId: m.requestId }, 'admission not confirmed; withdrawn');
  throw problems.unavailable('The purchase could not be queued; nothing was reserved. Retry shortly.');
}

/**
 * Records a withdrawal unless the request has a decision already.
 * @returns 'withdrawn', or the decision PostgreSQL holds (the worker wrote it first).
 * @throws on a database failure.
 */
export async function recordWithdrawal(db: Db, m: PurchaseMessage): Promise<string> {
  const rows = await db.$queryRaw<{ status: string }[]>`
    INSERT INTO purchases (request_id, sale_id, user_id, quantity, status)
    VALUES (${m.requestId}::uuid, ${m.saleId}::uuid, ${m.userId}, ${m.quantity}, 'withdrawn')
    ON CONFLICT (request_id) DO NOTHING
    RETURNING status::text`;
  if (rows[0]) return rows[0].status;
  // A conflict: the row is committed by now (the insert waited for it), and a new statement sees it.
  const existing = await db.purchase.findUnique({ where: { requestId: m.requestId }, select: { status: true } });
  if (!existing) throw new Error(`purchase ${m.requestId} conflicted but cannot be read`);
  return existing.status;
}
