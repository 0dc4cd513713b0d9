/**
 * Step 2 of a run: the backlog is topped up to BENCH_BACKLOG admitted purchases (still no worker), then one worker
 * starts and drains it; decisions per second count from the first decision seen to the last one in PostgreSQL, so
 * the worker's start-up is not decision time.
 */
import { closedLoop } from '../closed-loop.ts';
import { allFinal, cleanLoad, decisionCount, drainedSale, noCrashes, waitDecided } from '../checks.ts';
import { busy, type Bench } from '../context.ts';
import { cpuWindow } from '../cpu.ts';
import type { Cursor } from '../load.ts';
import type { RunDetail, StepRow } from '../report.ts';
import { row } from './http.ts';

/** Tops the backlog up and checks it. @returns the top-up's row (undefined when none was needed). */
export async function topUp(b: Bench, run: number, sale: string, ids: string[], cursor: Cursor): Promise<StepRow | undefined> {
  const { sys, settings: s, checks } = b;
  const missing = s.backlog - ids.length;
  let topped: StepRow | undefined;
  if (missing > 0) {
    console.log(`   topping the backlog up with ${missing} purchases...`);
    const load = await closedLoop({ url: sys.apiUrl, path: `/api/sales/${sale}/purchases`, connections: s.connections, durationS: s.drainTimeoutS, tokens: await cursor.takeMany(missing), quota: true, expect: 'accept', cpu: b.groups });
    cleanLoad(checks, `run ${run}: accept, top-up`, load);
    ids.push(...load.ids);
    topped = row(run, 'Accept (202), backlog top-up', `closed loop, ${s.connections} conn, ${missing} shoppers`, load, 'api');
  }
  noCrashes(sys, checks);
  // Requests cut off by the end of a timed run may have been admitted without our seeing the 202.
  const [inflight, stats] = await Promise.all([sys.inflight(sale), sys.stats(sale)]);
  checks.check(
    `run ${run}: backlog: every 202 is admitted and undecided`,
    ids.length <= inflight && inflight <= cursor.used && stats.pendingUnits === inflight && stats.inflightRequests === inflight,
    `${ids.length} answered 202, ${cursor.used} sent, ${inflight} in flight, ${stats.pendingUnits} units pending`,
  );
  checks.check(`run ${run}: backlog: nothing decided without a worker`, decisionCount(stats) === 0 && stats.unitsInDatabase === 0 && stats.remaining === stats.stock);
  return topped;
}

/**
 * Starts one worker on the backlog of `sales` and measures its drain; checks every admitted request was decided.
 * @param big - the backlog sale with the requestIds answered 202 and the shoppers sent; `one` - the sold-out sale.
 */
export async function drain(b: Bench, run: number, big: { sale: string; ids: string[]; cursor: Cursor }, one: { sale: string; buyer: string }): Promise<Pick<RunDetail, 'queue' | 'drain'>> {
  const { sys, settings: s, checks } = b;
  const sales = [big.sale, one.sale];
  const backlog = (await Promise.all(sales.map((id) => sys.inflight(id)))).reduce((a, n) => a + n, 0);
  const depth = await sys.queueDepth();
  // A message carries the purchases one API process admitted in one event-loop turn: at most one per purchase. That
  // every admitted purchase was in one of them is proven after the drain (every admitted request decided).
  checks.check(`run ${run}: queue: at most one message per admitted request`, backlog === 0 ? depth === 0 : depth >= 1 && depth <= backlog, `${depth} messages, ${backlog} in flight`);

  console.log(`   worker: draining ${backlog} admitted purchases...`);
  const spawned = performance.now();
  sys.startWorker();
  let first: { at: number; inflight: number; end: ReturnType<typeof cpuWindow> } | undefined;
  const done = await waitDecided(sys, checks, sales, Date.now() + s.drainTimeoutS * 1000, (inflight, at) => {
    if (!first && inflight < backlog) first = { at, inflight, end: cpuWindow(b.groups) };
  });
  const cpu = first?.end();
  // Rate from the first decision seen (the worker's start-up is not decision time) to the last one in PostgreSQL.
  const measured = first && first.inflight > 0 ? { n: first.inflight, s: (done - first.at) / 1000 } : { n: backlog, s: (done - spawned) / 1000 };
  const decisionsPerS = measured.n / measured.s;
  console.log(`   ${Math.round(decisionsPerS)} decisions/s`);

  await drainedSale(sys, checks, `run ${run}: backlog sale`, big.sale, { admitted: [big.ids.length, big.cursor.used], onlySucceeded: true });
  allFinal(checks, `run ${run}: backlog sale`, await sys.states(big.sale, big.ids), 'succeeded');
  await drainedSale(sys, checks, `run ${run}: sold-out sale`, one.sale, { succeeded: 1 });
  allFinal(checks, `run ${run}: sold-out sale`, await sys.states(one.sale, [one.buyer]), 'succeeded');
  checks.check(`run ${run}: queue: empty after the drain`, (await sys.queueDepth()) === 0);
  const workerS = cpu?.seconds.worker;
  return {
    queue: { messages: depth, purchases: backlog },
    drain: {
      backlog,
      decisionsPerS,
      measuredS: measured.s,
      sinceWorkerStartS: (done - spawned) / 1000,
      cpu: busy(cpu?.shares ?? {}),
      ...(workerS !== undefined && measured.n > 0 ? { workerCpuPerDecisionUs: (workerS / measured.n) * 1e6 } : {}),
    },
  };
}
