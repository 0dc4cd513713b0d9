/**
 * Step 4 of a run: a flash crowd at a small sale, every shopper distinct and sending once (closed loop, worker
 * running): the time until every shopper has a final answer, a 409 sold-out at the door or the final state of
 * an accepted request.
 */
import { closedLoop } from '../closed-loop.ts';
import { allFinal, cleanLoad, drainedSale, waitDecided, waitFinal } from '../checks.ts';
import { busy, type Bench } from '../context.ts';
import type { RunDetail, StepRow } from '../report.ts';
import { row } from './http.ts';

export async function crowd(b: Bench, run: number): Promise<{ detail: Pick<RunDetail, 'crowd'>; step: StepRow }> {
  const { sys, settings: s, checks } = b;
  console.log(`   flash crowd: ${s.crowd} shoppers, ${s.crowdStock} units, ${s.connections} connections...`);
  const sale = await sys.createSale({ name: `bench: flash crowd, run ${run}`, stock: s.crowdStock, perUserLimit: 1 });
  const tokens = await b.shoppers.slice(0, s.crowd);
  const load = await closedLoop({ url: sys.apiUrl, path: `/api/sales/${sale}/purchases`, connections: s.connections, durationS: s.drainTimeoutS, tokens, quota: true, expect: 'crowd', cpu: b.groups });
  cleanLoad(checks, `run ${run}: crowd`, load);
  const accepted = load.ids;
  const soldOut = load.answers - accepted.length - load.unexpected;
  const states = await waitFinal(sys, checks, sale, accepted, Date.now() + s.drainTimeoutS * 1000);
  const lastAcceptedFinal = Math.max(0, ...states.map((st) => (st ? Date.parse(st.updatedAt) : 0)));
  await waitDecided(sys, checks, [sale], Date.now() + s.drainTimeoutS * 1000);
  const st = await drainedSale(sys, checks, `run ${run}: crowd sale`, sale, { succeeded: Math.min(s.crowd, s.crowdStock) });
  allFinal(checks, `run ${run}: crowd`, states, 'succeeded');
  checks.check(`run ${run}: crowd: every shopper answered, 202 or sold out`, load.answers === s.crowd && accepted.length + soldOut === s.crowd, `${load.answers} answers: ${accepted.length} accepted, ${soldOut} sold out`);
  checks.check(`run ${run}: crowd: exactly the stock accepted`, accepted.length === Math.min(s.crowd, s.crowdStock), `${accepted.length} accepted for ${s.crowdStock} units`);
  return {
    step: row(run, 'Flash crowd (202 or 409 sold-out)', `closed loop, ${s.connections} conn, ${s.crowd} shoppers`, load, 'api'),
    detail: {
      crowd: {
        shoppers: s.crowd,
        stock: s.crowdStock,
        accepted: accepted.length,
        soldOutAtTheDoor: soldOut,
        decisions: st.decisions as Record<string, number>,
        allFinalS: (Math.max(load.endedAt, lastAcceptedFinal) - load.startedAt) / 1000,
        acceptedFinalS: (lastAcceptedFinal - load.startedAt) / 1000,
        answeredS: (load.endedAt - load.startedAt) / 1000,
        cpu: busy(load.cpu),
      },
    },
  };
}
