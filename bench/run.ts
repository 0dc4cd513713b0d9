/**
 * `npm run bench`: measures the purchase pipeline on this machine, in one run, on a system it starts itself.
 *
 *   1. Accept path: the API's highest rate of 202s against a bare Express app (the ceiling), then latency at a
 *      fixed fraction of that rate. No worker runs, so every 202 stays in the queue as the backlog of step 3.
 *   2. Sold-out path: the same against a sale whose only unit is taken: every answer must be a 409 sold-out.
 *   3. One worker drains the backlog (decisions/s), then end-to-end latency from acceptance to final state at a
 *      rate below saturation.
 *   4. A flash crowd at a small sale: time until every shopper has a final answer.
 *   5. The cost of metrics: the accept and sold-out paths against a second API process with METRICS=false, side by
 *      side with the first (runs alternate on/off, twice each), reported as the ratio off/on.
 *
 * Every shopper is distinct (one token each), as in a real crowd: a repeated shopper would be refused as a
 * duplicate and measure another path. After each step the invariants are checked (no oversell, nothing lost, counts
 * add up); a broken one fails the run with exit code 1, because a fast wrong answer is not a result.
 *
 * Sizes come from the environment (BENCH_QUICK=1 for a small run that checks the harness); see `settings`.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mintToken } from '../api/auth.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { isFinal, type PurchaseState } from '../core/purchase-state.ts';
import { migrate } from '../prisma/migrate.ts';
import { closedLoop, Cursor, openLoop, percentiles, Shoppers, type LoadStats } from './load.ts';
import { machine, markdown, writeReport, type Check, type Results } from './report.ts';
import { BenchSystem, type SaleStats } from './system.ts';

const RESULTS_DIR = fileURLToPath(new URL('./results', import.meta.url));
const BIG_STOCK = 1_000_000;
const POLL_MS = 100;

const quick = process.env.BENCH_QUICK === '1';
function setting(name: string, full: number, small: number): number {
  const raw = process.env[name];
  const n = raw === undefined || raw === '' ? (quick ? small : full) : Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${raw}`);
  return n;
}
const settings = {
  quick,
  /** Length of each closed-loop and fixed-rate run of steps 1 and 2, s. */
  durationS: setting('BENCH_DURATION_S', 10, 2),
  /** Unrecorded load before the first measurement of each server, s: JIT compilation and connection pools settle. */
  warmupS: setting('BENCH_WARMUP_S', 3, 1),
  connections: setting('BENCH_CONNECTIONS', 64, 16),
  /** Admitted purchases waiting for the worker in step 3. */
  backlog: setting('BENCH_BACKLOG', 100_000, 2_000),
  /** The fixed rate of step 1, as a share of the measured maximum. */
  rateShare: setting('BENCH_RATE_SHARE', 0.5, 0.5),
  /** Fixed rate (req/s) and length (s) of the end-to-end run of step 3. */
  e2eRate: setting('BENCH_E2E_RATE', 1000, 200),
  e2eDurationS: setting('BENCH_E2E_DURATION_S', 10, 2),
  crowd: setting('BENCH_CROWD', 100_000, 2_000),
  crowdStock: setting('BENCH_CROWD_STOCK', 1_000, 100),
  /** Longest wait for the worker to decide everything, s. */
  drainTimeoutS: setting('BENCH_DRAIN_TIMEOUT_S', 600, 120),
};

const log = (line: string) => console.log(line);

/** The invariants checked so far; each is printed as it is decided. */
class Checks {
  readonly list: Check[] = [];
  check(name: string, ok: boolean, detail?: string): boolean {
    this.list.push({ name, ok, ...(detail ? { detail } : {}) });
    log(`   ${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
    return ok;
  }
  get ok(): boolean {
    return this.list.every((c) => c.ok);
  }
}

/** Collects the requestIds of 202 answers; any other answer is unexpected. */
class Accepted {
  readonly ids: string[] = [];
  readonly onAnswer = (status: number, body: string): boolean => {
    if (status !== 202) return false;
    let id: unknown;
    try {
      id = (JSON.parse(body) as { requestId?: unknown }).requestId;
    } catch {
      return false;
    }
    if (typeof id !== 'string') return false;
    this.ids.push(id);
    return true;
  };
}

const isSoldOut = (status: number, body: string) => status === 409 && body.includes('"type":"/problems/sold-out"');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
const decisionCount = (s: SaleStats) => sum(Object.values(s.decisions));

/** The run's state shared by the steps. */
interface Run {
  sys: BenchSystem;
  config: Config;
  shoppers: Shoppers;
  checks: Checks;
  results: Results;
}

function cleanLoad(run: Run, what: string, s: LoadStats): void {
  run.checks.check(`${what}: every answer as expected, no connection errors`, s.unexpected === 0 && s.errors === 0, s.unexpected || s.errors ? `${s.unexpected} unexpected, ${s.errors} errors; e.g. ${s.unexpectedSample ?? 'none'}` : undefined);
}

function noCrashes(run: Run): void {
  const crashes = run.sys.crashes();
  if (crashes.length) {
    run.checks.check('child processes alive', false, crashes.join('\n'));
    throw new Error('a child process ended during the run');
  }
}

/** Step 1. @returns the big sale's accepted requestIds and its shopper cursor. */
async function acceptPath(run: Run, bigSale: string): Promise<{ accepted: Accepted; cursor: Cursor }> {
  const { sys, shoppers, results } = run;
  const s = settings;
  const path = `/api/sales/${bigSale}/purchases`;
  const closed = `closed loop, ${s.connections} conn, ${s.durationS} s`;

  log(`1. Accept path (${closed})`);
  log('   bare Express ceiling...');
  const anyone = new Cursor(shoppers);
  await closedLoop({ url: sys.bareUrl, path, connections: s.connections, durationS: s.warmupS, token: () => anyone.take(), onAnswer: (st) => st === 202 });
  const bare = await closedLoop({ url: sys.bareUrl, path, connections: s.connections, durationS: s.durationS, token: () => anyone.take(), onAnswer: (st) => st === 202 });
  results.loads.push({ name: 'Bare Express ceiling (202)', mode: closed, stats: bare, ofCeiling: 1 });
  cleanLoad(run, 'bare ceiling', bare);

  log('   POST /purchases -> 202, highest rate...');
  const accepted = new Accepted();
  const cursor = new Cursor(shoppers);
  // Warm-up answers are real admissions: they join the backlog like the rest.
  await closedLoop({ url: sys.apiUrl, path, connections: s.connections, durationS: s.warmupS, maxRequests: shoppers.size, token: () => cursor.take(), onAnswer: accepted.onAnswer });
  const left = shoppers.size - cursor.used;
  const max = await closedLoop({ url: sys.apiUrl, path, connections: s.connections, durationS: s.durationS, maxRequests: left, token: () => cursor.take(), onAnswer: accepted.onAnswer });
  results.loads.push({ name: 'Accept (202), highest rate', mode: max.sent >= left ? `${closed}, stopped at ${max.sent} shoppers` : closed, stats: max, ofCeiling: max.rps / bare.rps });
  cleanLoad(run, 'accept, highest rate', max);

  const rate = Math.max(1, Math.round(max.rps * s.rateShare));
  log(`   POST /purchases -> 202 at ${rate} req/s (${Math.round(s.rateShare * 100)}% of the highest rate)...`);
  await shoppers.ensure(cursor.used + Math.ceil(rate * s.durationS));
  const fixed = await openLoop({ url: sys.apiUrl, path, connections: s.connections, rate, durationS: s.durationS, token: () => cursor.take(), onAnswer: accepted.onAnswer });
  results.loads.push({
    name: `Accept (202), ${Math.round(s.rateShare * 100)}% of highest rate`,
    mode: `open loop, ${rate} req/s, ${s.durationS} s`,
    stats: fixed,
    target: { name: 'p99 < 50 ms', ok: fixed.latency.p99 < 50 },
  });
  cleanLoad(run, 'accept, fixed rate', fixed);

  const missing = s.backlog - accepted.ids.length;
  if (missing > 0) {
    log(`   topping the backlog up with ${missing} more purchases...`);
    await shoppers.ensure(cursor.used + missing);
    const topUp = await closedLoop({ url: sys.apiUrl, path, connections: s.connections, maxRequests: missing, token: () => cursor.take(), onAnswer: accepted.onAnswer });
    results.loads.push({ name: 'Accept (202), backlog top-up', mode: `closed loop, ${s.connections} conn, ${missing} requests`, stats: topUp, ofCeiling: topUp.rps / bare.rps });
    cleanLoad(run, 'accept, top-up', topUp);
  }
  noCrashes(run);

  // Requests cut off by the end of a timed run may have been admitted without our seeing the 202.
  const [inflight, stats] = await Promise.all([sys.inflight(bigSale), sys.stats(bigSale)]);
  run.checks.check(
    'backlog: every 202 is admitted and undecided',
    accepted.ids.length <= inflight && inflight <= cursor.used && stats.pendingUnits === inflight && stats.inflightRequests === inflight,
    `${accepted.ids.length} answered 202, ${cursor.used} sent, ${inflight} in flight, ${stats.pendingUnits} units pending`,
  );
  run.checks.check('backlog: nothing decided without a worker', decisionCount(stats) === 0 && stats.unitsInDatabase === 0 && stats.remaining === stats.stock);
  return { accepted, cursor };
}

/** Step 2. @returns the sale and the requestId of its one purchase. */
async function soldOutPath(run: Run, bareRps: number): Promise<{ sale: string; buyer: string }> {
  const { sys, shoppers, results, config } = run;
  const s = settings;
  const closed = `closed loop, ${s.connections} conn, ${s.durationS} s`;
  log(`2. Sold-out path (${closed})`);
  const sale = await sys.createSale({ name: 'bench: sold out', stock: 1, perUserLimit: 1 });
  const path = `/api/sales/${sale}/purchases`;
  const { token } = await mintToken(config.JWT_SECRET, `bench-buyer-${randomBytes(4).toString('hex')}`, 3600);
  const res = await fetch(`${sys.apiUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  const bought = (await res.json()) as { requestId?: string };
  if (res.status !== 202 || !bought.requestId) throw new Error(`buying the only unit: ${res.status} ${JSON.stringify(bought)}`);

  // Shoppers of step 1 may come again: they hold nothing in this sale, so each is as new here.
  const cursor = new Cursor(shoppers);
  const stats = await closedLoop({ url: sys.apiUrl, path, connections: s.connections, durationS: s.durationS, token: () => cursor.take(), onAnswer: isSoldOut });
  results.loads.push({ name: 'Sold out (409), highest rate', mode: closed, stats, ofCeiling: stats.rps / bareRps, target: { name: '≥ 90% of ceiling', ok: stats.rps / bareRps >= 0.9 } });
  run.checks.check('sold out: every answer a 409 sold-out', stats.unexpected === 0 && stats.errors === 0 && stats.answers > 0, stats.unexpected || stats.errors ? `${stats.unexpected} other answers, ${stats.errors} errors; e.g. ${stats.unexpectedSample ?? 'none'}` : undefined);
  noCrashes(run);
  const after = await sys.stats(sale);
  run.checks.check('sold out: the one unit is held by the one admitted request', after.remaining === 1 && after.pendingUnits === 1 && after.inflightRequests === 1, JSON.stringify({ remaining: after.remaining, pending: after.pendingUnits, inflight: after.inflightRequests }));
  return { sale, buyer: bought.requestId };
}

/**
 * Waits until nothing is in flight in Redis and PostgreSQL holds a decision for every request Redis decided.
 * `onPoll` sees each in-flight count. @returns when everything was decided (performance.now()).
 */
async function waitDecided(run: Run, sales: string[], deadline: number, onPoll?: (inflight: number, at: number) => void): Promise<number> {
  const { sys } = run;
  for (;;) {
    noCrashes(run);
    const inflight = sum(await Promise.all(sales.map((id) => sys.inflight(id))));
    onPoll?.(inflight, performance.now());
    if (inflight === 0) break;
    if (Date.now() > deadline) throw new Error(`${inflight} requests still undecided after the drain timeout`);
    await sleep(POLL_MS);
  }
  for (;;) {
    const [stats, decided] = await Promise.all([Promise.all(sales.map((id) => sys.stats(id))), Promise.all(sales.map((id) => sys.decided(id)))]);
    if (stats.every((st, i) => decisionCount(st) === decided[i])) return performance.now();
    if (Date.now() > deadline) throw new Error('PostgreSQL did not catch up with Redis before the drain timeout');
    await sleep(POLL_MS);
  }
}

/** Polls Redis until every request has a final state. @returns the states. */
async function waitFinal(run: Run, saleId: string, ids: string[], deadline: number): Promise<(PurchaseState | undefined)[]> {
  for (;;) {
    noCrashes(run);
    const states = await run.sys.states(saleId, ids);
    if (states.every((st) => st && isFinal(st.status)) || Date.now() > deadline) return states;
    await sleep(POLL_MS * 2);
  }
}

/** Checks what must hold for a sale once nothing is in flight. */
async function drainedSale(run: Run, label: string, sale: string, expect: { admitted?: [number, number]; succeeded?: number; onlySucceeded?: boolean }): Promise<SaleStats> {
  const [st, decided] = await Promise.all([run.sys.stats(sale), run.sys.decided(sale)]);
  const c = run.checks;
  const succeeded = st.decisions.succeeded ?? 0;
  c.check(`${label}: no oversell`, st.unitsInDatabase <= st.stock && st.remaining + st.unitsInDatabase === st.stock, `stock ${st.stock}, remaining ${st.remaining}, units in orders ${st.unitsInDatabase}`);
  c.check(`${label}: drained (nothing in flight or pending, PostgreSQL has every decision)`, st.inflightRequests === 0 && st.pendingUnits === 0 && decisionCount(st) === decided, `${st.inflightRequests} in flight, ${st.pendingUnits} pending, ${decisionCount(st)} decisions in PostgreSQL, ${decided} in Redis`);
  c.check(`${label}: one order per success`, st.ordersInDatabase === succeeded && st.unitsInDatabase === succeeded, `${succeeded} succeeded, ${st.ordersInDatabase} orders`);
  if (expect.admitted) {
    const [lo, hi] = expect.admitted;
    c.check(`${label}: every admitted request decided`, decided >= lo && decided <= hi, `${decided} decided; ${lo} answered 202, ${hi} sent`);
  }
  if (expect.succeeded !== undefined) c.check(`${label}: ${expect.succeeded} succeeded`, succeeded === expect.succeeded, JSON.stringify(st.decisions));
  if (expect.onlySucceeded) c.check(`${label}: every decision a success (stock to spare)`, succeeded === decisionCount(st), JSON.stringify(st.decisions));
  return st;
}

function allFinal(run: Run, label: string, states: (PurchaseState | undefined)[], status: PurchaseState['status']): void {
  const missing = states.filter((st) => !st).length;
  const pending = states.filter((st) => st && !isFinal(st.status)).length;
  const other = states.filter((st) => st && isFinal(st.status) && st.status !== status).length;
  run.checks.check(`${label}: every 202 reached a final state (${status})`, missing + pending + other === 0, `${states.length} accepted, ${missing} without state, ${pending} still queued, ${other} other final`);
}

/** Step 3. */
async function worker(run: Run, big: { sale: string; accepted: Accepted; cursor: Cursor }, one: { sale: string; buyer: string }): Promise<void> {
  const { sys, results } = run;
  const s = settings;
  const sales = [big.sale, one.sale];
  const backlog = sum(await Promise.all(sales.map((id) => sys.inflight(id))));
  const depth = await sys.queueDepth();
  // A message carries the purchases one API process admitted in one event-loop turn: at most one per purchase. That
  // every admitted purchase was in one of them is proven after the drain (every admitted request decided).
  run.checks.check('queue: at most one message per admitted request', backlog === 0 ? depth === 0 : depth >= 1 && depth <= backlog, `${depth} messages, ${backlog} in flight`);
  results.queue = { messages: depth, purchases: backlog };

  log(`3. Worker: draining ${backlog} admitted purchases with one worker...`);
  const spawned = performance.now();
  sys.startWorker();
  let first: { at: number; inflight: number } | undefined;
  const done = await waitDecided(run, sales, Date.now() + s.drainTimeoutS * 1000, (inflight, at) => {
    if (!first && inflight < backlog) first = { at, inflight };
  });
  // Rate from the first decision seen (the worker's start-up is not decision time) to the last one in PostgreSQL.
  const measured = first && first.inflight > 0 ? { n: first.inflight, s: (done - first.at) / 1000 } : { n: backlog, s: (done - spawned) / 1000 };
  results.drain = { backlog, decisionsPerS: measured.n / measured.s, measuredS: measured.s, sinceWorkerStartS: (done - spawned) / 1000 };
  log(`   ${Math.round(results.drain.decisionsPerS)} decisions/s`);

  await drainedSale(run, 'backlog sale', big.sale, { admitted: [big.accepted.ids.length, big.cursor.used], onlySucceeded: true });
  allFinal(run, 'backlog sale', await sys.states(big.sale, big.accepted.ids), 'succeeded');
  await drainedSale(run, 'sold-out sale', one.sale, { succeeded: 1 });
  allFinal(run, 'sold-out sale', await sys.states(one.sale, [one.buyer]), 'succeeded');
  run.checks.check('queue: empty after the drain', (await sys.queueDepth()) === 0);

  log(`   end to end at ${s.e2eRate} req/s for ${s.e2eDurationS} s with the worker running...`);
  const accepted = new Accepted();
  await run.shoppers.ensure(big.cursor.used + Math.ceil(s.e2eRate * s.e2eDurationS));
  const load = await openLoop({ url: sys.apiUrl, path: `/api/sales/${big.sale}/purchases`, connections: s.connections, rate: s.e2eRate, durationS: s.e2eDurationS, token: () => big.cursor.take(), onAnswer: accepted.onAnswer });
  results.loads.push({ name: 'Accept (202), worker running', mode: `open loop, ${s.e2eRate} req/s, ${s.e2eDurationS} s`, stats: load });
  cleanLoad(run, 'end to end', load);
  const states = await waitFinal(run, big.sale, accepted.ids, Date.now() + s.drainTimeoutS * 1000);
  allFinal(run, 'end to end', states, 'succeeded');
  const latencies = states.flatMap((st) => (st?.acceptedAt && isFinal(st.status) ? [Date.parse(st.updatedAt) - Date.parse(st.acceptedAt)] : []));
  results.endToEnd = { rate: s.e2eRate, requests: accepted.ids.length, latency: percentiles(latencies) };
  await waitDecided(run, [big.sale], Date.now() + s.drainTimeoutS * 1000);
  await drainedSale(run, 'backlog sale after end to end', big.sale, { admitted: [big.accepted.ids.length + accepted.ids.length, big.cursor.used], onlySucceeded: true });
}

/** Step 4. */
async function crowd(run: Run): Promise<void> {
  const { sys, shoppers, results } = run;
  const s = settings;
  log(`4. Flash crowd: ${s.crowd} shoppers, ${s.crowdStock} units, ${s.connections} connections...`);
  const sale = await sys.createSale({ name: 'bench: flash crowd', stock: s.crowdStock, perUserLimit: 1 });
  await shoppers.ensure(s.crowd);
  const cursor = new Cursor(shoppers);
  const accepted = new Accepted();
  let soldOut = 0;
  const load = await closedLoop({
    url: sys.apiUrl,
    path: `/api/sales/${sale}/purchases`,
    connections: s.connections,
    maxRequests: s.crowd,
    token: () => cursor.take(),
    onAnswer: (status, body) => {
      if (status === 202) return accepted.onAnswer(status, body);
      if (!isSoldOut(status, body)) return false;
      soldOut++;
      return true;
    },
  });
  results.loads.push({ name: 'Flash crowd (202 or 409 sold-out)', mode: `closed loop, ${s.connections} conn, ${s.crowd} requests`, stats: load });
  cleanLoad(run, 'crowd', load);
  const states = await waitFinal(run, sale, accepted.ids, Date.now() + s.drainTimeoutS * 1000);
  const lastAcceptedFinal = Math.max(0, ...states.map((st) => (st ? Date.parse(st.updatedAt) : 0)));
  await waitDecided(run, [sale], Date.now() + s.drainTimeoutS * 1000);
  const st = await drainedSale(run, 'crowd sale', sale, { succeeded: Math.min(s.crowd, s.crowdStock) });
  allFinal(run, 'crowd', states, 'succeeded');
  run.checks.check('crowd: every shopper answered, 202 or sold out', load.answers === s.crowd && accepted.ids.length + soldOut === s.crowd, `${load.answers} answers: ${accepted.ids.length} accepted, ${soldOut} sold out`);
  run.checks.check('crowd: exactly the stock accepted', accepted.ids.length === Math.min(s.crowd, s.crowdStock), `${accepted.ids.length} accepted for ${s.crowdStock} units`);
  results.crowd = {
    shoppers: s.crowd,
    stock: s.crowdStock,
    accepted: accepted.ids.length,
    soldOutAtTheDoor: soldOut,
    decisions: st.decisions as Record<string, number>,
    allFinalS: (Math.max(load.endedAt, lastAcceptedFinal) - load.startedAt) / 1000,
    acceptedFinalS: (lastAcceptedFinal - load.startedAt) / 1000,
    answeredS: (load.endedAt - load.startedAt) / 1000,
  };
}

/** Step 5: the accept and sold-out paths with metrics on (the main API) and off (a second API process). */
async function metricsCost(run: Run): Promise<void> {
  const { sys, shoppers, results, config } = run;
  const s = settings;
  const closed = `closed loop, ${s.connections} conn, ${s.durationS} s`;
  log(`5. Cost of metrics (${closed}, alternating on/off, twice each)`);
  const offUrl = await sys.startApi('api-nometrics', { METRICS: 'false' });
  const sale = await sys.createSale({ name: 'bench: metrics cost', stock: 10_000_000, perUserLimit: 1 });
  const soldOut = await sys.createSale({ name: 'bench: metrics cost, sold out', stock: 1, perUserLimit: 1 });
  const { token } = await mintToken(config.JWT_SECRET, `bench-buyer-${randomBytes(4).toString('hex')}`, 3600);
  const first = await fetch(`${sys.apiUrl}/api/sales/${soldOut}/purchases`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  if (first.status !== 202) throw new Error(`buying the only unit: ${first.status}`);
  // Every shopper buys this sale once at most: four accept runs share the tokens.
  const cursor = new Cursor(shoppers);
  const perRun = Math.floor(shoppers.size / 5);
  const variants = [
    { name: 'on', url: sys.apiUrl },
    { name: 'off', url: offUrl },
  ];
  const rps: Record<string, { accept: number[]; soldOut: number[] }> = { on: { accept: [], soldOut: [] }, off: { accept: [], soldOut: [] } };
  for (const v of variants) {
    await closedLoop({ url: v.url, path: `/api/sales/${soldOut}/purchases`, connections: s.connections, durationS: s.warmupS, token: () => cursor.take(), onAnswer: isSoldOut });
  }
  for (const round of [0, 1]) {
    for (const v of round === 0 ? variants : [...variants].reverse()) {
      const accept = await closedLoop({ url: v.url, path: `/api/sales/${sale}/purchases`, connections: s.connections, durationS: s.durationS, maxRequests: perRun, token: () => cursor.take(), onAnswer: (st) => st === 202 });
      cleanLoad(run, `metrics ${v.name}: accept`, accept);
      rps[v.name]!.accept.push(accept.rps);
      results.loads.push({ name: `Accept path (202), metrics ${v.name}, run ${round + 1}`, mode: closed, stats: accept });
      const sold = await closedLoop({ url: v.url, path: `/api/sales/${soldOut}/purchases`, connections: s.connections, durationS: s.durationS, token: () => cursor.take(), onAnswer: isSoldOut });
      cleanLoad(run, `metrics ${v.name}: sold out`, sold);
      rps[v.name]!.soldOut.push(sold.rps);
      results.loads.push({ name: `Sold-out path (409), metrics ${v.name}, run ${round + 1}`, mode: closed, stats: sold });
    }
  }
  noCrashes(run);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const cost = (path: 'accept' | 'soldOut') => 1 - mean(rps.on![path]) / mean(rps.off![path]);
  results.metricsCost = { accept: cost('accept'), soldOut: cost('soldOut'), rps };
  log(`   metrics cost: accept ${(cost('accept') * 100).toFixed(1)}%, sold out ${(cost('soldOut') * 100).toFixed(1)}% of throughput (negative: on was faster, i.e. noise)`);
}

async function main(): Promise<number> {
  const id = randomBytes(4).toString('hex');
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  // Production mode (secrets required, no demo login), on names of the run's own.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'production',
    JWT_SECRET: randomBytes(32).toString('hex'),
    ADMIN_TOKEN: randomBytes(16).toString('hex'),
    REDIS_KEY_PREFIX: `fs:bench-${id}`,
    AMQP_PREFIX: `fs.bench-${id}`,
    LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'warn',
    WORKER_METRICS_PORT: '0',
    // One load generator on one address: the limits would refuse it. `npm run bench:limits` measures their cost.
    RATE_LIMITS: process.env.BENCH_RATE_LIMITS ?? 'off',
  };
  const config = loadConfig(env);
  const results: Results = { machine: machine(), settings, loads: [], checks: [], ok: false };
  const checks = new Checks();
  log(`Benchmark ${stamp}: ${results.machine.cores} cores, Node ${results.machine.node}, commit ${results.machine.commit}${quick ? ', QUICK' : ''}`);

  await migrate(config.DATABASE_URL);
  mkdirSync(`${RESULTS_DIR}/logs`, { recursive: true });
  const sys = await BenchSystem.start(config, env, `${RESULTS_DIR}/logs/${stamp}`);
  const interrupt = (signal: NodeJS.Signals) => {
    console.error(`\n${signal}: cleaning up...`);
    void sys.stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', interrupt).once('SIGTERM', interrupt);

  try {
    const shoppers = new Shoppers(config.JWT_SECRET, id);
    const run: Run = { sys, config, shoppers, checks, results };
    const t = performance.now();
    await shoppers.ensure(Math.max(settings.backlog, settings.crowd));
    log(`   ${shoppers.size} shopper tokens minted in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    if (process.env.BENCH_ONLY === 'metrics') {
      await metricsCost(run);
      throw new Error('BENCH_ONLY=metrics: the other steps were skipped');
    }
    const bigSale = await sys.createSale({ name: 'bench: accept path', stock: Math.min(10_000_000, Math.max(BIG_STOCK, 2 * (settings.backlog + settings.e2eRate * settings.e2eDurationS))), perUserLimit: 1 });
    const big = await acceptPath(run, bigSale);
    const one = await soldOutPath(run, results.loads[0]!.stats.rps);
    await worker(run, { sale: bigSale, ...big }, one);
    await crowd(run);
    await metricsCost(run);
  } catch (err) {
    results.error = (err as Error).stack ?? String(err);
    console.error(`\nRun aborted: ${results.error}`);
  } finally {
    log('Cleaning up...');
    await sys.stop();
  }

  results.checks = checks.list;
  results.ok = !results.error && checks.ok;
  log(`\n${markdown(results)}`);
  log(`Written to ${writeReport(RESULTS_DIR, stamp, results)} and latest.md / .json beside it.`);
  if (!results.ok) console.error(`\nBENCHMARK FAILED: ${results.error ? 'the run was aborted' : checks.list.filter((c) => !c.ok).map((c) => c.name).join('; ')}`);
  return results.ok ? 0 : 1;
}

process.exit(await main());
