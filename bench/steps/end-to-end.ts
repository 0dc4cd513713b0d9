/**
 * Step 3 of a run: with the worker running, the accept path at a fixed rate below saturation (open loop), and the
 * time from each request's acceptance to its final state, read from the state itself (`acceptedAt` to `updatedAt`,
 * both stamped by the system).
 */
import { allFinal, cleanLoad, drainedSale, waitDecided, waitFinal } from '../checks.ts';
import { busy, type Bench } from '../context.ts';
import { cpuWindow } from '../cpu.ts';
import { acceptInto, openLoop, percentiles, type Cursor } from '../load.ts';
import type { RunDetail } from '../report.ts';
import { isFinal } from '../../core/purchase-state.ts';

/** @param big - the backlog sale (drained), its requestIds answered 202 so far and its shopper cursor. */
export async function endToEnd(b: Bench, run: number, big: { sale: string; ids: string[]; cursor: Cursor }): Promise<Pick<RunDetail, 'endToEnd'>> {
  const { sys, settings: s, checks } = b;
  console.log(`   end to end at ${s.e2eRate} req/s for ${s.e2eDurationS} s with the worker running...`);
  const tokens = await big.cursor.takeMany(Math.ceil(s.e2eRate * s.e2eDurationS));
  let next = 0;
  const ids: string[] = [];
  const end = cpuWindow([...b.groups, { name: 'generator', pids: () => [process.pid] }]);
  const load = await openLoop({
    url: sys.apiUrl,
    path: `/api/sales/${big.sale}/purchases`,
    connections: s.connections,
    rate: s.e2eRate,
    durationS: s.e2eDurationS,
    token: () => tokens[next++]!,
    onAnswer: acceptInto(ids),
  });
  const cpu = end();
  cleanLoad(checks, `run ${run}: end to end`, load);
  const states = await waitFinal(sys, checks, big.sale, ids, Date.now() + s.drainTimeoutS * 1000);
  allFinal(checks, `run ${run}: end to end`, states, 'succeeded');
  const latencies = states.flatMap((st) => (st?.acceptedAt && isFinal(st.status) ? [Date.parse(st.updatedAt) - Date.parse(st.acceptedAt)] : []));
  await waitDecided(sys, checks, [big.sale], Date.now() + s.drainTimeoutS * 1000);
  big.ids.push(...ids);
  await drainedSale(sys, checks, `run ${run}: backlog sale after end to end`, big.sale, { admitted: [big.ids.length, big.cursor.used], onlySucceeded: true });
  return { endToEnd: { rate: s.e2eRate, requests: ids.length, latency: percentiles(latencies), cpu: busy(cpu.shares) } };
}
