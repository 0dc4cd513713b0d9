/**
 * `npm run bench`: measures the purchase pipeline on this machine, on a system it starts itself (the API and the
 * worker as deployed: compiled JavaScript under node, production settings), with load from wrk where installed.
 * The sequence below runs BENCH_RUNS times (3), each on fresh sales, so every figure comes with its range:
 *
 *   1. The accept and sold-out paths side by side with a bare Express app (the ceiling), then the accept path at
 *      half its highest rate for its latency. No worker: every 202 stays queued.
 *   2. The backlog topped up to 100,000 admitted purchases; one worker drains it (decisions/s).
 *   3. End to end: with the worker running, 1,000 req/s for 10 s, from acceptance to final state.
 *   4. A flash crowd of 100,000 shoppers for 1,000 units: until every shopper has a final answer.
 *
 * Then once: fairness against bots, with and without a waiting room (bench/fairness.ts), one Redis shard's
 * admissions alone, and the cost of metrics (METRICS on/off side by side). Each target
 * is printed with each run's figure, the median, the range, how many runs met it, and what bound it (the CPU of
 * every process during its step). After each step the invariants are checked (no oversell, every 202 final, one
 * order per success, counts add up); a broken one fails the run (exit 1): a fast wrong answer is not a result.
 *
 * Sizes: bench/settings.ts (BENCH_QUICK=1 for a small run). BENCH_ONLY=metrics runs the metrics step alone;
 * BENCH_EXTRAS=off stops after the runs (the report then says the run was cut short, and the targets stand);
 * BENCH_SYSTEM_ROOT measures another checkout with this harness (a before and after); BENCH_TSX=1 runs the
 * sources under tsx instead of the build.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { mintToken } from '../api/auth.ts';
import { loadConfig, type Config } from '../core/config.ts';
import { migrate } from '../prisma/migrate.ts';
import { benchEnv, stampOf } from './bench-env.ts';
import { Checks } from './checks.ts';
import { generatorName } from './closed-loop.ts';
import { processGroups, type Bench } from './context.ts';
import { canReadCpu } from './cpu.ts';
import { Shoppers } from './load.ts';
import { boundOf, machine, markdown, median, writeReport, type Results, type RunDetail, type StepRow, type TargetRow } from './report.ts';
import { settings, TARGETS } from './settings.ts';
import { fairness, fairnessOptions } from './fairness.ts';
import { crowd } from './steps/crowd.ts';
import { drain, topUp } from './steps/drain.ts';
import { endToEnd } from './steps/end-to-end.ts';
import { sideBySide } from './steps/http.ts';
import { metricsCost } from './steps/metrics-cost.ts';
import { redisShard } from './steps/redis-shard.ts';
import { BenchSystem } from './system.ts';

const RESULTS_DIR = fileURLToPath(new URL('./results', import.meta.url));
const BIG_STOCK = 10_000_000;

/** Buys the only unit of a new sale. @returns the sale and the buyer's requestId. */
async function soldOutSale(b: Bench, run: number): Promise<{ sale: string; buyer: string }> {
  const sale = await b.sys.createSale({ name: `bench: sold out, run ${run}`, stock: 1, perUserLimit: 1 });
  const { token } = await mintToken(b.config.JWT_SECRET, `bench-buyer-${randomBytes(4).toString('hex')}`, 3600);
  const res = await fetch(`${b.sys.apiUrl}/api/sales/${sale}/purchases`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  const bought = (await res.json()) as { requestId?: string };
  if (res.status !== 202 || !bought.requestId) throw new Error(`buying the only unit: ${res.status} ${JSON.stringify(bought)}`);
  return { sale, buyer: bought.requestId };
}

/** One run of the sequence. @returns its step rows and figures. */
async function oneRun(b: Bench, run: number): Promise<{ steps: StepRow[]; detail: RunDetail }> {
  console.log(`\nRun ${run} of ${settings.runs}`);
  const bigSale = await b.sys.createSale({ name: `bench: accept path, run ${run}`, stock: BIG_STOCK, perUserLimit: 1 });
  const one = await soldOutSale(b, run);
  const http = await sideBySide(b, run, bigSale, one.sale, run === 1);
  const steps = [http.bare, http.accept, http.soldOut, http.fixed];
  const after = await b.sys.stats(one.sale);
  b.checks.check(`run ${run}: sold out: the one unit is held by the one admitted request`, after.remaining === 1 && after.pendingUnits === 1 && after.inflightRequests === 1, JSON.stringify({ remaining: after.remaining, pending: after.pendingUnits, inflight: after.inflightRequests }));
  const big = { sale: bigSale, ids: http.acceptedIds, cursor: http.cursor };
  const topped = await topUp(b, run, bigSale, big.ids, big.cursor);
  if (topped) steps.push(topped);
  const drained = await drain(b, run, big, one);
  const e2e = await endToEnd(b, run, big);
  const c = await crowd(b, run);
  steps.push(c.step);
  await b.sys.stopWorker();
  await b.sys.clearSales();
  return { steps, detail: { run, ...drained, ...e2e, ...c.detail } };
}

/** The targets, from every run's figures. */
function targets(steps: StepRow[], runs: RunDetail[], cores: number): TargetRow[] {
  const named = (prefix: string) => steps.filter((s) => s.name.startsWith(prefix) && !s.name.includes('metrics'));
  const target = (name: string, goal: string, unit: string, rows: { value: number; cpu: Record<string, number>; server?: StepRow['server'] }[], met: (v: number) => boolean): TargetRow => {
    const values = rows.map((r) => r.value);
    return { name, goal, values, unit, median: median(values), min: Math.min(...values), max: Math.max(...values), met: values.filter(met).length, bound: boundOf(rows.map((r) => r.cpu), cores, rows.map((r) => r.server)) };
  };
  const t = TARGETS;
  return [
    target('Accept path (202) ÷ bare Express, closed loop', `≥ ${t.acceptOfCeiling}`, '×', named('Accept (202), highest').map((s) => ({ value: s.ofCeiling!, cpu: s.cpu })), (v) => v >= t.acceptOfCeiling),
    target(`Accept path p99 at ${Math.round(settings.rateShare * 100)}% of its highest rate, open loop`, `< ${t.acceptP99AtShareMs} ms`, 'ms', named('Accept (202), ').filter((s) => s.name.includes('% of highest')).map((s) => ({ value: s.latency.p99, cpu: s.cpu, server: s.server })), (v) => v < t.acceptP99AtShareMs),
    target('Sold-out path (409) ÷ bare Express, closed loop', `≥ ${t.soldOutOfCeiling}`, '×', named('Sold out (409)').map((s) => ({ value: s.ofCeiling!, cpu: s.cpu })), (v) => v >= t.soldOutOfCeiling),
    target(`Worker drain, one worker, backlog of ${settings.backlog.toLocaleString('en-US')}`, `≥ ${t.drainPerS.toLocaleString('en-US')}/s`, 'decisions/s', runs.flatMap((r) => (r.drain ? [{ value: r.drain.decisionsPerS, cpu: r.drain.cpu }] : [])), (v) => v >= t.drainPerS),
    target(`Flash crowd, ${settings.crowd.toLocaleString('en-US')} shoppers for ${settings.crowdStock.toLocaleString('en-US')} units: every shopper final`, `≤ ${t.crowdAllFinalS} s`, 's', runs.flatMap((r) => (r.crowd ? [{ value: r.crowd.allFinalS, cpu: r.crowd.cpu }] : [])), (v) => v <= t.crowdAllFinalS),
    target(`Accepted → final p99 at ${settings.e2eRate.toLocaleString('en-US')} req/s`, `< ${t.e2eP99Ms} ms in every run`, 'ms', runs.flatMap((r) => (r.endToEnd ? [{ value: r.endToEnd.latency.p99, cpu: r.endToEnd.cpu }] : [])), (v) => v < t.e2eP99Ms),
  ].filter((x) => x.values.length > 0);
}

async function main(): Promise<number> {
  const stamp = stampOf();
  const compiled = process.env.BENCH_TSX !== '1';
  // One load generator on one address: the limits would refuse it. `npm run bench:limits` measures their cost.
  const env = benchEnv('run', { RATE_LIMITS: process.env.BENCH_RATE_LIMITS ?? 'off' });
  const id = env.REDIS_KEY_PREFIX!.split('-').pop()!;
  const config: Config = loadConfig(env);
  const results: Results = { machine: machine(), settings, generator: generatorName(), compiled, ...(process.env.BENCH_SYSTEM_ROOT ? { systemRoot: process.env.BENCH_SYSTEM_ROOT } : {}), steps: [], runs: [], targets: [], checks: [], ok: false };
  const checks = new Checks();
  console.log(`Benchmark ${stamp}: ${results.machine.cores} cores, Node ${results.machine.node}, commit ${results.machine.commit}, load from ${results.generator}, ${compiled ? 'compiled' : 'tsx'}${settings.quick ? ', QUICK' : ''}`);
  if (!canReadCpu()) console.log('   (no /proc here: CPU figures and bounds are left out)');

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
    const b: Bench = { sys, config, settings, shoppers, checks, groups: processGroups(sys, config) };
    const t = performance.now();
    await shoppers.ensure(Math.max(settings.backlog, settings.crowd) * 2);
    console.log(`   ${shoppers.size} shopper tokens minted in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    if (process.env.BENCH_ONLY === 'metrics') {
      const m = await metricsCost(b);
      results.metricsCost = m.cost;
      results.steps.push(...m.steps);
      throw new Error('BENCH_ONLY=metrics: the other steps were skipped');
    }
    for (let run = 1; run <= settings.runs; run++) {
      const r = await oneRun(b, run);
      results.steps.push(...r.steps);
      results.runs.push(r.detail);
    }
    if (process.env.BENCH_EXTRAS === 'off') throw new Error('BENCH_EXTRAS=off: fairness, the Redis shard and the cost of metrics were skipped');
    console.log('\nFairness: bots against people, with and without a waiting room (the worker running)');
    sys.startWorker();
    const fair = await fairness(sys, config, checks, settings.quick ? { ...fairnessOptions(), people: 300, bots: 5, identitiesPerBot: 4, units: 30, windowS: 3 } : fairnessOptions());
    await sys.stopWorker();
    results.fairness = { room: fair.room, plain: fair.plain, options: fair.options };
    results.redisShard = await redisShard(b);
    const m = await metricsCost(b);
    results.metricsCost = m.cost;
    results.steps.push(...m.steps);
  } catch (err) {
    results.error = (err as Error).stack ?? String(err);
    console.error(`\nRun aborted: ${results.error}`);
  } finally {
    console.log('Cleaning up...');
    await sys.stop();
  }

  results.targets = targets(results.steps, results.runs, results.machine.cores);
  results.checks = checks.list;
  results.ok = !results.error && checks.ok;
  console.log(`\n${markdown(results)}`);
  console.log(`Written to ${writeReport(RESULTS_DIR, stamp, results)} and latest.md / .json beside it.`);
  if (!results.ok) console.error(`\nBENCHMARK FAILED: ${results.error ? 'the run was aborted' : checks.list.filter((c) => !c.ok).map((c) => c.name).join('; ')}`);
  return results.ok ? 0 : 1;
}

process.exit(await main());
