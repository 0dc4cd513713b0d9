/**
 * `npm run demo:crowd`: 2,000 concurrent shoppers against a fresh sale of 100 units, through HTTP, then a table:
 * accepted, succeeded, sold out, rejected, failed, lost (must be 0), oversold (must be 0), accept latency, and the
 * time until every shopper knew the outcome.
 *
 * Targets BASE_URL (default http://localhost:3000, i.e. `npm start` in another terminal); when nothing answers
 * there it starts the API and a worker in this process. SHOPPERS and STOCK override the crowd and the sale size.
 * Exits 1 when anything was lost or oversold.
 */
import { Agent, setGlobalDispatcher } from 'undici';
import { loadConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';

const SHOPPERS = Number(process.env.SHOPPERS ?? 2000);
const STOCK = Number(process.env.STOCK ?? 100);
/** A shopper whose request has no final state this long after the crowd is counted as lost, ms. */
const DRAIN_LIMIT_MS = 120_000;

const config = loadConfig();
let base = process.env.BASE_URL ?? `http://localhost:${config.PORT}`;
const adminToken = process.env.ADMIN_TOKEN ?? config.ADMIN_TOKEN;
setGlobalDispatcher(new Agent({ connections: 512, pipelining: 1, keepAliveTimeout: 30_000 }));

let stopLocal: (() => Promise<void>) | undefined;
if (!(await fetch(`${base}/healthz`).then((r) => r.ok, () => false))) {
  console.log(`Nothing answers at ${base}; starting the API and a worker in this process.`);
  const { startApi } = await import('../api/main.ts');
  const { startWorker } = await import('../worker/main.ts');
  const { migrate } = await import('../prisma/migrate.ts');
  await migrate(config.DATABASE_URL);
  const logger = createLogger('demo', 'warn');
  // 2,000 shoppers from one address: the per-IP limits would refuse most of them.
  const local = loadConfig({ RATE_LIMITS: 'off', ...process.env, PORT: '0' });
  const api = await startApi(local, logger);
  const worker = await startWorker(local, logger);
  base = `http://127.0.0.1:${api.port}`;
  stopLocal = async () => {
    await worker.stop();
    await api.stop();
  };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- loose JSON answers of our own API
type Json = any;

async function json(path: string, init: RequestInit & { token?: string } = {}): Promise<{ status: number; headers: Headers; body: Json }> {
  const res = await fetch(`${base}${path}`, {
    ...init,
    headers: { 'content-type': 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...init.headers },
  });
  return { status: res.status, headers: res.headers, body: res.status === 304 ? undefined : await res.json() };
}

async function inBatches<T, R>(items: T[], size: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += size) out.push(...(await Promise.all(items.slice(i, i + size).map(fn))));
  return out;
}

const sale = await json('/api/admin/sales', {
  method: 'POST',
  token: adminToken,
  body: JSON.stringify({ name: `Crowd demo ${new Date().toISOString()}`, stock: STOCK }),
});
if (sale.status !== 201) throw new Error(`Cannot create the sale: ${sale.status} ${JSON.stringify(sale.body)}`);
const saleId: string = sale.body.id;
const run = Date.now().toString(36);
const tokens = await inBatches(Array.from({ length: SHOPPERS }, (_, i) => `crowd-${run}-${i}`), 200, async (userId) => {
  const r = await json('/api/session', { method: 'POST', body: JSON.stringify({ userId }) });
  if (r.status !== 200) throw new Error(`Demo login failed (${r.status}); is DEMO_LOGIN on?`);
  return r.body.token as string;
});
console.log(`Sale ${saleId}: ${STOCK} units, ${SHOPPERS} shoppers ready. Go!`);

const started = performance.now();
const answers = await Promise.all(
  tokens.map(async (token) => {
    const t0 = performance.now();
    const r = await json(`/api/sales/${saleId}/purchases`, { method: 'POST', token, body: '{}' }).catch(() => ({ status: 0, body: undefined as Json, headers: new Headers() }));
    return { token, status: r.status, body: r.body, ms: performance.now() - t0 };
  }),
);

const finals = new Map<string, string>();
const accepted = answers.filter((a) => a.status === 202);
await Promise.all(
  accepted.map(async (a) => {
    let etag = '';
    const deadline = Date.now() + DRAIN_LIMIT_MS;
    while (Date.now() < deadline) {
      const r = await json(a.body.statusUrl, { token: a.token, headers: etag ? { 'if-none-match': etag } : {} }).catch(() => undefined);
      if (r?.status === 200) {
        etag = r.headers.get('etag') ?? '';
        if (r.body.status !== 'queued') return finals.set(a.body.requestId, r.body.status);
      }
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
    }
  }),
);
const drainS = (performance.now() - started) / 1000;

const stats = (await json(`/api/admin/sales/${saleId}/stats`, { token: adminToken })).body;
const count = (s: string) => [...finals.values()].filter((v) => v === s).length;
const latencies = accepted.map((a) => a.ms).sort((x, y) => x - y);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
const soldOutAtDoor = answers.filter((a) => a.status === 409 && String(a.body?.type).endsWith('/sold-out')).length;
const lost = accepted.length - finals.size;
const oversold = Math.max(0, count('succeeded') - STOCK, stats.unitsInDatabase - STOCK);

console.table({
  shoppers: SHOPPERS,
  accepted: accepted.length,
  'sold out at the door (409)': soldOutAtDoor,
  'other answers': SHOPPERS - accepted.length - soldOutAtDoor,
  succeeded: count('succeeded'),
  sold_out: count('sold_out'),
  rejected: count('rejected'),
  failed: count('failed'),
  lost,
  oversold,
  'accept p50 (ms)': Number(pct(50).toFixed(1)),
  'accept p99 (ms)': Number(pct(99).toFixed(1)),
  'seconds to drain': Number(drainS.toFixed(2)),
  'remaining + orders == stock': stats.remaining + stats.unitsInDatabase === STOCK,
});
await stopLocal?.();
process.exit(lost === 0 && oversold === 0 && stats.remaining + stats.unitsInDatabase === STOCK ? 0 : 1);
