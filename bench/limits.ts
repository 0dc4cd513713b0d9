/**
 * `npm run bench:limits`: the cost of the rate limits on the two hot paths, side by side in one run: the same API
 * started twice, RATE_LIMITS=off and RATE_LIMITS=on (the IP limit set out of reach, so every request pays the
 * limiter's Redis call and none is refused; the purchase limit is per shopper and sale, and every shopper here is
 * distinct). Each path is measured on both, alternating, ROUNDS times; the report gives each run and the ratio of
 * the medians, which survives this machine's noise better than any absolute figure.
 *
 * BENCH_DURATION_S (default 5), BENCH_CONNECTIONS (64), BENCH_ROUNDS (3).
 */
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mintToken } from '../api/auth.ts';
import { loadConfig } from '../core/config.ts';
import { migrate } from '../prisma/migrate.ts';
import { benchEnv, stampOf } from './bench-env.ts';
import { closedLoop } from './closed-loop.ts';
import { Cursor, Shoppers } from './load.ts';
import { BenchSystem } from './system.ts';

const RESULTS_DIR = fileURLToPath(new URL('./results', import.meta.url));
const num = (name: string, d: number) => Number(process.env[name] || d);
const durationS = num('BENCH_DURATION_S', 5);
const connections = num('BENCH_CONNECTIONS', 64);
const rounds = num('BENCH_ROUNDS', 3);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The API of one mode, on `base` (one secret for both, so the same shoppers' tokens hold) with a prefix of its own. */
async function start(mode: 'on' | 'off', base: NodeJS.ProcessEnv): Promise<BenchSystem> {
  const env = { ...base, RATE_LIMITS: mode, REDIS_KEY_PREFIX: `${base.REDIS_KEY_PREFIX}-${mode}`, AMQP_PREFIX: `${base.AMQP_PREFIX}-${mode}` };
  return BenchSystem.start(loadConfig(env), env, `${RESULTS_DIR}/logs/${stampOf()}-limits-${mode}`);
}

async function main(): Promise<number> {
  // The IP limit out of reach: every request pays the limiters' Redis calls, none is refused.
  const base = benchEnv('limits', { RATE_LIMIT_IP: '1000000000/1' });
  const id = base.REDIS_KEY_PREFIX!.split('-').at(-1)!;
  const secret = base.JWT_SECRET!;
  await migrate(loadConfig(base).DATABASE_URL);
  mkdirSync(`${RESULTS_DIR}/logs`, { recursive: true });
  const systems = { off: await start('off', base), on: await start('on', base) };
  const rows: { path: string; mode: string; rps: number; p50: number; p99: number; ok: boolean }[] = [];
  let ok = true;
  try {
    const shoppers = new Shoppers(secret, id);
    const perRun = Math.ceil(12_000 * durationS);
    await shoppers.ensure(perRun);
    const setup = {} as Record<'on' | 'off', { big: string; soldOut: string }>;
    for (const mode of ['off', 'on'] as const) {
      const sys = systems[mode];
      const big = await sys.createSale({ name: 'bench limits: accept', stock: 10_000_000, perUserLimit: 1 });
      const soldOut = await sys.createSale({ name: 'bench limits: sold out', stock: 1, perUserLimit: 1 });
      const { token } = await mintToken(secret, `bench-limits-buyer-${id}`, 3600);
      const r = await fetch(`${sys.apiUrl}/api/sales/${soldOut}/purchases`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
      if (r.status !== 202) throw new Error(`buying the only unit: ${r.status}`);
      setup[mode] = { big, soldOut };
    }
    const cursors = { off: new Cursor(shoppers), on: new Cursor(shoppers) };
    for (let round = 0; round < rounds; round++) {
      for (const mode of (round % 2 ? ['on', 'off'] : ['off', 'on']) as ('on' | 'off')[]) {
        const sys = systems[mode];
        const cursor = cursors[mode];
        const accept = await closedLoop({ url: sys.apiUrl, path: `/api/sales/${setup[mode].big}/purchases`, connections, durationS, tokens: await cursor.takeMany(perRun), expect: 'accept' });
        const sold = await closedLoop({ url: sys.apiUrl, path: `/api/sales/${setup[mode].soldOut}/purchases`, connections, durationS, tokens: await shoppers.slice(0, 10_000), wrap: true, expect: 'sold-out' });
        for (const [path, s] of [['accept (202)', accept], ['sold out (409)', sold]] as const) {
          const clean = s.unexpected === 0 && s.errors === 0;
          ok &&= clean;
          rows.push({ path, mode, rps: s.rps, p50: s.latency.p50, p99: s.latency.p99, ok: clean });
          console.log(`round ${round + 1} ${path} limits ${mode}: ${Math.round(s.rps)} req/s, p50 ${s.latency.p50.toFixed(1)} ms, p99 ${s.latency.p99.toFixed(1)} ms${clean ? '' : ` (${s.unexpected} unexpected, ${s.errors} errors: ${s.unexpectedSample})`}`);
        }
      }
    }
  } finally {
    await Promise.all([systems.off.stop(), systems.on.stop()]);
  }
  console.log(`\n| Path | Limits | req/s (median of ${rounds}) | runs | p99 ms (median) | on / off |\n|---|---|--:|---|--:|--:|`);
  for (const path of ['accept (202)', 'sold out (409)']) {
    const of = (mode: string) => rows.filter((r) => r.path === path && r.mode === mode);
    const off = median(of('off').map((r) => r.rps));
    for (const mode of ['off', 'on']) {
      const rs = of(mode);
      const m = median(rs.map((r) => r.rps));
      console.log(`| ${path} | ${mode} | ${Math.round(m)} | ${rs.map((r) => Math.round(r.rps)).join(', ')} | ${median(rs.map((r) => r.p99)).toFixed(1)} | ${mode === 'on' ? `${Math.round((m / off) * 100)}%` : ''} |`);
    }
  }
  if (!ok) console.error('\nBENCHMARK FAILED: unexpected answers (see above)');
  return ok ? 0 : 1;
}

process.exit(await main());
