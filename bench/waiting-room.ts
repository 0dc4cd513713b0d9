/**
 * `npm run bench:queue`: the waiting room's join script and its memory, straight against Redis (no HTTP): 100,000
 * tickets taken at 64 concurrent calls on a pre-queue, then one advance that shuffles them all, then Redis's own
 * MEMORY USAGE of the queue's keys divided by the tickets. On its own key prefix; deletes what it wrote.
 * QUEUE_BENCH_TICKETS overrides the count.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { advanceQueue, joinQueue, loadQueue, queueKeys } from '../core/waiting-room/scripts.ts';

const tickets = Number(process.env.QUEUE_BENCH_TICKETS ?? 100_000);
const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
const prefix = `fs:bench-queue-${randomBytes(4).toString('hex')}`;
const saleId = '00000000-0000-4000-8000-000000000001';
const k = queueKeys(prefix, saleId);
try {
  const now = Date.now();
  await loadQueue(redis, k, { opensMs: now - 1000, startsMs: now + 3_600_000, endsMs: 0, intervalMs: 100, cap: 100, sessionMs: 300_000, order: 'fifo', seed: 12345 });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (next < tickets) await joinQueue(redis, k, `shopper-${next++}-${randomBytes(6).toString('hex')}`, randomInt(0, 2 ** 47));
    }),
  );
  const joinS = (performance.now() - t0) / 1000;
  await redis.hset(k.queue, 'starts', Date.now()); // open the sale: the next advance shuffles the pre-queue
  const t1 = performance.now();
  await advanceQueue(redis, k, '', 30_000);
  const shuffleMs = performance.now() - t1;
  const t2 = performance.now();
  for (let i = 0; i < 100; i++) await advanceQueue(redis, k, '', 30_000);
  const advanceMs = (performance.now() - t2) / 100;
  let bytes = 0;
  for (const key of [k.queue, k.tickets, k.pre, k.order, k.pool, k.seen, k.inside]) bytes += Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
  console.log(`tickets: ${tickets}`);
  console.log(`join throughput: ${Math.round(tickets / joinS)} joins/s (64 concurrent script calls, one client)`);
  console.log(`shuffle of the whole pre-queue at the start: ${shuffleMs.toFixed(0)} ms (one script call)`);
  console.log(`one advance with ${tickets} waiting: ${advanceMs.toFixed(2)} ms (mean of 100, round trip included)`);
  console.log(`Redis memory per ticket: ${Math.round(bytes / tickets)} bytes (MEMORY USAGE of the queue's keys)`);
} finally {
  await redis.del(k.queue, k.tickets, k.pre, k.order, k.pool, k.seen, k.inside);
  redis.disconnect();
}
