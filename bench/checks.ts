/**
 * What must hold after every step of the benchmark (no oversell, every 202 final, one order per success, counts
 * add up), and the waits that come before those checks. A broken invariant fails the run: a fast wrong answer is
 * not a result.
 */
import { isFinal, type PurchaseState } from '../core/purchase-state.ts';
import type { LoadStats } from './load.ts';
import type { Check } from './report.ts';
import type { BenchSystem, SaleStats } from './system.ts';

const POLL_MS = 100;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sum = (ns: number[]) => ns.reduce((a, b) => a + b, 0);
export const decisionCount = (s: SaleStats) => sum(Object.values(s.decisions));

/** The invariants checked so far; each is printed as it is decided. */
export class Checks {
  readonly list: Check[] = [];
  check(name: string, ok: boolean, detail?: string): boolean {
    this.list.push({ name, ok, ...(detail ? { detail } : {}) });
    console.log(`   ${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ` (${detail})` : ''}`);
    return ok;
  }
  get ok(): boolean {
    return this.list.every((c) => c.ok);
  }
}

/** Every answer was the expected one and no connection failed. */
export function cleanLoad(checks: Checks, what: string, s: LoadStats): void {
  checks.check(`${what}: every answer as expected, no connection errors`, s.unexpected === 0 && s.errors === 0 && s.answers > 0, s.unexpected || s.errors || !s.answers ? `${s.answers} answers, ${s.unexpected} unexpected, ${s.errors} errors; e.g. ${s.unexpectedSample ?? 'none'}` : undefined);
}

/** Fails the run when a child process of the system ended on its own. */
export function noCrashes(sys: BenchSystem, checks: Checks): void {
  const crashes = sys.crashes();
  if (crashes.length) {
    checks.check('child processes alive', false, crashes.join('\n'));
    throw new Error('a child process ended during the run');
  }
}

/**
 * Waits until nothing is in flight in Redis and PostgreSQL holds a decision for every request Redis decided.
 * `onPoll` sees each in-flight count. @returns when everything was decided (performance.now()).
 * @throws after `deadline` (ms since the epoch).
 */
export async function waitDecided(sys: BenchSystem, checks: Checks, sales: string[], deadline: number, onPoll?: (inflight: number, at: number) => void): Promise<number> {
  for (;;) {
    noCrashes(sys, checks);
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

/** Polls Redis until every request has a final state, or `deadline` (ms since the epoch). @returns the states. */
export async function waitFinal(sys: BenchSystem, checks: Checks, saleId: string, ids: string[], deadline: number): Promise<(PurchaseState | undefined)[]> {
  for (;;) {
    noCrashes(sys, checks);
    const states = await sys.states(saleId, ids);
    if (states.every((st) => st && isFinal(st.status)) || Date.now() > deadline) return states;
    await sleep(POLL_MS * 2);
  }
}

/** Checks what must hold for a sale once nothing is in flight. @returns its stats. */
export async function drainedSale(sys: BenchSystem, checks: Checks, label: string, sale: string, expect: { admitted?: [number, number]; succeeded?: number; onlySucceeded?: boolean }): Promise<SaleStats> {
  const [st, decided] = await Promise.all([sys.stats(sale), sys.decided(sale)]);
  const c = checks;
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

/** Every accepted request reached the final state `status`. */
export function allFinal(checks: Checks, label: string, states: (PurchaseState | undefined)[], status: PurchaseState['status']): void {
  const missing = states.filter((st) => !st).length;
  const pending = states.filter((st) => st && !isFinal(st.status)).length;
  const other = states.filter((st) => st && isFinal(st.status) && st.status !== status).length;
  checks.check(`${label}: every 202 reached a final state (${status})`, missing + pending + other === 0, `${states.length} accepted, ${missing} without state, ${pending} still queued, ${other} other final`);
}
