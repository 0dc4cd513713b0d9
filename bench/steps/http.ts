/**
 * Step 1 of a run: the accept and sold-out paths side by side with a bare Express 5 app (the ceiling), each a closed
 * loop of the same length and connections, one after the other in the same run, so their ratio survives the
 * machine's drift; then the accept path at a fixed share of its highest rate (open loop), for its latency.
 * No worker runs: every 202 stays in the queue as the backlog of the drain step.
 */
import { closedLoop, type RunStats } from '../closed-loop.ts';
import { cleanLoad, noCrashes } from '../checks.ts';
import { busy, type Bench } from '../context.ts';
import { quantileBetween, readBuckets } from '../histograms.ts';
import { cpuWindow } from '../cpu.ts';
import { acceptInto, Cursor, openLoop } from '../load.ts';
import type { StepRow } from '../report.ts';

/** Shoppers that may repeat: the ceiling and the sold-out path do not care who asks. */
const ANYONE = 10_000;

export interface HttpFigures {
  bare: StepRow;
  accept: StepRow;
  soldOut: StepRow;
  fixed: StepRow;
  /** requestIds answered 202 on the big sale (warm-up included), and shoppers sent to it. */
  acceptedIds: string[];
  cursor: Cursor;
}

/** A step row from a closed loop's figures; `server` names the group whose CPU per answer is reported. */
export function row(run: number, name: string, mode: string, s: RunStats, server?: string, ofCeiling?: number): StepRow {
  const seconds = server ? s.cpuSeconds[server] : undefined;
  return {
    run,
    name,
    mode,
    answers: s.answers,
    rps: s.rps,
    latency: s.latency,
    ...(ofCeiling === undefined ? {} : { ofCeiling }),
    cpu: busy(s.cpu),
    ...(seconds !== undefined && s.answers > 0 ? { cpuPerAnswerUs: (seconds / s.answers) * 1e6 } : {}),
  };
}

/**
 * Measures the three paths and the fixed-rate accept run. `warm` also sends unmeasured load first (the first run).
 * @param bigSale - a sale with stock to spare; `soldOutSale` - a sale whose only unit is held.
 */
export async function sideBySide(b: Bench, run: number, bigSale: string, soldOutSale: string, warm: boolean): Promise<HttpFigures> {
  const { sys, settings: s, checks } = b;
  const path = (sale: string) => `/api/sales/${sale}/purchases`;
  const closed = `closed loop, ${s.connections} conn, ${s.durationS} s`;
  const anyone = await b.shoppers.slice(0, ANYONE);
  const cursor = new Cursor(b.shoppers);
  const acceptedIds: string[] = [];
  const base = { connections: s.connections, cpu: b.groups };

  if (warm) {
    console.log(`   warm-up, ${s.warmupS} s each...`);
    // The open-loop sender (undici, in this process) warms up too: its first seconds were the tail of the first run.
    const warmTokens = await cursor.takeMany(s.warmupS * 500);
    let sent = 0;
    await openLoop({ url: sys.apiUrl, path: path(bigSale), connections: s.connections, rate: 500, durationS: s.warmupS, token: () => warmTokens[sent++]!, onAnswer: acceptInto(acceptedIds) });
    await closedLoop({ ...base, url: sys.bareUrl, path: path(bigSale), durationS: s.warmupS, tokens: anyone, wrap: true, expect: 'any-202' });
    const w = await closedLoop({ ...base, url: sys.apiUrl, path: path(bigSale), durationS: s.warmupS, tokens: await cursor.takeMany(s.warmupS * s.acceptPoolPerS), expect: 'accept' });
    acceptedIds.push(...w.ids);
    await closedLoop({ ...base, url: sys.apiUrl, path: path(soldOutSale), durationS: s.warmupS, tokens: anyone, wrap: true, expect: 'sold-out' });
  }

  console.log(`   bare Express ceiling (${closed})...`);
  const bare = await closedLoop({ ...base, url: sys.bareUrl, path: path(bigSale), durationS: s.durationS, tokens: anyone, wrap: true, expect: 'any-202' });
  cleanLoad(checks, `run ${run}: bare ceiling`, bare);

  console.log('   accept path, highest rate...');
  const accept = await closedLoop({ ...base, url: sys.apiUrl, path: path(bigSale), durationS: s.durationS, tokens: await cursor.takeMany(s.durationS * s.acceptPoolPerS), expect: 'accept' });
  cleanLoad(checks, `run ${run}: accept, highest rate`, accept);
  acceptedIds.push(...accept.ids);

  console.log('   sold-out path, highest rate...');
  const soldOut = await closedLoop({ ...base, url: sys.apiUrl, path: path(soldOutSale), durationS: s.durationS, tokens: anyone, wrap: true, expect: 'sold-out' });
  cleanLoad(checks, `run ${run}: sold out`, soldOut);
  noCrashes(sys, checks);

  const rate = Math.max(1, Math.round(accept.rps * s.rateShare));
  console.log(`   accept path at ${rate} req/s (${Math.round(s.rateShare * 100)}% of its highest rate)...`);
  const fixedTokens = await cursor.takeMany(Math.ceil(rate * s.durationS));
  let next = 0;
  const answerLabels = ['method="POST"', 'path="/api/sales/:saleId/purchases"', 'status_code="202"'];
  const [answersBefore, confirmsBefore] = await Promise.all([readBuckets(sys.apiUrl, 'http_request_duration_seconds', answerLabels), readBuckets(sys.apiUrl, 'flashsale_publish_confirm_seconds')]);
  const end = cpuWindow([...b.groups, { name: 'generator', pids: () => [process.pid] }]);
  const fixed = await openLoop({
    url: sys.apiUrl,
    path: path(bigSale),
    connections: s.connections,
    rate,
    durationS: s.durationS,
    token: () => fixedTokens[next++]!,
    onAnswer: acceptInto(acceptedIds),
  });
  const fixedCpu = end();
  const [answersAfter, confirmsAfter] = await Promise.all([readBuckets(sys.apiUrl, 'http_request_duration_seconds', answerLabels), readBuckets(sys.apiUrl, 'flashsale_publish_confirm_seconds')]);
  const server = {
    answerP50Ms: quantileBetween(answersBefore, answersAfter, 0.5),
    answerP99Ms: quantileBetween(answersBefore, answersAfter, 0.99),
    confirmP50Ms: quantileBetween(confirmsBefore, confirmsAfter, 0.5),
    confirmP99Ms: quantileBetween(confirmsBefore, confirmsAfter, 0.99),
  };
  cleanLoad(checks, `run ${run}: accept, fixed rate`, fixed);
  noCrashes(sys, checks);

  return {
    bare: row(run, 'Bare Express ceiling (202)', closed, bare, 'bare', 1),
    accept: row(run, 'Accept (202), highest rate', closed, accept, 'api', accept.rps / bare.rps),
    soldOut: row(run, 'Sold out (409), highest rate', closed, soldOut, 'api', soldOut.rps / bare.rps),
    fixed: { ...row(run, `Accept (202), ${Math.round(s.rateShare * 100)}% of highest rate`, `open loop, ${rate} req/s, ${s.durationS} s`, { ...fixed, ids: [], cpu: fixedCpu.shares, cpuSeconds: fixedCpu.seconds }, 'api'), server },
    acceptedIds,
    cursor,
  };
}
