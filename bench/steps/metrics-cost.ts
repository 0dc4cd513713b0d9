/**
 * The cost of metrics: the accept and sold-out paths against two fresh API processes of the same system, one with
 * METRICS=true and one with METRICS=false (fresh both, so neither carries the heap of the earlier steps), side by
 * side (runs alternate on/off, twice each), reported as 1 − on/off throughput and as the difference of CPU per
 * answer, which survives the machine's noise better.
 */
import { mintToken } from '../../api/auth.ts';
import { randomBytes } from 'node:crypto';
import { closedLoop } from '../closed-loop.ts';
import { cleanLoad, noCrashes } from '../checks.ts';
import type { Bench } from '../context.ts';
import { Cursor } from '../load.ts';
import type { Results, StepRow } from '../report.ts';
import { row } from './http.ts';

export async function metricsCost(b: Bench): Promise<{ cost: NonNullable<Results['metricsCost']>; steps: StepRow[] }> {
  const { sys, settings: s, config, checks } = b;
  const closed = `closed loop, ${s.connections} conn, ${s.durationS} s`;
  console.log(`Cost of metrics (${closed}, alternating on/off, twice each)`);
  const onUrl = await sys.startApi('api-metrics', { METRICS: 'true' });
  const offUrl = await sys.startApi('api-nometrics', { METRICS: 'false' });
  const sale = await sys.createSale({ name: 'bench: metrics cost', stock: 10_000_000, perUserLimit: 1 });
  const soldOut = await sys.createSale({ name: 'bench: metrics cost, sold out', stock: 1, perUserLimit: 1 });
  const { token } = await mintToken(config.JWT_SECRET, `bench-buyer-${randomBytes(4).toString('hex')}`, 3600);
  const first = await fetch(`${sys.apiUrl}/api/sales/${soldOut}/purchases`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: '{}' });
  if (first.status !== 202) throw new Error(`buying the only unit: ${first.status}`);
  const cursor = new Cursor(b.shoppers);
  const anyone = await b.shoppers.slice(0, 10_000);
  const variants = [
    { name: 'on', url: onUrl, api: { name: 'api', pids: sys.extraApiPids('api-metrics') } },
    { name: 'off', url: offUrl, api: { name: 'api', pids: sys.extraApiPids('api-nometrics') } },
  ];
  const rps: Record<string, { accept: number[]; soldOut: number[] }> = { on: { accept: [], soldOut: [] }, off: { accept: [], soldOut: [] } };
  const cpuUs: Record<string, { accept: number[]; soldOut: number[] }> = { on: { accept: [], soldOut: [] }, off: { accept: [], soldOut: [] } };
  const usOf = (x: { cpuSeconds: Record<string, number>; answers: number }) => ((x.cpuSeconds.api ?? 0) / Math.max(1, x.answers)) * 1e6;
  const steps: StepRow[] = [];
  for (const v of variants) await closedLoop({ url: v.url, path: `/api/sales/${soldOut}/purchases`, connections: s.connections, durationS: s.warmupS, tokens: anyone, wrap: true, expect: 'sold-out' });
  for (const round of [0, 1]) {
    for (const v of round === 0 ? variants : [...variants].reverse()) {
      const cpu = [...b.groups.filter((g) => g.name !== 'api'), v.api];
      const accept = await closedLoop({ url: v.url, path: `/api/sales/${sale}/purchases`, connections: s.connections, durationS: s.durationS, tokens: await cursor.takeMany(s.durationS * s.acceptPoolPerS), expect: 'accept', cpu });
      cleanLoad(checks, `metrics ${v.name}: accept`, accept);
      rps[v.name]!.accept.push(accept.rps);
      cpuUs[v.name]!.accept.push(usOf(accept));
      steps.push(row(round + 1, `Accept path (202), metrics ${v.name}`, closed, accept, 'api'));
      const sold = await closedLoop({ url: v.url, path: `/api/sales/${soldOut}/purchases`, connections: s.connections, durationS: s.durationS, tokens: anyone, wrap: true, expect: 'sold-out', cpu });
      cleanLoad(checks, `metrics ${v.name}: sold out`, sold);
      rps[v.name]!.soldOut.push(sold.rps);
      cpuUs[v.name]!.soldOut.push(usOf(sold));
      steps.push(row(round + 1, `Sold-out path (409), metrics ${v.name}`, closed, sold, 'api'));
    }
  }
  noCrashes(sys, checks);
  const mean = (xs: number[]) => xs.reduce((a, n) => a + n, 0) / xs.length;
  const cost = (path: 'accept' | 'soldOut') => 1 - mean(rps.on![path]) / mean(rps.off![path]);
  console.log(`   metrics cost: accept ${(cost('accept') * 100).toFixed(1)}%, sold out ${(cost('soldOut') * 100).toFixed(1)}% of throughput (negative: on was faster, i.e. noise)`);
  return { cost: { accept: cost('accept'), soldOut: cost('soldOut'), rps, cpuUs }, steps };
}
