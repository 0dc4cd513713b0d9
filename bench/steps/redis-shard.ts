/**
 * What one Redis shard carries of a hot sale: every admission of a sale is one `admit-8.lua` call on the shard that
 * holds the sale's slot, so admissions per second of one Redis process, driven straight by the script (no HTTP, no
 * broker) from several connections until Redis is the busy one, and the Redis CPU each costs, are the capacity
 * model's figure for a shard. The admissions are never published: the sale is ended and its keys deleted with the
 * run's.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { idempotencyKey, saleKeys } from '../../core/redis/keys.ts';
import { admit, AdmitCode, defineScripts } from '../../core/redis/scripts.ts';
import { listenerTree } from '../cpu.ts';
import { cpuWindow } from '../cpu.ts';
import type { Bench } from '../context.ts';
import type { Results } from '../report.ts';

const CLIENTS = 8;

export async function redisShard(b: Bench): Promise<NonNullable<Results['redisShard']>> {
  const { sys, config, checks } = b;
  const admissions = b.settings.quick ? 5_000 : 200_000;
  console.log(`One Redis shard: ${admissions} admissions straight through admit-8.lua from ${CLIENTS} connections...`);
  const sale = await sys.createSale({ name: 'bench: one shard', stock: 10_000_000, perUserLimit: 1 });
  // One purchase through the API loads the sale into Redis.
  const [token] = await b.shoppers.slice(0, 1);
  const first = await fetch(`${sys.apiUrl}/api/sales/${sale}/purchases`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  if (first.status !== 202) throw new Error(`loading the shard's sale: ${first.status}`);
  const prefix = config.REDIS_KEY_PREFIX;
  const keys = saleKeys(prefix, sale);
  const clients = Array.from({ length: CLIENTS }, () => {
    const c = new Redis(config.REDIS_URL, { enableAutoPipelining: true });
    defineScripts(c);
    return c;
  });
  const state = { body: '{}', version: 1, ttlS: 600 };
  let next = 0;
  let refused = 0;
  const port = Number(new URL(config.REDIS_URL).port) || 6379;
  const end = cpuWindow([listenerTree('redis', port)]);
  const t0 = performance.now();
  try {
    await Promise.all(
      clients.map(async (c) => {
        const inFlight = new Set<Promise<void>>();
        while (next < admissions) {
          const userId = `shard-${next++}`;
          const requestId = randomUUID();
          const p = admit(c, keys, idempotencyKey(prefix, sale, userId, ''), { requestId, userId, quantity: 1, nowMs: Date.now(), bodyHash: '', idemTtlS: 60, state }).then((r) => {
            if (r.code !== AdmitCode.Admitted) refused++;
            inFlight.delete(p);
          });
          inFlight.add(p);
          // 64 calls in flight a connection keep Redis busy without queueing the whole run in this process.
          if (inFlight.size >= 64) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
      }),
    );
  } finally {
    clients.forEach((c) => c.disconnect());
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = end();
  checks.check('one shard: every admission admitted', refused === 0, `${refused} refused`);
  const redisS = cpu.seconds.redis ?? 0;
  const result = { admissions, perS: admissions / seconds, redisCpuPerAdmissionUs: (redisS / admissions) * 1e6, redisCpuShare: cpu.shares.redis ?? 0, clients: CLIENTS };
  console.log(`   ${Math.round(result.perS)} admissions/s, Redis at ${Math.round(result.redisCpuShare * 100)}% of a core, ${result.redisCpuPerAdmissionUs.toFixed(1)} µs of Redis CPU each`);
  await sys.endSale(sale);
  return result;
}
