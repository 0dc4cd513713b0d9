/**
 * Finishes admissions that an API process left behind. An admitted request is normally published within
 * milliseconds and decided soon after; one still inflight after STALE_ADMISSION_MS was most likely admitted by an
 * API process that died before (or while) publishing. The sweeper publishes it again: the decide script is
 * idempotent per request id, so if the first message does exist, the second is a no-op.
 */
import type { RedisClient } from '../core/redis/client.ts';
import type { Logger } from 'pino';
import type { Broker } from '../core/amqp/broker.ts';
import type { Topology } from '../core/amqp/topology.ts';
import type { PurchaseMessage } from '../core/messages.ts';
import { loadedSalesKey, saleKeys } from '../core/redis/keys.ts';

/** Most stale requests re-published per sale per sweep, count. */
const SWEEP_LIMIT = 1000;

/**
 * Re-publishes every admission older than `staleMs` (ms) and marks it fresh again.
 * @returns how many requests were re-published.
 */
export async function sweepStaleAdmissions(
  d: { redis: RedisClient; broker: Broker; topology: Topology; logger: Logger; prefix: string },
  staleMs: number,
  now = Date.now(),
): Promise<number> {
  let count = 0;
  for (const saleId of await d.redis.smembers(loadedSalesKey(d.prefix))) {
    const keys = saleKeys(d.prefix, saleId);
    const stale = await d.redis.zrangebyscore(keys.inflight, 0, now - staleMs, 'LIMIT', 0, SWEEP_LIMIT);
    if (stale.length === 0) continue;
    const [details, epoch] = await Promise.all([d.redis.hmget(keys.requests, ...stale), d.redis.hget(keys.sale, 'epoch')]);
    if (!epoch) continue;
    for (const [i, requestId] of stale.entries()) {
      const detail = details[i];
      if (!detail) continue;
      const sep = detail.indexOf('|');
      const m: PurchaseMessage = {
        v: 1,
        requestId,
        saleId,
        userId: detail.slice(sep + 1),
        quantity: Number(detail.slice(0, sep)),
        epoch,
        admittedAt: now,
      };
      await d.broker.publish(d.topology.purchaseExchange, d.topology.purchaseRoutingKey, Buffer.from(JSON.stringify(m)), {
        messageId: requestId,
        contentType: 'application/json',
      });
      // Only bump entries still inflight (XX): one decided meanwhile must not come back.
      await d.redis.zadd(keys.inflight, 'XX', now, requestId);
      count++;
    }
    d.logger.warn({ saleId, count: stale.length }, 're-published stale admissions');
  }
  return count;
}
