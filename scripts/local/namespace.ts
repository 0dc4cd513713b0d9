/**
 * Removes what one namespace left on Redis and RabbitMQ: every key under a key prefix (`REDIS_KEY_PREFIX`) and the
 * RabbitMQ topology under a queue prefix (`AMQP_PREFIX`): its queues, with their messages, and its exchanges. Tests
 * and local checks run under prefixes of their own on the shared services and remove them when they end.
 *
 * From a shell: `REDIS_KEY_PREFIX=fs:x AMQP_PREFIX=fs.x tsx scripts/local/namespace.ts` (the configuration is read
 * as the API reads it, so the same REDIS_URL / REDIS_CLUSTER_NODES / AMQP_URL(S) apply); it prints what it removed.
 */
import amqp, { type Channel } from 'amqplib';
import { Cluster } from 'ioredis';
import { topologyFor, type Topology } from '../../core/amqp/topology.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { isMain } from '../../core/process.ts';
import { createRedis, type RedisClient } from '../../core/redis/client.ts';

/**
 * Deletes every key that starts with `${prefix}:`: SCAN on every master of a cluster (KEYS or SCAN on a cluster
 * client reach one node only), then DEL key by key there (one DEL may not span slots), in batches on one Redis.
 * Refuses an empty prefix. @returns how many keys were deleted.
 */
export async function deleteKeys(redis: RedisClient, prefix: string): Promise<number> {
  if (!prefix) throw new Error('deleteKeys needs a key prefix');
  const keys: string[] = [];
  for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
    let cursor = '0';
    do {
      const [next, batch] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
  }
  if (redis instanceof Cluster) await Promise.all(keys.map((k) => redis.del(k)));
  else for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  return keys.length;
}

/** Every queue of a topology, the inverse of declareTopology's list. */
export function topologyQueues(t: Topology): string[] {
  return [
    t.purchaseQueue, t.purchaseDeadQueue, t.reservationDelayQueue, t.reservationExpiryQueue, t.reservationDeadQueue,
    ...t.retryQueues.map((r) => r.name), ...t.reservationRetryQueues.map((r) => r.name),
  ];
}

/** Deletes the queues (whatever they hold) and exchanges of `t`; deleting one that does not exist is a no-op. */
export async function deleteTopology(ch: Channel, t: Topology): Promise<void> {
  for (const q of topologyQueues(t)) await ch.deleteQueue(q);
  for (const x of [t.purchaseExchange, t.reservationExchange, t.deadExchange]) await ch.deleteExchange(x);
}

if (isMain(import.meta.url)) {
  // Never the defaults: those name the application's own keys and queues.
  if (!process.env.REDIS_KEY_PREFIX || !process.env.AMQP_PREFIX) throw new Error('set REDIS_KEY_PREFIX and AMQP_PREFIX to the namespace to remove');
  const config = loadConfig();
  const redis = createRedis(config.redis, createLogger('namespace', 'warn'));
  const keys = await deleteKeys(redis, config.REDIS_KEY_PREFIX);
  redis.disconnect();
  const t = topologyFor(config);
  const conn = await amqp.connect(config.amqpUrls[0]!);
  const ch = await conn.createChannel();
  const queues = topologyQueues(t);
  await deleteTopology(ch, t);
  await conn.close();
  console.log(`removed ${keys} Redis keys under ${config.REDIS_KEY_PREFIX}: and ${queues.length} queues and 3 exchanges under ${config.AMQP_PREFIX}.`);
}
