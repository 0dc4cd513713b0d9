/**
 * The failover run of `npm run test:cluster`: two API nodes and two workers (compiled, `node dist/...`, as the image
 * runs them) against the private clusters, shoppers that retry a 503 or a dead node with the same Idempotency-Key
 * on the other node, and, under that load, kill -9 of: the Redis master holding the sale's slot, the RabbitMQ node
 * leading the purchase queue, one API node, one worker. Then every 202 must reach a final state, no unit oversold,
 * no shopper over the limit, no 5xx other than 503. Prints requests, 202s, 503s, and the recovery time after each
 * kill (kill to the next 202).
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../prisma/migrate.ts';
import { sleep, spawnChild, type ChildHandle } from './child.ts';
import type { RabbitCluster } from './rabbitmq-cluster.ts';
import type { RedisCluster } from './redis-cluster.ts';

const ADMIN = 'cluster-admin-token-0123456789';
const STOCK = 2400;
const LIMIT = 2;
const SHOPPERS = 1500;
/**
 * Longest the load may run, ms: it takes about a minute (shoppers arrive over 40 s, the kills wait up to 30 s each).
 * A system stuck answering 503 would otherwise keep every shopper retrying, and the run would never end.
 */
const LOAD_DEADLINE_MS = 240_000;
const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/flash_sale_test';

interface Figures {
  requests: number;
  accepted: Map<string, { userId: string; token: string; node: number }>;
  byStatus: Map<number, number>;
  lastAcceptAt: number;
  /** When each 503 was answered, ms since the epoch: counted per kill in the report. */
  unavailableAt: number[];
}

/**
 * The kill -9 run under load (see README, Running several nodes). @param o.children - gets every process it starts, so
 * a caller interrupted by a signal can stop them. @returns its report lines and whether every check held.
 */
export async function runFailover(o: { redis: RedisCluster; rabbit: RabbitCluster; env: NodeJS.ProcessEnv; dir: string; children: ChildHandle[] }): Promise<{ ok: boolean; lines: string[] }> {
  await migrate(DATABASE_URL);
  const id = randomUUID().slice(0, 8);
  const ports = [3811, 3812];
  const env = {
    ...o.env,
    NODE_ENV: 'test',
    DATABASE_URL,
    REDIS_KEY_PREFIX: `fs:cl-${id}`,
    AMQP_PREFIX: `fs.cl-${id}`,
    ADMIN_TOKEN: ADMIN,
    JWT_SECRET: 'cluster-secret-0123456789-0123456789-abc',
    DEMO_LOGIN: 'true',
    LOG_LEVEL: 'info',
    STALE_ADMISSION_MS: '20000',
    // Every simulated shopper comes from one address: per-IP limits would refuse the crowd, not test the failover.
    RATE_LIMITS: 'off',
  };
  const procs: ChildHandle[] = [];
  const start = (what: string, i: number) => {
    const p = spawnChild('node', [`dist/${what}/main.js`], { env: { ...env, PORT: String(ports[i] ?? 0) }, logPath: join(o.dir, `${what}-${i}.log`) });
    procs.push(p);
    o.children.push(p);
    return p;
  };
  const apis = [start('api', 0), start('api', 1)];
  const workers = [start('worker', 0), start('worker', 1)];
  const lines: string[] = [];
  try {
    const urls = ports.map((p) => `http://127.0.0.1:${p}`);
    for (const u of urls) await until(async () => (await fetch(`${u}/readyz`)).ok, 60_000, `${u} ready`);
    const created = await fetch(`${urls[0]}/api/admin/sales`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'cluster failover', stock: STOCK, perUserLimit: LIMIT }),
    });
    if (created.status !== 201) throw new Error(`sale not created: ${created.status} ${await created.text()}`);
    const sale = (await created.json()) as { id: string };
    const f: Figures = { requests: 0, accepted: new Map(), byStatus: new Map(), lastAcceptAt: 0, unavailableAt: [] };
    const dead = new Set<number>();
    let stopping = false;

    const shopper = async (n: number) => {
      const userId = `cl-${id}-${n}`;
      let token = '';
      for (let node = n % 2; !token; node = 1 - node) {
        if (dead.has(node)) continue;
        const r = await fetch(`${urls[node]}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ userId }) }).catch(() => undefined);
        if (r?.ok) token = ((await r.json()) as { token: string }).token;
        else await sleep(100);
      }
      // Each shopper tries three purchases (one over the limit of two), each retried with its own key until answered.
      for (let attempt = 0; attempt < 3 && !stopping; attempt++) {
        const key = randomUUID();
        for (let node = (n + attempt) % 2; !stopping; node = dead.has(1 - node) ? node : 1 - node) {
          if (dead.has(node)) continue;
          f.requests++;
          const r = await fetch(`${urls[node]}/api/sales/${sale.id}/purchases`, {
            method: 'POST',
            headers: { authorization: `Bearer ${token}`, 'idempotency-key': key, 'content-type': 'application/json' },
            body: JSON.stringify({ quantity: 1 }),
          }).catch(() => undefined);
          if (!r) {
            f.byStatus.set(0, (f.byStatus.get(0) ?? 0) + 1);
            await sleep(50);
            continue;
          }
          f.byStatus.set(r.status, (f.byStatus.get(r.status) ?? 0) + 1);
          const body = (await r.json().catch(() => ({}))) as { requestId?: string };
          if (r.status === 202 && body.requestId) {
            f.accepted.set(body.requestId, { userId, token, node });
            f.lastAcceptAt = Date.now();
          }
          if (r.status !== 503) break;
          f.unavailableAt.push(Date.now());
          await sleep(100 + Math.random() * 200);
        }
        await sleep(200 + Math.random() * 600);
      }
    };

    const load = Promise.all(Array.from({ length: SHOPPERS }, (_, n) => sleep(Math.random() * 40_000).then(() => shopper(n))));
    let stuck = false;
    const deadline = setTimeout(() => {
      stuck = true;
      stopping = true;
    }, LOAD_DEADLINE_MS);
    const recovery: { name: string; at: number; line: string }[] = [];
    const afterKill = async (name: string, kill: () => Promise<void>) => {
      const at = Date.now();
      await kill();
      const before = f.accepted.size;
      await until(async () => f.accepted.size > before, 30_000, `a 202 after killing ${name}`).catch(() => undefined);
      // Once every unit is held by an accepted request, no 202 can follow: the sale sold out before this kill.
      const next = f.accepted.size > before ? `${Date.now() - at} ms` : before >= STOCK ? 'none (every unit was already accepted)' : 'none in 30000 ms';
      recovery.push({ name, at, line: `${name}: next 202 after ${next}` });
    };
    await sleep(5000);
    const slot = await o.redis.slotOf(`{${sale.id}}`);
    const master = await o.redis.masterOf(slot);
    await afterKill(`Redis master 127.0.0.1:${master.port} (slot ${slot})`, () => master.kill());
    await sleep(3000);
    const leader = await o.rabbit.leaderOf(`fs.cl-${id}.purchases`);
    await afterKill(`RabbitMQ ${leader.nodename} (purchase queue leader)`, () => leader.kill());
    await sleep(3000);
    await afterKill('API node 2', async () => {
      dead.add(1);
      await apis[1]!.kill();
    });
    await sleep(2000);
    await afterKill('worker 2', () => workers[1]!.kill().then(() => undefined));
    await load;
    clearTimeout(deadline);
    stopping = true;

    // Drain: every 202 must reach a final state (read from the surviving API node).
    const pending = new Set(f.accepted.keys());
    await until(async () => {
      for (const rid of [...pending]) {
        const a = f.accepted.get(rid)!;
        const r = await fetch(`${urls[0]}/api/sales/${sale.id}/purchases/${rid}`, { headers: { authorization: `Bearer ${a.token}` } }).catch(() => undefined);
        const s = r?.ok ? ((await r.json()) as { status: string }).status : 'unknown';
        if (s !== 'queued' && s !== 'unknown') pending.delete(rid);
      }
      return pending.size === 0;
    }, 90_000, 'every 202 final').catch(() => undefined);

    const db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    const { rows: sold } = await db.query<{ units: string }>(`SELECT coalesce(sum(quantity), 0) AS units FROM orders WHERE sale_id = $1`, [sale.id]);
    const { rows: over } = await db.query<{ user_id: string }>(
      `SELECT user_id FROM orders WHERE sale_id = $1 GROUP BY user_id HAVING sum(quantity) > $2`,
      [sale.id, LIMIT],
    );
    const { rows: decided } = await db.query<{ n: string }>(`SELECT count(*) AS n FROM purchases WHERE sale_id = $1`, [sale.id]);
    await db.end();
    const fiveXX = [...f.byStatus].filter(([s]) => s >= 500 && s !== 503).reduce((a, [, n]) => a + n, 0);
    const units = Number(sold[0]!.units);
    lines.push(
      `failover run: requests ${f.requests}, 202s ${f.accepted.size}, 503s ${f.byStatus.get(503) ?? 0}, connection errors ${f.byStatus.get(0) ?? 0}, statuses ${JSON.stringify(Object.fromEntries(f.byStatus))}`,
      `  503s before the first kill ${f.unavailableAt.filter((t) => t < (recovery[0]?.at ?? Infinity)).length}`,
      // A kill's 503s are those answered from it to the next kill (or the end of the run).
      ...recovery.map((r, i) => `  ${r.line}; 503s until the next kill ${f.unavailableAt.filter((t) => t >= r.at && t < (recovery[i + 1]?.at ?? Infinity)).length}`),
      `  lost (202 not final) ${pending.size}, units sold ${units} of ${STOCK} (oversold ${Math.max(0, units - STOCK)}), shoppers over the limit ${over.length}, other 5xx ${fiveXX}, purchases decided in PostgreSQL ${decided[0]!.n}`,
    );
    if (stuck) lines.push(`  the load did not end within ${LOAD_DEADLINE_MS / 1000} s: shoppers were still retrying (stopped)`);
    const ok = !stuck && pending.size === 0 && units <= STOCK && over.length === 0 && fiveXX === 0 && f.accepted.size > 0;
    lines.push(ok ? 'failover run: PASS' : 'failover run: FAIL');
    return { ok, lines };
  } finally {
    await Promise.all(procs.map((p) => p.stop(20_000)));
  }
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
